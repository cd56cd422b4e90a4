"""Event headers: encoding, strict decoding, ids and signatures. Pure: no I/O.

An event is a signed header plus a payload. The id is BLAKE2b-256 of the exact
header bytes; the signature is Ed25519 by `author` over the id; the header commits
to the payload by hash and length. Bytes are stored and sent exactly as signed and
never re-encoded. Stored form of a header: header bytes followed by the 64-byte
signature ("record").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import crypto
from .errors import DecodeError, SizeLimitError
from .schema import event as _schema
from .wire import build, reader

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_CLOCK_ENTRIES = 256
MAX_SCOPE_LEN = 256
MAX_KIND_LEN = 64
CODECS = ("plain", "sealed")

_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


@dataclass(frozen=True, slots=True)
class ClockEntry:
    """The head of another author that the writer had seen."""

    author: bytes
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """Decoded header fields; see schemas/event.capnp for their meaning."""

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
    """Serialize a header as one single-segment Cap'n Proto message."""
    return build(_schema.Header, _fill_header, h)


def _fill_header(msg, h: Header) -> None:
    msg.formatVersion = h.format_version
    msg.group = h.group
    msg.author = h.author
    msg.epoch = h.epoch
    msg.seq = h.seq
    msg.prev = h.prev
    msg.lamport = h.lamport
    msg.time = h.time_ms
    msg.scope = h.scope
    msg.kind = h.kind
    msg.payloadHash = h.payload_hash
    msg.payloadLen = h.payload_len
    msg.payloadCodec = h.payload_codec
    if h.clock:
        for slot, entry in zip(msg.init("clock", len(h.clock)), h.clock):
            slot.author = entry.author
            slot.epoch = entry.epoch
            slot.seq = entry.seq


def decode_header(raw: bytes) -> Header:
    """Decode and sanity-check header bytes from outside.

    Raises:
        SizeLimitError: too large.
        DecodeError: not a valid header (framing, schema, field shapes).
    """
    with reader(_schema.Header, raw, MAX_HEADER_BYTES, "header") as msg:
        version = msg.formatVersion
        if version != FORMAT_VERSION:
            raise DecodeError(f"header format version {version} is not supported (this reader knows {FORMAT_VERSION})")
        clock_list = msg.clock
        if len(clock_list) > MAX_CLOCK_ENTRIES:
            raise SizeLimitError(f"header clock has {len(clock_list)} entries, over the limit of {MAX_CLOCK_ENTRIES}")
        header = Header(
            group=msg.group,
            author=msg.author,
            epoch=msg.epoch,
            seq=msg.seq,
            prev=msg.prev,
            lamport=msg.lamport,
            clock=tuple(ClockEntry(e.author, e.epoch, e.seq) for e in clock_list),
            time_ms=msg.time,
            scope=msg.scope,
            kind=msg.kind,
            payload_hash=msg.payloadHash,
            payload_len=msg.payloadLen,
            payload_codec=str(msg.payloadCodec),
        )
    check_shape(header)
    return header


def check_shape(h: Header) -> None:
    """Raise unless every header field has its required shape; writers call it too."""
    author, seq = h.author, h.seq
    if len(h.author) != crypto.KEY_LEN:
        raise DecodeError(f"header author is {len(h.author)} bytes, not {crypto.KEY_LEN}", seq=seq)
    for name in ("group", "prev", "payload_hash"):
        if len(getattr(h, name)) != crypto.ID_LEN:
            raise DecodeError(f"header {name} is {len(getattr(h, name))} bytes, not {crypto.ID_LEN}", author, seq)
    if seq < 1:
        raise DecodeError("header seq must be 1 or more", author, seq)
    if (seq == 1) != (h.prev == crypto.ZERO_ID):
        raise DecodeError("header prev must be zero exactly at seq 1", author, seq)
    if h.lamport < 1:
        raise DecodeError("header lamport must be 1 or more", author, seq)
    if not _KIND_RE.fullmatch(h.kind) or len(h.kind) > MAX_KIND_LEN:
        raise DecodeError(f"header kind {h.kind[:MAX_KIND_LEN]!r} is not a valid kind name", author, seq)
    if len(h.clock) > MAX_CLOCK_ENTRIES:
        raise SizeLimitError(f"header clock has {len(h.clock)} entries, over the limit of {MAX_CLOCK_ENTRIES}", author, seq)
    if not h.scope or len(h.scope) > MAX_SCOPE_LEN or not h.scope.isprintable():
        raise DecodeError("header scope must be 1 to 256 printable characters", author, seq)
    if h.payload_codec not in CODECS:
        raise DecodeError(f"header payload codec {h.payload_codec!r} is unknown", author, seq)
    if h.payload_len > MAX_PAYLOAD_BYTES:
        raise SizeLimitError(f"payload length {h.payload_len} is over the limit of {MAX_PAYLOAD_BYTES}", author, seq)
    for entry in h.clock:
        if len(entry.author) != crypto.KEY_LEN or entry.author == h.author or entry.seq < 1:
            raise DecodeError("header clock entry is malformed", author, seq)


def event_id(header_bytes: bytes) -> bytes:
    """The event id: BLAKE2b-256 of the exact header bytes."""
    return crypto.blake2b256(header_bytes)


def split_record(record: bytes) -> tuple[bytes, bytes]:
    """Split a stored record into (header bytes, signature)."""
    if len(record) <= crypto.SIG_LEN:
        raise DecodeError(f"event record is {len(record)} bytes, too short to hold a signature")
    return record[: -crypto.SIG_LEN], record[-crypto.SIG_LEN :]


def decode_record(record: bytes, payload: bytes | None = None) -> Event:
    """Decode a stored or received record (header ++ signature). Checks shape, not signature."""
    if len(record) > MAX_HEADER_BYTES + crypto.SIG_LEN:
        raise SizeLimitError(f"event record is {len(record)} bytes, over the limit of {MAX_HEADER_BYTES + crypto.SIG_LEN}")
    header_bytes, signature = split_record(record)
    header = decode_header(header_bytes)
    return Event(header_bytes, signature, header, event_id(header_bytes), payload)


def seal(header: Header, key: crypto.DeviceKey, payload: bytes) -> Event:
    """Encode and sign a header written by this device."""
    header_bytes = encode_header(header)
    eid = event_id(header_bytes)
    return Event(header_bytes, key.sign(eid), header, eid, payload)


def device_scope(device: bytes) -> str:
    """The scope of events that concern one device only."""
    return f"device:{device.hex()}"
