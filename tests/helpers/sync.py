"""Two stores meeting without a socket: what replication will do, done by `ingest`."""

from __future__ import annotations

from agentlog.store.store import Store


def sync(src: Store, dst: Store):
    """Copy every event `dst` lacks from `src`, in causal order (what replication will do over a socket)."""
    return dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])
