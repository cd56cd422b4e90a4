"""The device's store: the one LMDB environment of a home (`env`, the only user of lmdb), append
and ingest (`store`), compaction, the replication ledger, peers, wake-ups, verification,
enrolment, and the home directory with its key file.

May import: `agentlog.log`, `agentlog.codec`, `agentlog.prefs`, `agentlog.memory` and the
top-level helpers; never the sync, replay, audit, CLI or MCP parts.
"""
