"""Tests of agentlog.mcp: the MCP server over stdio."""
