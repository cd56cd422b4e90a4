"""Tests of agentlog.prefs: the preference reducer, its scenarios and determinism."""
