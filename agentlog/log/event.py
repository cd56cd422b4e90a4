"""Event headers: encoding, strict decoding, ids and signatures. Pure: no I/O.

An event is a signed header plus a payload. The id is BLAKE2b-256 of the exact
header bytes; the signature is Ed25519 by `author` over the id; the header commits
to the payload by hash and length. Bytes are stored and sent exactly as signed and
never re-encoded. Stored form of a header: header bytes followed by the 64-byte
signature ("record").
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from hashlib import blake2b as _blake2b

from agentlog import crypto
from agentlog.codec.decode import Reader
from agentlog.codec.encode import Layout
from agentlog.codec.schema import event as _schema
from agentlog.errors import DecodeError, SizeLimitError
from agentlog.limits import MAX_EPOCH, MAX_LAMPORT, MAX_SEQ, MAX_TIME_MS, MIN_TIME_MS

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_CLOCK_ENTRIES = 256
MAX_SCOPE_LEN = 256
MAX_KIND_LEN = 64
CODECS = ("plain", "sealed")

_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_CLOCK_ENTRY = Layout(_schema.ClockEntry, ("author", "epoch", "seq"), ("author", "epoch", "seq"))
_HEADER_FIELDS = ("formatVersion", "group", "author", "epoch", "seq", "prev", "lamport", "time", "scope", "kind",
                  "payloadHash", "payloadLen", "payloadCodec", "clock")
_HEADER = Layout(_schema.Header, _HEADER_FIELDS, nested={"clock": _CLOCK_ENTRY})


@dataclass(frozen=True, slots=True)
class ClockEntry:
    """The head of another author that the writer had seen."""

    author: bytes
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """Decoded header fields; see agentlog/codec/schemas/event.capnp for their meaning."""

    group: bytes
    author: bytes
    epoch: int
    seq: int
    prev: bytes
    lamport: int
    clock: tuple[ClockEntry, ...] = ()
    time_ms: int
    scope: str
    kind: str
    payload_hash: bytes
    payload_len: int
    payload_codec: str = "plain"
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class Event:
    """A signed event as stored and sent: exact header bytes, signature and (maybe) payload."""

    header_bytes: bytes
    signature: bytes
    header: Header
    id: bytes = field(repr=False)
    payload: bytes | None = field(default=None, repr=False)

    @property
    def record(self) -> bytes:
        return self.header_bytes + self.signature

    @property
    def author(self) -> bytes:
        return self.header.author

    @property
    def seq(self) -> int:
        return self.header.seq


def encode_header(h: Header) -> bytes:
    """Serialize a header as one single-segment Cap'n Proto message (no checks: tests craft bad ones)."""
    return _HEADER.encode((h.format_version, h.group, h.author, h.epoch, h.seq, h.prev, h.lamport, h.time_ms,
                           h.scope, h.kind, h.payload_hash, h.payload_len, h.payload_codec, h.clock or None))


class HeaderWriter:
    """Checks and encodes this device's headers for one batch of appends, fast.

    Within a batch only seq, prev, lamport and the payload's hash and length change
    (and the clock, which only the first header carries), so each (scope, kind) is
    encoded once and later headers are a copy with those five fields written in
    place: the same bytes `encode_header` gives, without a Header object.
    """

    def __init__(self, group: bytes, author: bytes, epoch: int, time_ms: int):
        self.group, self.author, self.epoch, self.time_ms = group, author, epoch, time_ms
        self._templates: dict[tuple[str, str, str], tuple[bytes, int, int]] = {}

    def encode(self, seq: int, prev: bytes, lamport: int, clock: tuple[ClockEntry, ...], scope: str, kind: str,
               payload_hash: bytes, payload_len: int, codec: str = "plain") -> bytes:
        """Header bytes for these fields, after the readers' shape checks and size limit.

        Raises:
            DecodeError, SizeLimitError: what a reader would raise on these fields or bytes.
        """
        check_fields(self.group, self.author, self.epoch, seq, prev, lamport, clock, self.time_ms, scope, kind,
                     payload_hash, payload_len, codec)
        template = None if clock else self._templates.get((scope, kind, codec))
        if template is None:
            raw = _HEADER.encode((FORMAT_VERSION, self.group, self.author, self.epoch, seq, prev, lamport, self.time_ms,
                                  scope, kind, payload_hash, payload_len, codec, clock or None))
            if len(raw) > MAX_HEADER_BYTES:
                raise SizeLimitError(f"header would be {len(raw)} bytes, over the limit of {MAX_HEADER_BYTES}",
                                     self.author, seq)
            if not clock:
                self._templates[scope, kind, codec] = (raw, _target(raw, "prev"), _target(raw, "payloadHash"))
            return raw
        raw, prev_at, hash_at = template
        buf = bytearray(raw)
        try:
            _PUT_U64(buf, _SEQ_AT, seq)
            _PUT_U64(buf, _LAMPORT_AT, lamport)
            _PUT_U32(buf, _LEN_AT, payload_len)
        except struct.error as exc:
            raise ValueError(f"cannot encode Header: {exc!r}") from None
        buf[prev_at : prev_at + crypto.ID_LEN] = prev
        buf[hash_at : hash_at + crypto.ID_LEN] = payload_hash
        return bytes(buf)


def _data_at(name: str) -> int:
    """Where a UInt field of the root Header sits in the message (after the segment table and root pointer)."""
    f = _schema.Header.schema.fields[name].proto.slot
    return 16 + f.offset * {"uint32": 4, "uint64": 8}[f.type.which()]


def _target(raw: bytes, name: str) -> int:
    """Where the object a root Header pointer field points to starts in the message."""
    at = (
        16
        + 8 * _schema.Header.schema.node.struct.dataWordCount
        + 8 * _schema.Header.schema.fields[name].proto.slot.offset
    )
    return at + 8 + 8 * (struct.unpack_from("<i", raw, at)[0] >> 2)


_SEQ_AT, _LAMPORT_AT, _LEN_AT = _data_at("seq"), _data_at("lamport"), _data_at("payloadLen")
_PUT_U64, _PUT_U32 = struct.Struct("<Q").pack_into, struct.Struct("<I").pack_into


def decode_header(raw: bytes) -> Header:
    """Decode and sanity-check header bytes from outside.

    Raises:
        SizeLimitError: too large.
        DecodeError: not a valid header (framing, schema, field shapes).
    """
    buf = raw if type(raw) is bytes else memoryview(raw).tobytes()
    return _KNOWN.decode(buf) or _decode_unknown(buf)


def _decode_unknown(buf: bytes) -> Header:
    """decode_header of a header _KNOWN does not know: the full decoder and check_shape, then learned."""
    header = _HEADER_READER.read(buf, MAX_HEADER_BYTES, "header")
    check_shape(header)
    _KNOWN.learn(buf, header)
    return header


def _check_version(version: int) -> None:
    """Raise unless this reader knows the header format `version`."""
    if version != FORMAT_VERSION:
        raise DecodeError(f"header format version {version} is not supported (this reader knows {FORMAT_VERSION})")


def _check_clock_length(n: int) -> None:
    """Raise before a clock of more than MAX_CLOCK_ENTRIES entries is read."""
    if n > MAX_CLOCK_ENTRIES:
        raise SizeLimitError(f"header clock has {n} entries, over the limit of {MAX_CLOCK_ENTRIES}")


_CLOCK_READER = Reader(_schema.ClockEntry, ("author", "epoch", "seq"), ClockEntry, ("author", "epoch", "seq"))
_HEADER_READER = Reader(
    _schema.Header,
    ("formatVersion", "clock", "group", "author", "epoch", "seq", "prev", "lamport", "time", "scope", "kind",
     "payloadHash", "payloadLen", "payloadCodec"),
    Header,
    ("format_version", "clock", "group", "author", "epoch", "seq", "prev", "lamport", "time_ms", "scope", "kind",
     "payload_hash", "payload_len", "payload_codec"),
    nested={"clock": _CLOCK_READER},
    checks={"formatVersion": _check_version, "clock": _check_clock_length},
)


PEEK_READER = Reader(
    _schema.Header, ("lamport", "time", "kind", "payloadCodec", "clock"), nested={"clock": _CLOCK_READER}
)
"""Reads only what folding a stored record needs (see `peek_record`); for records the store validated."""


def peek_record(record: bytes) -> tuple[int, int, str, str, tuple[ClockEntry, ...]]:
    """(lamport, time, kind, payload codec, clock) of a stored record, without the full header's checks.

    For replaying records the store validated when it accepted them; never for input from outside.
    """
    return PEEK_READER.read_stored(record[: -crypto.SIG_LEN], "header")


_LAMPORT_READER = Reader(_schema.Header, ("lamport",))


def record_lamport(record: bytes) -> int:
    """`peek_record(record)[0]` alone: what a sender orders events by, without reading the clock."""
    return _LAMPORT_READER.read_stored(record[: -crypto.SIG_LEN], "header")[0]


def check_shape(h: Header) -> None:
    """Raise unless every header field has its required shape (the ranges are check_ranges')."""
    _check_shape(h.group, h.author, h.seq, h.prev, h.lamport, h.clock, h.scope, h.kind, h.payload_hash,
                 h.payload_len, h.payload_codec)


def check_ranges(h: Header) -> None:
    """Raise unless every number of the header is in its range (docs/format.md section 3.4).

    Applied to events from outside (ingest, a bootstrap's snapshot, a join token) and, through
    check_fields, to this device's own; not when a stored record is read, so a store that took an
    event before these ranges existed can still show it.
    """
    _check_ranges(h.author, h.epoch, h.seq, h.lamport, h.clock, h.time_ms)


def check_fields(group: bytes, author: bytes, epoch: int, seq: int, prev: bytes, lamport: int,
                 clock: tuple[ClockEntry, ...], time_ms: int, scope: str, kind: str, payload_hash: bytes,
                 payload_len: int, payload_codec: str) -> None:
    """The header shape and range rules on bare fields, for a writer: what readers apply to an event from
    outside (check_shape when decoding, check_ranges when validating)."""
    _check_shape(group, author, seq, prev, lamport, clock, scope, kind, payload_hash, payload_len, payload_codec)
    _check_ranges(author, epoch, seq, lamport, clock, time_ms)


def _check_shape(group: bytes, author: bytes, seq: int, prev: bytes, lamport: int, clock: tuple[ClockEntry, ...],
                 scope: str, kind: str, payload_hash: bytes, payload_len: int, payload_codec: str) -> None:
    if len(author) != crypto.KEY_LEN:
        raise DecodeError(f"header author is {len(author)} bytes, not {crypto.KEY_LEN}", seq=seq)
    for name, value in (("group", group), ("prev", prev), ("payload_hash", payload_hash)):
        if len(value) != crypto.ID_LEN:
            raise DecodeError(f"header {name} is {len(value)} bytes, not {crypto.ID_LEN}", author, seq)
    _check_position(author, seq, prev, lamport)
    if not _KIND_RE.fullmatch(kind) or len(kind) > MAX_KIND_LEN:
        raise DecodeError(f"header kind {kind[:MAX_KIND_LEN]!r} is not a valid kind name", author, seq)
    if len(clock) > MAX_CLOCK_ENTRIES:
        raise SizeLimitError(
            f"header clock has {len(clock)} entries, over the limit of {MAX_CLOCK_ENTRIES}", author, seq
        )
    if not scope or len(scope) > MAX_SCOPE_LEN or not scope.isprintable():
        raise DecodeError("header scope must be 1 to 256 printable characters", author, seq)
    if payload_codec not in CODECS:
        raise DecodeError(f"header payload codec {payload_codec!r} is unknown", author, seq)
    _check_payload_len(author, seq, payload_len)
    for entry in clock:
        if len(entry.author) != crypto.KEY_LEN or entry.author == author or entry.seq < 1:
            raise DecodeError("header clock entry is malformed", author, seq)


def _check_position(author: bytes, seq: int, prev: bytes, lamport: int) -> None:
    if seq < 1:
        raise DecodeError("header seq must be 1 or more", author, seq)
    if (seq == 1) != (prev == crypto.ZERO_ID):
        raise DecodeError("header prev must be zero exactly at seq 1", author, seq)
    if lamport < 1:
        raise DecodeError("header lamport must be 1 or more", author, seq)


def _check_ranges(author: bytes, epoch: int, seq: int, lamport: int, clock: tuple[ClockEntry, ...],
                  time_ms: int) -> None:
    if seq > MAX_SEQ:
        raise DecodeError(f"header seq is over the limit of {MAX_SEQ}", author, seq)
    if lamport > MAX_LAMPORT:
        raise DecodeError(f"header lamport {lamport} is over the limit of {MAX_LAMPORT}", author, seq)
    if not MIN_TIME_MS <= time_ms <= MAX_TIME_MS:
        raise DecodeError(f"header time {time_ms} ms is outside {MIN_TIME_MS}..{MAX_TIME_MS} "
                          "(years 1970 to 9999)", author, seq)
    if epoch > MAX_EPOCH:
        raise DecodeError(f"header epoch {epoch} is over the limit of {MAX_EPOCH}", author, seq)
    for entry in clock:
        if entry.seq > MAX_SEQ or entry.epoch > MAX_EPOCH:
            raise DecodeError(f"header clock entry epoch {entry.epoch} seq {entry.seq} is over the limits "
                              f"{MAX_EPOCH}, {MAX_SEQ}", author, seq)


def _check_payload_len(author: bytes, seq: int, payload_len: int) -> None:
    if payload_len > MAX_PAYLOAD_BYTES:
        raise SizeLimitError(f"payload length {payload_len} is over the limit of {MAX_PAYLOAD_BYTES}", author, seq)


class _KnownHeaders:
    """Headers decoded before, by their bytes outside the fields that change from one event to the next.

    An author's events mostly differ only in seq, lamport, time and payload length (the data
    words at message bytes 24 to 52) and in the 32 bytes of prev and of the payload
    hash: a replication batch decodes the same scope, kind, group and author again and again.
    A header that decoded and passed check_shape, whose root struct sits right after its
    pointer with the schema's section sizes, whose clock is null and whose other objects
    lie apart from those bytes, is `learn`ed under the rest of its bytes. A message equal to
    it in all of those bytes (so of the same length, and with the same pointers, hence prev
    and the payload hash at the same places) is read by `read` exactly as it was, but for
    those fields: it decodes to the learned header with those fields replaced, and passes
    every check `read` and check_shape make except perhaps the ones on those fields, which
    `decode` makes again in check_fields' order. So `decode` gives what the full decoder
    gives, for every input, or None when it does not know the message.
    """

    LIMIT = 4096

    def __init__(self):
        self._known: dict[bytes, Header] = {}

    @staticmethod
    def _key(buf: bytes) -> tuple[bytes, int, int] | None:
        """(the bytes outside the changing fields, where prev lies, where the payload hash lies), reading the
        pointers as a canonical layout's; None when they cannot be read so."""
        if len(buf) < _END_OF_POINTERS:
            return None
        prev_ptr, hash_ptr = _PREV_AND_HASH_PTRS(buf, _PREV_PTR)
        prev_at = _PREV_PTR + 8 + (prev_ptr >> 2 << 3)
        hash_at = _HASH_PTR + 8 + (hash_ptr >> 2 << 3)
        if _END_OF_POINTERS <= prev_at and prev_at + _ID_LEN <= hash_at and hash_at + _ID_LEN <= len(buf):
            rest = b"".join((buf[:_VARYING_FROM], buf[_VARYING_TO:prev_at], buf[prev_at + _ID_LEN : hash_at],
                             buf[hash_at + _ID_LEN :]))
            return rest, prev_at, hash_at
        return None

    def decode(self, buf: bytes) -> Header | None:
        found = self._key(buf) if self._known else None
        if found is None:
            return None
        key, prev_at, hash_at = found
        known = self._known.get(key)
        if known is None:
            return None
        seq, lamport, time_ms, payload_len = _CHANGING(buf, _VARYING_FROM)
        prev, payload_hash = buf[prev_at : prev_at + _ID_LEN], buf[hash_at : hash_at + _ID_LEN]
        if not (seq > 1 and lamport and payload_len <= MAX_PAYLOAD_BYTES and prev != crypto.ZERO_ID):  # else both pass
            _check_position(known.author, seq, prev, lamport)
            _check_payload_len(known.author, seq, payload_len)
        h = _new(Header)
        _set_group(h, known.group)
        _set_author(h, known.author)
        _set_epoch(h, known.epoch)
        _set_seq(h, seq)
        _set_prev(h, prev)
        _set_lamport(h, lamport)
        _set_clock(h, ())
        _set_time(h, time_ms)
        _set_scope(h, known.scope)
        _set_kind(h, known.kind)
        _set_hash(h, payload_hash)
        _set_len(h, payload_len)
        _set_codec(h, known.payload_codec)
        _set_version(h, known.format_version)
        return h

    def learn(self, buf: bytes, header: Header) -> None:
        """Remember a header that decoded and passed check_shape, if its layout allows (see the class)."""
        found = self._key(buf)
        if found is None or buf[8:16] != _CANONICAL_ROOT or any(buf[_CLOCK_PTR : _CLOCK_PTR + 8]):
            return
        key, prev_at, hash_at = found
        changing = ((_VARYING_FROM, _VARYING_TO), (prev_at, prev_at + _ID_LEN), (hash_at, hash_at + _ID_LEN))
        for ptr in _OTHER_PTRS:
            lo, hi = _POINTER(buf, ptr)
            if lo or hi:
                start = ptr + 8 + (lo >> 2 << 3)
                end = start + (hi >> 3)
                if any(start < b and a < end for a, b in changing):
                    return
        if len(self._known) >= self.LIMIT:
            self._known.clear()
        self._known[key] = header


def _header_layout():
    """Byte offsets in a message whose root Header sits right after its pointer, from the schema."""
    node = _schema.Header.schema.node.struct
    fields = _schema.Header.schema.fields
    pointers = 16 + 8 * node.dataWordCount

    def data(name: str, kind: str, size: int) -> tuple[int, int]:
        slot = fields[name].proto.slot
        if slot.type.which() != kind or slot.hadExplicitDefault:
            raise ImportError(f"_KnownHeaders reads Header.{name} as a {kind} without a default")
        return 16 + size * slot.offset, 16 + size * slot.offset + size

    spans = [data("seq", "uint64", 8), data("lamport", "uint64", 8), data("time", "int64", 8),
             data("payloadLen", "uint32", 4)]                    # as _CHANGING unpacks them
    if any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise ImportError("the header's changing data fields are not contiguous; _KnownHeaders needs them to be")
    others = [data("formatVersion", "uint16", 2), data("payloadCodec", "enum", 2), data("epoch", "uint32", 4)]
    if any(a < spans[-1][1] and spans[0][0] < b for a, b in others):
        raise ImportError("a header data field lies among the changing ones; _KnownHeaders needs them apart")
    ptr = {name: pointers + 8 * fields[name].proto.slot.offset for name in
           ("group", "author", "prev", "clock", "scope", "kind", "payloadHash")}
    if ptr["payloadHash"] <= ptr["prev"] or any(f.proto.slot.type.which() != "data" or f.proto.slot.hadExplicitDefault
                                                for f in (fields["prev"], fields["payloadHash"])):
        raise ImportError("_KnownHeaders needs prev and payloadHash as Data, prev's pointer first")
    root = struct.pack("<iI", 0, node.pointerCount << 16 | node.dataWordCount)
    return (spans[0][0], spans[-1][1], pointers + 8 * node.pointerCount, ptr["prev"], ptr["payloadHash"],
            ptr["clock"], tuple(ptr[n] for n in ("group", "author", "scope", "kind")), root)


(_VARYING_FROM, _VARYING_TO, _END_OF_POINTERS, _PREV_PTR, _HASH_PTR, _CLOCK_PTR, _OTHER_PTRS,
 _CANONICAL_ROOT) = _header_layout()
_ID_LEN = crypto.ID_LEN
_CHANGING = struct.Struct("<QQqI").unpack_from
_PREV_AND_HASH_PTRS = struct.Struct(f"<i{_HASH_PTR - _PREV_PTR - 4}xi").unpack_from
_POINTER = struct.Struct("<iI").unpack_from
_new = object.__new__
(_set_group, _set_author, _set_epoch, _set_seq, _set_prev, _set_lamport, _set_clock, _set_time, _set_scope, _set_kind,
 _set_hash, _set_len, _set_codec, _set_version) = (
    getattr(Header, name).__set__ for name in ("group", "author", "epoch", "seq", "prev", "lamport", "clock", "time_ms",
                                               "scope", "kind", "payload_hash", "payload_len", "payload_codec",
                                               "format_version"))
_KNOWN = _KnownHeaders()


def event_id(header_bytes: bytes) -> bytes:
    """The event id: BLAKE2b-256 of the exact header bytes."""
    return crypto.blake2b256(header_bytes)


def record_id(record: bytes) -> bytes:
    """The id of the event a stored record (header ++ signature) holds."""
    return event_id(record[: -crypto.SIG_LEN])


def split_record(record: bytes) -> tuple[bytes, bytes]:
    """Split a stored record into (header bytes, signature)."""
    if len(record) <= crypto.SIG_LEN:
        raise DecodeError(f"event record is {len(record)} bytes, too short to hold a signature")
    return record[: -crypto.SIG_LEN], record[-crypto.SIG_LEN :]


def decode_record(record: bytes, payload: bytes | None = None) -> Event:
    """Decode a stored or received record (header ++ signature). Checks shape, not signature."""
    if len(record) > MAX_HEADER_BYTES + crypto.SIG_LEN:
        raise SizeLimitError(
            f"event record is {len(record)} bytes, over the limit of {MAX_HEADER_BYTES + crypto.SIG_LEN}"
        )
    if len(record) <= crypto.SIG_LEN:                    # split_record's check, inline
        raise DecodeError(f"event record is {len(record)} bytes, too short to hold a signature")
    header_bytes = record[: -crypto.SIG_LEN]
    if type(header_bytes) is bytes:                      # decode_header, inline
        header = _KNOWN.decode(header_bytes) or _decode_unknown(header_bytes)
    else:
        header = decode_header(header_bytes)
    event = _new(Event)                   # the slots Event(...) would set, without its frozen __setattr__
    _set_header_bytes(event, header_bytes)
    _set_signature(event, record[-crypto.SIG_LEN :])
    _set_header(event, header)
    _set_id(event, _blake2b(header_bytes, digest_size=32).digest())       # event_id, without its call
    _set_payload(event, payload)
    return event


_set_header_bytes, _set_signature, _set_header, _set_id, _set_payload = (
    getattr(Event, name).__set__ for name in ("header_bytes", "signature", "header", "id", "payload"))


def seal(header: Header, key: crypto.DeviceKey, payload: bytes) -> Event:
    """Encode and sign a header written by this device."""
    header_bytes = encode_header(header)
    eid = event_id(header_bytes)
    return Event(header_bytes, key.sign(eid), header, eid, payload)


def device_scope(device: bytes) -> str:
    """The scope of events that concern one device only."""
    return f"device:{device.hex()}"
