"""Snapshots: every view's state at a frontier, signed as a `snapshot` event; checking and installing one.

A view's state travels as its canonical bytes, the very bytes its digest hashes: for the
preference and memory views, each database's rows in key order (a 0xff byte opens each
database, then length-prefixed key and value); for the roster, its state bytes. So a
receiver checks a snapshot by hashing the state it got and comparing with the signed digest.
The `snapshots` database keeps, for the store's base snapshot (the newest it holds the state of):
  id(32) ++ view name   -> that view's state at the snapshot's frontier
  id(32) ++ b"\\0event" -> the snapshot event's record and payload (pack_anchor form), for bootstrap
and meta b"base" names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import EventError, SnapshotError
from agentlog.log import payloads
from agentlog.log.event import Event, check_ranges, decode_record
from agentlog.memory import view as memory_view
from agentlog.prefs import view as pref_view

VIEW_DBS = {"pref": pref_view.DBS[:6], "memory": memory_view.DBS[:4]}     # the digested databases, in digest order
VIEWS = ("roster", "pref", "memory")
EVENT_KEY = b"\0event"


def dump(txn, dbs: list) -> bytes:
    """A view's canonical bytes: every row of its databases in key order (what its digest hashes)."""
    out = bytearray()
    for db in dbs:
        out += b"\xff"
        with txn.cursor(db=db) as cur:
            for k, v in cur:
                out += len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v
    return bytes(out)


def rows(raw: bytes, n_dbs: int) -> list[list[tuple[bytes, bytes]]]:
    """Parse `dump` output back into each database's rows; SnapshotError if it is malformed."""
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


def load(txn, dbs: list, raw: bytes) -> None:
    """Replace a view's databases with the rows of its canonical bytes."""
    parsed = rows(raw, len(dbs))
    for db, found in zip(dbs, parsed):
        txn.drop(db, delete=False)
        if found:
            txn.cursor(db=db).putmulti(found, append=True)


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


def stored(txn, db, sid: bytes) -> Bundle | None:
    """The snapshot `sid` as the `snapshots` database `db` keeps it (None: its event is not there)."""
    raw = txn.get(sid + EVENT_KEY, db=db)
    if raw is None:
        return None
    raw = bytes(raw)
    n = int.from_bytes(raw[:4], "big")
    return Bundle(raw[4 : 4 + n], raw[4 + n :], {name: bytes(txn.get(sid + name.encode(), db=db) or b"")
                                                  for name in VIEWS})


def store(txn, db, sid: bytes, bundle: Bundle) -> None:
    """Keep `bundle` as the only snapshot in the `snapshots` database `db`, under id `sid`."""
    txn.drop(db, delete=False)
    for name, state in bundle.states.items():
        txn.put(sid + name.encode(), state, db=db)
    txn.put(sid + EVENT_KEY, len(bundle.record).to_bytes(4, "big") + bundle.record + bundle.payload, db=db)


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
