"""Tests of agentlog.memory: the memory reducer, index, embeddings, scenarios and determinism."""
