"""Tests of agentlog.cli: the agentlog command as a user or an agent runs it."""
