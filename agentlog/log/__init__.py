"""The log's rules: event headers and ids, typed payloads, the validation of an event from
outside, the roster (who may write), and the pure half of snapshots.

Pure: no lmdb, trio, sockets, clocks, threads, logging or numpy.
May import: `agentlog.codec`, `agentlog.crypto`, `agentlog.errors`, `agentlog.limits`, `agentlog.ids`.
"""
