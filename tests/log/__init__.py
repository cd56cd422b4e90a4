"""Tests of agentlog.log: events, payloads and ingest validation."""
