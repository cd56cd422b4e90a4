"""Snapshots: every view's state at a frontier, signed as a `snapshot` event; parsing and checking one.

A view's state travels as its canonical bytes, the very bytes its digest hashes: for the
preference and memory views, each database's rows in key order (a 0xff byte opens each
database, then length-prefixed key and value); for the roster, its state bytes. So a
receiver checks a snapshot by hashing the state it got and comparing with the signed digest.
A snapshot written with events kept beside it (docs/compaction.md, "Sealed scopes") signs the digest
of their ids and fold contexts; they travel with it as the `retained` part: each signed record with its
payload as held and its context.
Pure: reading and writing the state in LMDB is agentlog.store.snapshots's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import EventError, SnapshotError
from agentlog.log import payloads
from agentlog.log.event import Event, check_ranges, decode_record, record_id

VIEWS = ("roster", "pref", "memory")
RETAINED = "retained"            # the name the kept events travel under, beside the views' states
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
    """What a bootstrap hands over: the snapshot event, every view's state, and the events kept beside it
    (`retained`: pack_retained's bytes; b"" for none)."""

    record: bytes
    payload: bytes
    states: dict[str, bytes]
    retained: bytes = b""

    def parts(self) -> dict[str, bytes]:
        """The named parts a transport carries: every view's state, and the kept events when there are any."""
        return {**self.states, RETAINED: self.retained} if self.retained else dict(self.states)

    @classmethod
    def from_parts(cls, record: bytes, payload: bytes, parts: dict[str, bytes]) -> Bundle:
        return cls(record, payload, {n: s for n, s in parts.items() if n != RETAINED}, parts.get(RETAINED, b""))

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
    kept = unpack_retained(bundle.retained)
    if snap.retained and retained_digest((record_id(r), ctx) for r, _, ctx in kept) != snap.retained:
        raise SnapshotError("the events kept beside the snapshot are not the ones it signs")
    if kept and not snap.retained:
        raise SnapshotError("the snapshot signs no kept events, yet events come with it")
    if not trusted(h.author, bundle.states["roster"]):
        raise SnapshotError(f"snapshot author {h.author.hex()[:16]} is not a device this one trusts to start from")
    return snap


_NONE = (1 << 64) - 1


def pack_context(newest: int | None, past: dict[bytes, tuple[int, int]]) -> bytes:
    """A kept event's fold context: the newest time its author had seen at it (the preference view's clock-skew
    cap; none: it had seen no other device) and its author's causal past at it (the memory view's)."""
    out = [(_NONE if newest is None else newest).to_bytes(8, "big")]
    out += [a + epoch.to_bytes(4, "big") + seq.to_bytes(8, "big") for a, (epoch, seq) in sorted(past.items())]
    return b"".join(out)


def unpack_context(raw: bytes) -> tuple[int | None, dict[bytes, tuple[int, int]]]:
    """pack_context undone; SnapshotError when malformed."""
    if len(raw) < 8 or (len(raw) - 8) % 44:
        raise SnapshotError("a kept event's fold context is malformed")
    newest = int.from_bytes(raw[:8], "big")
    past = {raw[i : i + 32]: (int.from_bytes(raw[i + 32 : i + 36], "big"), int.from_bytes(raw[i + 36 : i + 44], "big"))
            for i in range(8, len(raw), 44)}
    return None if newest == _NONE else newest, past


def retained_digest(pairs) -> bytes:
    """What a snapshot signs of the events it keeps: BLAKE2b-256 over each one's id and fold context (its
    length, then its bytes), in key order."""
    return crypto.blake2b256(b"".join(eid + len(ctx).to_bytes(4, "big") + ctx for eid, ctx in pairs))


def pack_retained(events: list[tuple[bytes, bytes | None, bytes]]) -> bytes:
    """Kept events, (signed record, payload or None when held header-only, fold context), as one part: for each,
    the record's length and bytes, the context's length and bytes, a byte 1 when a payload follows (its length
    and bytes) or 0."""
    out = []
    for record, payload, context in events:
        out += [len(record).to_bytes(4, "big"), record, len(context).to_bytes(4, "big"), context]
        out += [b"\0"] if payload is None else [b"\1", len(payload).to_bytes(4, "big"), payload]
    return b"".join(out)


def unpack_retained(raw: bytes) -> list[tuple[bytes, bytes | None, bytes]]:
    """pack_retained undone; SnapshotError when malformed."""
    out: list[tuple[bytes, bytes | None, bytes]] = []
    at, end = 0, len(raw)

    def take(n: int) -> bytes:
        nonlocal at
        if at + n > end:
            raise SnapshotError("the kept events beside the snapshot are truncated")
        at += n
        return raw[at - n : at]
    while at < end:
        record = take(int.from_bytes(take(4), "big"))
        context = take(int.from_bytes(take(4), "big"))
        flag = take(1)
        if flag not in (b"\0", b"\1"):
            raise SnapshotError("the kept events beside the snapshot are malformed")
        out.append((record, take(int.from_bytes(take(4), "big")) if flag == b"\1" else None, context))
    return out
