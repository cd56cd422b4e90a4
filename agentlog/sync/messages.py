"""Replication messages (agentlog/codec/schemas/protocol.capnp `Message`) and their encoding. Pure.

Each message is a dataclass; `encode` and `decode` map it onto the `Message` union
with the same strict reader events use, so a peer's bytes either decode within the
limits of docs/protocol.md section 3 or raise ProtocolError. Frontiers and ranges
travel packed in Data and are unpacked (and checked) here. A bootstrap's snapshot
travels as an offer (the event and each view's total length) and chunks of at most
SNAPSHOT_CHUNK bytes (docs/protocol.md section 8). An error's or goodbye's text is at most
MAX_REASON characters: senders cut theirs, receivers refuse a longer one.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from agentlog.codec.decode import Reader
from agentlog.codec.encode import Layout
from agentlog.codec.schema import protocol as _schema
from agentlog.errors import DecodeError, ProtocolError, SizeLimitError
from agentlog.gcpause import quiet_gc
from agentlog.log.event import MAX_EPOCH, MAX_SEQ

VERSION = 3                                    # 2: hello and frontier carry truncation points; snapshots
                                               # 3: payload wants (Want.payloads, Events.answered)
MAX_MESSAGE = 16 * 1024 * 1024
MAX_BATCH = 2000
MAX_ENTRIES = 4096
KEY_LEN = 32
SNAPSHOT_CHUNK = 1 << 20                       # bytes of state per chunk, at most
MAX_SNAPSHOT = 1 << 32                         # bytes of state in all views of one offer, at most
MAX_VIEWS = 16
MAX_REASON = 1024                              # characters of an error's message or a goodbye's reason
MAX_CODE = 32                                  # characters of an error's code
MAX_COUNT = MAX_SEQ                            # batch and chunk numbers, and the seqs frontiers and ranges name
DIGEST_LEN = 16
_HEAD = struct.Struct(">IQ")
_RANGE = struct.Struct(">IQQ")
_HEAD_LEN, _RANGE_LEN = 32 + _HEAD.size, 32 + _RANGE.size

Frontier = dict[bytes, tuple[int, int]]        # author -> (epoch, seq) of the newest event held
Range = tuple[bytes, int, int, int]            # (author, epoch, from seq, to seq), inclusive


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    group: bytes
    device: bytes
    frontier: Frontier
    truncated: Frontier = field(default_factory=dict)   # the sender holds no event at or below these


@dataclass(frozen=True, slots=True)
class Want:
    ranges: tuple[Range, ...]
    payloads: tuple[Range, ...] = ()           # events the sender holds without their payload: send them whole


class WireEvent(NamedTuple):
    """One event on the wire: a (record, payload) pair, which Store.ingest takes as it is."""

    record: bytes
    payload: bytes | None                      # None: withheld


@dataclass(frozen=True, slots=True)
class Events:
    batch: int
    events: tuple[WireEvent, ...]
    answered: int = 0                          # payload wants this batch finishes answering


@dataclass(frozen=True, slots=True)
class Ack:
    batch: int
    frontier: Frontier


@dataclass(frozen=True, slots=True)
class Heartbeat:
    digest: bytes


@dataclass(frozen=True, slots=True)
class FrontierMsg:
    frontier: Frontier
    truncated: Frontier = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Goodbye:
    reason: str


@dataclass(frozen=True, slots=True)
class SnapshotWant:
    frontier: Frontier                         # the asker's, now


@dataclass(frozen=True, slots=True)
class SnapshotOffer:
    record: bytes
    payload: bytes
    views: tuple[tuple[str, int], ...]         # (view name, total bytes of its state), in chunk order


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    view: str
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotAck:
    chunk: int                                 # 1, 2, 3 ... per offer


Message = (Hello | Want | Events | Ack | Heartbeat | FrontierMsg | Error | Goodbye | SnapshotWant | SnapshotOffer
           | SnapshotChunk | SnapshotAck)


# -- packed lists ------------------------------------------------------------------------------

def pack_frontier(frontier: Frontier) -> bytes:
    return b"".join(a + _HEAD.pack(*frontier[a]) for a in sorted(frontier))


def unpack_frontier(raw: bytes, what: str = "frontier") -> Frontier:
    """A packed frontier, checked: whole entries, at most MAX_ENTRIES, authors sorted and distinct, epoch and
    seq in the ranges events may hold (docs/format.md), seq >= 1."""
    if len(raw) % _HEAD_LEN or len(raw) // _HEAD_LEN > MAX_ENTRIES:
        raise ProtocolError(f"{what} is {len(raw)} bytes: not a list of at most {MAX_ENTRIES} entries of {_HEAD_LEN}")
    out: Frontier = {}
    last = b""
    for i in range(0, len(raw), _HEAD_LEN):
        author = raw[i : i + 32]
        epoch, seq = _HEAD.unpack_from(raw, i + 32)
        if author <= last or seq < 1:
            raise ProtocolError(f"{what} entry {i // _HEAD_LEN} is out of order, repeated or has seq 0")
        _check_position(what, i // _HEAD_LEN, epoch, seq)
        out[author] = (epoch, seq)
        last = author
    return out


def _check_position(what: str, n: int, epoch: int, seq: int) -> None:
    if epoch > MAX_EPOCH or seq > MAX_SEQ:
        raise ProtocolError(f"{what} entry {n} names epoch {epoch} seq {seq}, beyond what an event may hold "
                            f"({MAX_EPOCH}, {MAX_SEQ})")


def _check_count(what: str, n: int) -> int:
    """A batch, chunk or offset number from a peer, within MAX_COUNT."""
    if n > MAX_COUNT:
        raise ProtocolError(f"{what} {n} is over the limit of {MAX_COUNT}")
    return n


def frontier_digest(frontier: Frontier) -> bytes:
    """BLAKE2b-128 of the packed frontier: equal digests mean equal frontiers."""
    return hashlib.blake2b(pack_frontier(frontier), digest_size=16).digest()


def pack_ranges(ranges) -> bytes:
    return b"".join(a + _RANGE.pack(e, lo, hi) for a, e, lo, hi in ranges)


def unpack_ranges(raw: bytes, what: str = "want") -> tuple[Range, ...]:
    if len(raw) % _RANGE_LEN or len(raw) // _RANGE_LEN > MAX_ENTRIES:
        raise ProtocolError(f"{what} is {len(raw)} bytes: not a list of at most {MAX_ENTRIES} ranges of {_RANGE_LEN}")
    out = []
    for i in range(0, len(raw), _RANGE_LEN):
        epoch, lo, hi = _RANGE.unpack_from(raw, i + 32)
        if not 1 <= lo <= hi:
            raise ProtocolError(f"{what} range {i // _RANGE_LEN} is empty or starts at seq 0")
        _check_position(f"{what} range", i // _RANGE_LEN, epoch, hi)
        out.append((raw[i : i + 32], epoch, lo, hi))
    return tuple(out)


# -- the Message union ---------------------------------------------------------------------------

_UNION = ("hello", "want", "events", "ack", "heartbeat", "frontier", "error", "goodbye", "snapshotWant",
          "snapshotOffer", "snapshotChunk", "snapshotAck")


@dataclass(frozen=True, slots=True)
class _Wire:
    """The union as the codec sees it: exactly one member set, packed lists as bytes."""

    hello: tuple | None = None
    want: tuple | None = None
    events: tuple | None = None
    ack: tuple | None = None
    heartbeat: tuple | None = None
    frontier: tuple | None = None
    error: tuple | None = None
    goodbye: tuple | None = None
    snapshotWant: tuple | None = None           # noqa: N815 (the schema's names)
    snapshotOffer: tuple | None = None          # noqa: N815
    snapshotChunk: tuple | None = None          # noqa: N815
    snapshotAck: tuple | None = None            # noqa: N815


_WIRE_EVENT_FIELDS = ("record", "payload", "flags")
WITHHELD = 1
_KNOWN_FLAGS = {0, WITHHELD}
_tuple_new = tuple.__new__                     # a WireEvent without NamedTuple's Python-level _make
_HELLO_FIELDS = ("version", "group", "device", "frontier", "truncated")
_WANT_FIELDS = ("ranges", "payloads")
_EVENTS_FIELDS = ("batch", "events", "answered")
_FRONTIER_FIELDS = ("frontier", "truncated")
_OFFER_FIELDS = ("record", "payload", "views")
_VIEW_FIELDS = ("name", "size")
_CHUNK_FIELDS = ("view", "offset", "data")
_LAYOUT = Layout(_schema.Message, _UNION, _UNION, {
    "hello": Layout(_schema.Hello, _HELLO_FIELDS),
    "want": Layout(_schema.Want, _WANT_FIELDS),
    "events": Layout(_schema.Events, _EVENTS_FIELDS, None,
                     {"events": Layout(_schema.WireEvent, _WIRE_EVENT_FIELDS)}),
    "ack": Layout(_schema.Ack, ("batch", "frontier")),
    "heartbeat": Layout(_schema.Heartbeat, ("digest",)),
    "frontier": Layout(_schema.Frontier, _FRONTIER_FIELDS),
    "error": Layout(_schema.Error, ("code", "message")),
    "goodbye": Layout(_schema.Goodbye, ("reason",)),
    "snapshotWant": Layout(_schema.SnapshotWant, ("frontier",)),
    "snapshotOffer": Layout(_schema.SnapshotOffer, _OFFER_FIELDS, None,
                            {"views": Layout(_schema.SnapshotView, _VIEW_FIELDS)}),
    "snapshotChunk": Layout(_schema.SnapshotChunk, _CHUNK_FIELDS),
    "snapshotAck": Layout(_schema.SnapshotAck, ("chunk",)),
})


def _batch_size(n: int) -> None:
    if n > MAX_BATCH:
        raise SizeLimitError(f"a batch holds at most {MAX_BATCH} events, not {n}")


def _view_count(n: int) -> None:
    if n > MAX_VIEWS:
        raise SizeLimitError(f"a snapshot offer names at most {MAX_VIEWS} views, not {n}")


_READER = Reader(_schema.Message, _UNION, _Wire, _UNION, {
    "hello": Reader(_schema.Hello, _HELLO_FIELDS),
    "want": Reader(_schema.Want, _WANT_FIELDS),
    "events": Reader(_schema.Events, _EVENTS_FIELDS, None, None,
                     {"events": Reader(_schema.WireEvent, _WIRE_EVENT_FIELDS)}, {"events": _batch_size}),
    "ack": Reader(_schema.Ack, ("batch", "frontier")),
    "heartbeat": Reader(_schema.Heartbeat, ("digest",)),
    "frontier": Reader(_schema.Frontier, _FRONTIER_FIELDS),
    "error": Reader(_schema.Error, ("code", "message")),
    "goodbye": Reader(_schema.Goodbye, ("reason",)),
    "snapshotWant": Reader(_schema.SnapshotWant, ("frontier",)),
    "snapshotOffer": Reader(_schema.SnapshotOffer, _OFFER_FIELDS, None, None,
                            {"views": Reader(_schema.SnapshotView, _VIEW_FIELDS)}, {"views": _view_count}),
    "snapshotChunk": Reader(_schema.SnapshotChunk, _CHUNK_FIELDS),
    "snapshotAck": Reader(_schema.SnapshotAck, ("chunk",)),
})


def encode(msg: Message) -> bytes:
    """The Cap'n Proto bytes of one message."""
    if isinstance(msg, Hello):
        wire = _Wire(hello=(msg.version, msg.group, msg.device, pack_frontier(msg.frontier),
                            pack_frontier(msg.truncated)))
    elif isinstance(msg, Want):
        wire = _Wire(want=(pack_ranges(msg.ranges), pack_ranges(msg.payloads)))
    elif isinstance(msg, Events):
        wire = _Wire(events=(msg.batch, [(e.record, e.payload or b"", WITHHELD if e.payload is None else 0)
                                          for e in msg.events], msg.answered))
    elif isinstance(msg, Ack):
        wire = _Wire(ack=(msg.batch, pack_frontier(msg.frontier)))
    elif isinstance(msg, Heartbeat):
        wire = _Wire(heartbeat=(msg.digest,))
    elif isinstance(msg, FrontierMsg):
        wire = _Wire(frontier=(pack_frontier(msg.frontier), pack_frontier(msg.truncated)))
    elif isinstance(msg, Error):
        wire = _Wire(error=(msg.code[:MAX_CODE], msg.message[:MAX_REASON]))
    elif isinstance(msg, Goodbye):
        wire = _Wire(goodbye=(msg.reason[:MAX_REASON],))
    elif isinstance(msg, SnapshotWant):
        wire = _Wire(snapshotWant=(pack_frontier(msg.frontier),))
    elif isinstance(msg, SnapshotOffer):
        wire = _Wire(snapshotOffer=(msg.record, msg.payload, list(msg.views)))
    elif isinstance(msg, SnapshotChunk):
        wire = _Wire(snapshotChunk=(msg.view, msg.offset, msg.data))
    elif isinstance(msg, SnapshotAck):
        wire = _Wire(snapshotAck=(msg.chunk,))
    else:
        raise TypeError(f"{type(msg).__name__} is not a replication message")
    return _LAYOUT.encode(wire)


def decode(raw: bytes) -> Message:
    """One message from a peer, the cyclic garbage collector paused meanwhile: a batch's thousand events are
    acyclic tuples, kept until the batch is stored, that it would only walk again and again.

    Raises:
        ProtocolError: it does not decode, has no member set, or breaks a limit.
    """
    with quiet_gc():
        return _decode(raw)


def _decode(raw: bytes) -> Message:
    try:
        wire = _READER.read(raw, MAX_MESSAGE, "message")
    except (DecodeError, SizeLimitError) as exc:
        raise ProtocolError(str(exc)) from None
    if wire.hello is not None:
        version, group, device, frontier, truncated = wire.hello
        if len(group) != KEY_LEN or len(device) != KEY_LEN:
            raise ProtocolError("hello: group and device must be 32 bytes")
        return Hello(version, group, device, unpack_frontier(frontier, "hello frontier"),
                     unpack_frontier(truncated, "hello truncation points"))
    if wire.want is not None:
        return Want(unpack_ranges(wire.want[0]), unpack_ranges(wire.want[1], "payload want"))
    if wire.events is not None:
        batch, events, answered = wire.events
        if {flags for _, _, flags in events} - _KNOWN_FLAGS:
            raise ProtocolError("events: unknown event flags")
        return Events(_check_count("events batch number", batch),
                      tuple([_tuple_new(WireEvent, (r, None if flags else p)) for r, p, flags in events]), answered)
    if wire.ack is not None:
        return Ack(_check_count("ack batch number", wire.ack[0]), unpack_frontier(wire.ack[1], "ack frontier"))
    if wire.heartbeat is not None:
        if len(wire.heartbeat[0]) != DIGEST_LEN:
            raise ProtocolError(f"heartbeat digest is {len(wire.heartbeat[0])} bytes, not {DIGEST_LEN}")
        return Heartbeat(wire.heartbeat[0])
    if wire.frontier is not None:
        return FrontierMsg(unpack_frontier(wire.frontier[0]), unpack_frontier(wire.frontier[1], "truncation points"))
    if wire.error is not None:
        code, message = wire.error
        return Error(_text(code, MAX_CODE, "error code"), _text(message, MAX_REASON, "error message"))
    if wire.goodbye is not None:
        return Goodbye(_text(wire.goodbye[0], MAX_REASON, "goodbye reason"))
    if wire.snapshotWant is not None:
        return SnapshotWant(unpack_frontier(wire.snapshotWant[0], "snapshot want frontier"))
    if wire.snapshotOffer is not None:
        return _offer(*wire.snapshotOffer)
    if wire.snapshotChunk is not None:
        view, offset, data = wire.snapshotChunk
        if not 1 <= len(data) <= SNAPSHOT_CHUNK:
            raise ProtocolError(f"snapshot chunk holds {len(data)} bytes, not 1 to {SNAPSHOT_CHUNK}", code="too-large")
        if offset > MAX_SNAPSHOT:
            raise ProtocolError(f"snapshot chunk offset {offset} is over the limit of {MAX_SNAPSHOT}", code="too-large")
        return SnapshotChunk(view, offset, data)
    if wire.snapshotAck is not None:
        return SnapshotAck(_check_count("snapshot ack chunk number", wire.snapshotAck[0]))
    raise ProtocolError("message has no member set")


def _text(value: str, limit: int, what: str) -> str:
    """A peer's text field within its limit (it is shown and logged; the sender cuts its own to fit)."""
    if len(value) > limit:
        raise ProtocolError(f"{what} is {len(value)} characters, over the limit of {limit}", code="too-large")
    return value


def _offer(record: bytes, payload: bytes, views) -> SnapshotOffer:
    """A snapshot offer, checked: distinct, non-empty view names and at most MAX_SNAPSHOT bytes in all."""
    names = [name for name, _ in views]
    if not names or len(set(names)) != len(names) or not all(names):
        raise ProtocolError("snapshot offer: view names must be distinct and not empty")
    total = sum(size for _, size in views)
    if total > MAX_SNAPSHOT:
        raise ProtocolError(f"snapshot offer of {total} bytes is over the limit of {MAX_SNAPSHOT}", code="too-large")
    if not record:
        raise ProtocolError("snapshot offer holds no snapshot event")
    return SnapshotOffer(record, payload, tuple((name, size) for name, size in views))
