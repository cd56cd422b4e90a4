"""Tests of agentlog.sync: the handshake, framing, the sans-IO protocol and bootstrap."""
