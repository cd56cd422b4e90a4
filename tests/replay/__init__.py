"""Tests of agentlog.replay: scratch replays and histories."""
