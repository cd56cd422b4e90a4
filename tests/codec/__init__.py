"""Tests of agentlog.codec: the hand-written Cap'n Proto encoder and decoder against pycapnp."""
