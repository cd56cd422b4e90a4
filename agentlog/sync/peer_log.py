"""The local store as the replication protocol sees it: frontier, range reads, and batch ingest."""

from __future__ import annotations

from agentlog.errors import EventError
from agentlog.log.snapshot import Bundle
from agentlog.store import compaction, forks
from agentlog.store.layout import heads_in, limits_in
from agentlog.store.store import Store
from agentlog.sync.messages import MAX_ENTRIES, Frontier, WireEvent


class StoreLog:
    """`protocol.LogReader` over a Store, plus the ingest step the protocol's `Ingest` action asks for."""

    def __init__(self, store: Store, peer: bytes | None = None):
        self.store = store
        self.peer = peer                 # the device on the other end, for the replication ledger
        self.forked: dict[bytes, int] = {}   # author -> its fork positions held, for the last batch's new forks
        self.own: tuple[int, int] | None = None   # the last ingest_batches' one commit (`ingest_batches`)

    def frontier(self) -> Frontier:
        """What this device offers: its heads, a revoked device's cut at the revocation's seq (events past
        it, accepted before the revocation arrived, are never asked for nor sent: peers would refuse them).
        One read: a live push asks on each local change, before its events leave."""
        dbs = self.store.dbs
        return self.store.read(lambda txn: forks.frontier_in(dbs, txn, _clamped(heads_in(dbs, txn),
                                                                                 limits_in(dbs, txn))))

    def read(self, author: bytes, epoch: int, lo: int, hi: int, limit: int) -> list[tuple[int, WireEvent]]:
        """Held events of an author, or of a forked branch named by its branch id (agentlog.store.forks)."""
        found = self.store.read_range(author, epoch, lo, hi, limit) or forks.read(self.store, author, epoch, lo, hi,
                                                                                 limit)
        return [(lamport, WireEvent(record, payload)) for lamport, record, payload in found]

    def caught_up(self, theirs: Frontier) -> None:
        """The peer's whole frontier is known: stop asking again for authors it holds nothing newer of."""
        forks.caught_up(self.store, theirs)

    def revoked_limits(self) -> dict[bytes, int]:
        return self.store.revoked_limits()

    def signature_ok(self, author: bytes, epoch: int, seq: int, record: bytes) -> bool:
        return self.store.signature_ok(author, epoch, seq, record)

    def ingest(self, events: tuple[WireEvent, ...]) -> tuple[Frontier, Frontier, int]:
        """Validate and store a batch whole (one signature per author run); returns
        (newest event per author in the batch, our frontier after it, events accepted, completed with
        the payload they lacked, or given back their signature).

        Raises:
            EventError: the batch was refused; nothing of it is stored (a fork is kept as proof).
        """
        stored, failed = self.ingest_batches([events])
        if failed is not None:
            raise failed
        return stored[0]

    def ingest_batches(self, batches: list[tuple[WireEvent, ...]]
                       ) -> tuple[list[tuple[Frontier, Frontier, int]], EventError | None]:
        """`ingest` of batches queued together, in as few commits as Store.ingest_batches allows: what
        `ingest` returns for each batch stored, and the error of the one refused (None: all were stored).
        Sets `own` to LMDB's last transaction ids (before, after) when the batches were stored in one commit and
        no other process committed meanwhile (else None): the replicator's watcher skips that commit."""
        self.forked, self.own = {}, None
        before = self.store.last_txnid()
        full = [events for events in batches if events]       # WireEvents are (record, payload) pairs
        results, failed = self.store.ingest_batches(full, every_signature=False, source=self.peer) if full \
            else ([], None)                        # an empty batch only ends a payload want
        forked = {author for r in results for author in r.forked}
        self.forked = forks.fork_counts(self.store, forked) if forked else {}
        after = self.store.last_txnid()
        if after == before + 1 and failed is None and any(r.accepted or r.filled or r.healed for r in results):
            self.own = (before, after)
        frontier, found, stored = self.frontier(), iter(results), []
        for events in batches:
            result = next(found, None) if events else None
            if events and result is None:
                break                              # the batch refused
            stored.append((result.heads, frontier, result.accepted + result.filled + result.healed) if result
                          else ({}, frontier, 0))
        return stored, failed

    def withheld(self) -> list[tuple[bytes, int, int, int]]:
        """Runs whose records to ask peers for again: events held without their payload, and events whose
        stored signature was found damaged (a peer's whole record heals it: `Store.ingest`)."""
        return self.store.refetch(MAX_ENTRIES)

    def truncated(self) -> Frontier:
        """What this device no longer holds, clamped like `frontier` at a revoked device's cut, so that no
        truncation point it shows lies past the frontier it shows."""
        return _clamped(self.store.truncated(), self.store.revoked_limits())

    def snapshot(self) -> tuple[bytes, bytes, dict[str, bytes]] | None:
        """The base snapshot's record, payload and named parts (the views' states, the kept events), or None."""
        bundle = compaction.base_bundle(self.store)
        return None if bundle is None else (bundle.record, bundle.payload, bundle.parts())

    def install(self, record: bytes, payload: bytes, states: dict[str, bytes], cuts: Frontier) -> Frontier:
        """Check a peer's snapshot against its truncation points `cuts` and what this store holds, and start
        this store from it (compaction.bootstrap); our frontier after.

        Raises:
            SnapshotError: the snapshot does not hold; nothing is changed.
        """
        compaction.bootstrap(self.store, Bundle.from_parts(record, payload, states), cuts)
        return self.frontier()


def _clamped(positions: dict, limits: dict[bytes, int]) -> Frontier:
    """Author -> (epoch, seq) of `positions` (Heads), a revoked device's at most its limit (left out at 0)."""
    return {author: (h.epoch, min(h.seq, limits[author]) if author in limits else h.seq)
            for author, h in positions.items() if limits.get(author, 1) > 0}
