"""The device's store: the one LMDB environment of a home (`env`; only this part imports lmdb), its
layout (`layout`), the Store (`store`) with append, ingest and the views folded in its
transactions (`append`, `ingest`, `views`), compaction and snapshots, the scratch fold that
replay and verification share (`scratch`), the fast preference lookup (`pref_lookup`), the
replication ledger, peers, wake-ups, verification, enrolment, and the home with its key file.

May import: `agentlog.log`, `agentlog.codec`, `agentlog.prefs`, `agentlog.memory` and the
top-level helpers; never the sync, replay, audit, CLI or MCP parts.
"""
