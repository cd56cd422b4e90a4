"""Tests of agentlog.store: the LMDB store, compaction, the ledger, verify and damage."""
