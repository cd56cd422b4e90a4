"""The replication ledger: which events went to which peer and came from which, and when, as ranges.

Databases (keys big-endian, so one peer's ranges of one author scan in seq order):
  ledger.sent      peer(32) author(32) epoch(4) lo(8) -> hi(8) first_ms(8) last_ms(8)
  ledger.received  the same, for events stored here that a peer sent
A row says events lo..hi of that author went out (or arrived) between first_ms and last_ms,
local wall clock. A range that continues the previous one within a second is merged
into it, so a steady stream costs one row a second per peer and author, not one per event.

"Sent" means handed to the peer's encrypted connection (the batch left this device), whether or
not the peer acknowledged it: for a privacy review what left the device is what counts, and a
batch cut off before its ack may still have been read. "Received" means stored here from that
peer (accepted in its ingest transaction; duplicates are not entered).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from agentlog import crypto
from agentlog.codec.decode import Reader
from agentlog.codec.schema import event as _schema

DBS = ("ledger.sent", "ledger.received")
MERGE_MS = 1000
_KEY = struct.Struct(">32s32sIQ")
_VALUE = struct.Struct(">QQQ")
_POSITION = Reader(_schema.Header, ("author", "epoch", "seq"))


@dataclass(frozen=True, slots=True)
class Range:
    """Events lo..hi of `author` in `epoch`, sent to (or received from) `peer` between first_ms and last_ms."""

    peer: bytes
    author: bytes
    epoch: int
    lo: int
    hi: int
    first_ms: int
    last_ms: int


def runs(positions: Iterable[tuple[bytes, int, int]]) -> list[tuple[bytes, int, int, int]]:
    """(author, epoch, seq) positions -> contiguous (author, epoch, lo, hi) runs, in position order."""
    out: list[tuple[bytes, int, int, int]] = []
    run, hi = None, 0
    for author, epoch, seq in sorted(positions):
        if run is not None and seq == hi + 1 and epoch == run[1] and author == run[0]:
            hi = seq
            continue
        if run is not None:
            out.append((*run, hi))
        run, hi = (author, epoch, seq), seq
    if run is not None:
        out.append((*run, hi))
    return out


def record(txn, db, peer: bytes, positions: Iterable[tuple[bytes, int, int]], time_ms: int) -> None:
    """Add the events at `positions` to `peer`'s ranges in `db`, inside the caller's write transaction."""
    for author, epoch, lo, hi in runs(positions):
        prefix = peer + author + epoch.to_bytes(4, "big")
        with txn.cursor(db=db) as cur:
            positioned = cur.prev() if cur.set_range(_KEY.pack(peer, author, epoch, lo)) else cur.last()
            before = bytes(cur.key()) if positioned else b""
            if before.startswith(prefix):
                old_hi, first, last = _VALUE.unpack(cur.value())
                if old_hi + 1 == lo and 0 <= time_ms - first < MERGE_MS:
                    cur.put(before, _VALUE.pack(hi, first, max(last, time_ms)))
                    continue
        txn.put(_KEY.pack(peer, author, epoch, lo), _VALUE.pack(hi, time_ms, time_ms), db=db)


def ranges(txn, db, peer: bytes | None = None) -> list[Range]:
    """Every range in `db` (or only `peer`'s), in key order."""
    out = []
    with txn.cursor(db=db) as cur:
        found = cur.set_range(peer) if peer else cur.first()
        while found:
            key, value = bytes(cur.key()), bytes(cur.value())
            if peer and not key.startswith(peer):
                break
            p, author, epoch, lo = _KEY.unpack(key)
            hi, first, last = _VALUE.unpack(value)
            out.append(Range(p, author, epoch, lo, hi, first, last))
            found = cur.next()
    return out


def positions(records: Iterable[bytes]) -> list[tuple[bytes, int, int]]:
    """(author, epoch, seq) of stored records (header ++ signature), read without the full header's checks."""
    return [_POSITION.read_stored(record[: -crypto.SIG_LEN], "header") for record in records]


class Ledger:
    """The ledger of one store: record what a connection sent, read both directions."""

    def __init__(self, store):
        self.store = store

    def record_sent(self, peer: bytes, batches: Iterable[tuple[int, Iterable[bytes]]],
                    meta: dict[str, bytes] | None = None) -> None:
        """Enter (time_ms, records) batches handed to `peer`'s connection, all in one write transaction, with
        the `meta` values that go with them (a relay's kept position: one commit, not two)."""
        db, meta_db = self.store.db("ledger.sent"), self.store.db("meta")
        found = [(time_ms, positions(records)) for time_ms, records in batches]

        def write(txn):
            for time_ms, pos in found:
                record(txn, db, peer, pos, time_ms)
            for name, value in (meta or {}).items():
                txn.put(name.encode(), value, db=meta_db)
        self.store.write(write)

    def sent(self, peer: bytes | None = None) -> list[Range]:
        """Ranges that left this device (to `peer`, or to any)."""
        return self.store.read(lambda txn: ranges(txn, self.store.db("ledger.sent"), peer))

    def received(self, peer: bytes | None = None) -> list[Range]:
        """Ranges stored here that a peer (`peer`, or any) sent."""
        return self.store.read(lambda txn: ranges(txn, self.store.db("ledger.received"), peer))
