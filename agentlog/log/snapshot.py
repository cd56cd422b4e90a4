"""Snapshots: every view's state at a frontier, signed as a `snapshot` event; parsing and checking one.

A view's state travels as its canonical bytes, the very bytes its digest hashes: for the
preference and memory views, each database's rows in key order (a 0xff byte opens each
database, then length-prefixed key and value); for the roster, its state bytes. So a
receiver checks a snapshot by hashing the state it got and comparing with the signed digest.
Pure: reading and writing the state in LMDB is agentlog.store.snapshots's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import EventError, SnapshotError
from agentlog.log import payloads
from agentlog.log.event import Event, check_ranges, decode_record

VIEWS = ("roster", "pref", "memory")
# the databases each view's state holds, in digest order: the first ones of the view's DBS
# (agentlog.prefs.view, agentlog.memory.view; tests/test_compaction.py checks that they agree)
VIEW_DBS = {"pref": ("views.pref", "views.pref.evidence", "views.pref.pending", "views.pref.seen",
                     "views.pref.decisions", "views.pref.early"),
            "memory": ("views.memory", "views.memory.vectors", "views.memory.conflicts", "views.memory.past")}


def rows(raw: bytes, n_dbs: int) -> list[list[tuple[bytes, bytes]]]:
    """Parse a view's canonical bytes (agentlog.store.snapshots.dump) back into each database's rows;
    SnapshotError if they are malformed."""
    out: list[list] = []
    at, end = 0, len(raw)
    while at < end:
        if raw[at] == 0xFF:
            out.append([])
            at += 1
            continue
        if not out or at + 4 > end:
            raise SnapshotError("view state is malformed")
        n = int.from_bytes(raw[at : at + 4], "big")
        key = raw[at + 4 : at + 4 + n]
        at += 4 + n
        if at + 4 > end:
            raise SnapshotError("view state is malformed")
        m = int.from_bytes(raw[at : at + 4], "big")
        value = raw[at + 4 : at + 4 + m]
        if len(key) != n or len(value) != m:
            raise SnapshotError("view state is truncated")
        at += 4 + m
        out[-1].append((key, value))
    if len(out) != n_dbs:
        raise SnapshotError(f"view state holds {len(out)} databases, not {n_dbs}")
    return out


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a bootstrap hands over: the snapshot event and every view's state."""

    record: bytes
    payload: bytes
    states: dict[str, bytes]

    @property
    def event(self) -> Event:
        return decode_record(self.record, self.payload)

    def snapshot(self) -> payloads.Snapshot:
        return payloads.decode("snapshot", self.payload)


def check(bundle: Bundle, trusted) -> payloads.Snapshot:
    """Check a bundle before anything is installed: the event's id, signature and payload hash, an author
    `trusted(author, roster bytes)` accepts, and every view's digest recomputed from its state.

    Raises:
        SnapshotError: naming what does not hold.
    """
    try:
        event = bundle.event
        check_ranges(event.header)
        snap = bundle.snapshot()
    except EventError as exc:
        raise SnapshotError(f"snapshot does not decode: {exc}") from None
    h = event.header
    if h.kind != "snapshot":
        raise SnapshotError(f"event is a {h.kind}, not a snapshot")
    if crypto.blake2b256(bundle.payload) != h.payload_hash or len(bundle.payload) != h.payload_len:
        raise SnapshotError("snapshot payload does not match its header's hash")
    if not crypto.verify(h.author, event.id, event.signature):
        raise SnapshotError("snapshot signature does not verify")
    digests = {v.name: v.digest for v in snap.views}
    if set(digests) != set(VIEWS) or set(bundle.states) != set(VIEWS):
        raise SnapshotError(f"snapshot must carry the views {', '.join(VIEWS)}")
    for name in VIEWS:
        if crypto.blake2b256(bundle.states[name]) != digests[name]:
            raise SnapshotError(f"the {name} view's state does not match the snapshot's signed digest")
    for name, dbs in VIEW_DBS.items():
        rows(bundle.states[name], len(dbs))
    if not trusted(h.author, bundle.states["roster"]):
        raise SnapshotError(f"snapshot author {h.author.hex()[:16]} is not a device this one trusts to start from")
    return snap
