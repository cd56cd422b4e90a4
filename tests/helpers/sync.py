"""Stores meeting without a socket: what replication will do, done by `ingest`; and whether their memory views
converged."""

from __future__ import annotations

from agentlog.store.store import Store


def sync(src: Store, dst: Store):
    """Copy every event `dst` lacks from `src`, in causal order (what replication will do over a socket)."""
    return dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


def digest(store: Store) -> bytes:
    return store.views()["memory"]["digest"]


def meet(*stores: Store) -> None:
    """Every store exchanges with every other until all hold the same events."""
    for _ in range(2):
        for a in stores:
            for b in stores:
                if a is not b:
                    sync(a, b)


def converged(*stores: Store) -> bytes:
    """All stores hold the same memory view, and each equals a fresh replay of its log; returns the digest."""
    digests = {digest(s) for s in stores}
    assert len(digests) == 1, "the devices' memory views differ"
    [expected] = digests
    for s in stores:
        s.rebuild_views()
        assert digest(s) == expected, f"{s.name}: the incremental view differs from a replay"
    return expected
