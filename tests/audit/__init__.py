"""Tests of agentlog.audit: export, verify and the report."""
