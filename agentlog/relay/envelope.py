"""What a group puts on a blind relay: keyed names (tag, pseudonyms, subjects, stream, message ids) and one event
sealed with the relay key (docs/relay.md). Pure.

The relay sees the subject, the message id and the body. The subject names the group by a keyed tag and the
author by a pseudonym keyed with the group id, so neither the group id nor a device key can be read from it;
the message id is the event id keyed with the group id, equal for every sealing of one event (JetStream drops
the duplicates); the body is key id ‖ nonce ‖ XChaCha20-Poly1305 of the framed (record, payload), bound to its
subject as associated data. A run of one author's consecutive events may share one message (`seal_run`): one
seal and one message for many events, which is what makes a catch-up through the relay fast.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple, Protocol

from agentlog import crypto
from agentlog.errors import EventError, RelayMessageError
from agentlog.log.event import Event, decode_record

TAG_KEY = b"agentlog relay tag v1"
AD_PREFIX = b"agentlog relay 1"
ROOT = "agentlog"
SNAPSHOT = "snapshot"
KEY_ID_LEN = crypto.ID_LEN
MIN_BODY = KEY_ID_LEN + crypto.NONCE_LEN + crypto.AEAD_TAG_LEN
_LEN = struct.Struct(">I")
_RUN_HEAD = struct.Struct(">II")        # a run's frame: 0 (where a single frame has its record's length), count
_NO_PAYLOAD, _PAYLOAD = b"\0", b"\1"
RUN_MAX = 65536                         # events a run's frame may hold, as an opener takes it


class RelayKeyring(Protocol):
    """The relay keys a device holds (key id -> key) and the id of the one it seals with (None: holds none)."""

    current: bytes | None

    def get(self, key_id: bytes, default=None) -> bytes | None: ...


class Sealed(NamedTuple):
    """One event as published: where, under which message id, and the bytes."""

    subject: str
    msg_id: str
    body: bytes


@lru_cache(maxsize=64)
def tag(group: bytes) -> str:
    """The group's name on the relay: BLAKE2b-128 of the group id keyed with a constant, in hex."""
    return crypto.keyed_blake2b(group, TAG_KEY, 16).hex()


@lru_cache(maxsize=4096)
def pseudonym(group: bytes, author: bytes) -> str:
    """An author's name on the relay: BLAKE2b-128 of its device key keyed with the group id, in hex."""
    return crypto.keyed_blake2b(author, group, 16).hex()


def subject(group: bytes, author: bytes) -> str:
    """The subject an author's events are published on."""
    return f"{ROOT}.{tag(group)}.{pseudonym(group, author)}"


def snapshot_subject(group: bytes) -> str:
    """The subject snapshots are published on (the relay keeps the last one)."""
    return f"{ROOT}.{tag(group)}.{SNAPSHOT}"


def stream_name(group: bytes) -> str:
    """The JetStream stream that holds the group's messages."""
    return f"AGENTLOG_{tag(group)}"


def stream_subjects(group: bytes) -> str:
    """The subject filter of the group's stream: every subject under its tag."""
    return f"{ROOT}.{tag(group)}.>"


def msg_id(group: bytes, event_id: bytes) -> str:
    """The message id of an event: BLAKE2b-256 of its id keyed with the group id, in hex; the same whichever
    relay key sealed it, so a second publish of one event is a duplicate to JetStream."""
    return crypto.keyed_blake2b(event_id, group, 32).hex()


def seal(keyring: RelayKeyring, group: bytes, record: bytes, payload: bytes | None, *,
         key_id: bytes | None = None, snapshot: bool = False) -> Sealed:
    """Seal one event (its record: header ‖ signature, and its payload, or None when held without it) with the
    relay key `key_id` (by default the current one), on its author's subject (or the snapshot subject).

    Raises:
        RelayMessageError: this device holds no relay key (code "key").
        EventError: `record` is not an event record (a caller's mistake: records come from the store).
    """
    kid = keyring.current if key_id is None else key_id
    key = keyring.get(kid) if kid is not None else None
    if key is None:
        raise RelayMessageError("this device holds no relay key to seal with: the group has no relay yet, or "
                                "no reader of scope relay has granted it to this device", code="key")
    event = decode_record(record)
    where = snapshot_subject(group) if snapshot else subject(group, event.header.author)
    frame = _LEN.pack(len(record)) + record + (_NO_PAYLOAD if payload is None else _PAYLOAD + payload)
    body = kid + crypto.aead_encrypt(key, frame, AD_PREFIX + where.encode())
    return Sealed(where, msg_id(group, event.id), body)


def run_id(group: bytes, first_id: bytes, last_id: bytes) -> str:
    """The message id of a run: its first and last event ids keyed with the group id (apart from any event's own)."""
    return crypto.keyed_blake2b(b"run" + first_id + last_id, group, 32).hex()


def seal_run(keyring: RelayKeyring, group: bytes, author: bytes, ids: list[bytes],
             events: list[tuple[bytes, bytes | None]], key_id: bytes) -> Sealed:
    """Seal a run of `author`'s consecutive events (their ids, and (record, payload or None)) in one message on its
    subject with the relay key `key_id`; a run of one is sealed as `seal` seals it (the same message id).

    Raises:
        RelayMessageError: this device does not hold `key_id` (code "key").
    """
    if len(events) == 1:
        return seal(keyring, group, *events[0], key_id=key_id)
    key = keyring.get(key_id)
    if key is None:
        raise RelayMessageError("this device holds no relay key to seal with", code="key")
    where = subject(group, author)
    parts = [_RUN_HEAD.pack(0, len(events))]
    for record, payload in events:
        parts += [_LEN.pack(len(record)), record]
        parts += [_NO_PAYLOAD] if payload is None else [_PAYLOAD, _LEN.pack(len(payload)), payload]
    body = key_id + crypto.aead_encrypt(key, b"".join(parts), AD_PREFIX + where.encode())
    return Sealed(where, run_id(group, ids[0], ids[-1]), body)


def open(keys: Mapping[bytes, bytes], group: bytes, subject: str, body: bytes) -> tuple[bytes, bytes | None]:
    """The (record, payload or None) a message holds, after checking that it is on this group's subject, opens
    with a relay key held here under that subject, and holds an event of this group whose author the subject
    names (any author on the snapshot subject). Signature, chain and payload hash are ingest's to check.

    Raises:
        RelayMessageError: naming why (its `code`: subject, short, key, open, frame, record).
    """
    record, payload, _ = open_event(keys, group, subject, body)
    return record, payload


def open_event(keys: Mapping[bytes, bytes], group: bytes, subject: str,
               body: bytes) -> tuple[bytes, bytes | None, Event]:
    """`open`, with the event its checks decoded, payload included (so that a consumer reads its position, and
    ingest checks it, without decoding it again). A run's message is refused (code frame): see `open_events`."""
    found = open_events(keys, group, subject, body)
    if len(found) != 1:
        raise RelayMessageError(f"holds a run of {len(found)} events, not one", subject, code="frame")
    return found[0]


def open_events(keys: Mapping[bytes, bytes], group: bytes, subject: str,
                body: bytes) -> list[tuple[bytes, bytes | None, Event]]:
    """Every (record, payload or None, event) a message holds: one event, or a run of its subject's author (none
    on the snapshot subject), each checked as `open` checks one; one that fails a check refuses the message whole.

    Raises:
        RelayMessageError: naming why (its `code`: subject, short, key, open, frame, record).
    """
    prefix = f"{ROOT}.{tag(group)}."
    if not isinstance(subject, str) or not subject.startswith(prefix) or "." in subject[len(prefix):]:
        raise RelayMessageError("not a subject of this group's relay stream", _shown(subject), code="subject")
    name = subject[len(prefix):]
    body = bytes(body)
    if len(body) < MIN_BODY:
        raise RelayMessageError(f"body is {len(body)} bytes, too short to be sealed (at least {MIN_BODY})",
                                subject, code="short")
    kid = body[:KEY_ID_LEN]
    key = keys.get(kid)
    if key is None:
        raise RelayMessageError(f"sealed with relay key {kid.hex()[:16]}, which this device does not hold",
                                subject, code="key")
    frame = crypto.aead_decrypt(key, body[KEY_ID_LEN:], AD_PREFIX + subject.encode())
    if frame is None:
        raise RelayMessageError(f"does not open with relay key {kid.hex()[:16]} on this subject: altered, or "
                                "moved from another subject", subject, code="open")
    if len(frame) >= _RUN_HEAD.size and frame[:_LEN.size] == bytes(_LEN.size):
        if name == SNAPSHOT:
            raise RelayMessageError("holds a run on the snapshot subject", subject, code="frame")
        framed = _unframe_run(frame, subject)
    else:
        framed = [_unframe(frame, subject)]
    author = None if name == SNAPSHOT else name
    out = []
    for record, payload in framed:
        try:
            event = decode_record(record, payload)
        except EventError as exc:
            raise RelayMessageError(f"holds no valid event record: {exc}", subject, code="record") from None
        h = event.header
        if h.group != group:
            raise RelayMessageError("holds an event of another group", subject, code="record")
        if author is not None and author != pseudonym(group, h.author):
            raise RelayMessageError(f"holds an event by author {h.author.hex()[:16]}, whom this subject "
                                    "does not name", subject, code="record")
        out.append((record, payload, event))
    return out


def _unframe_run(frame: bytes, subject: str) -> list[tuple[bytes, bytes | None]]:
    """A run's frame undone: u32 0 ‖ u32 count ‖ count × (u32 len ‖ record ‖ 0x00 | 0x01 ‖ u32 len ‖ payload)."""
    _, count = _RUN_HEAD.unpack_from(frame)
    if not 1 <= count <= RUN_MAX:
        raise RelayMessageError(f"its frame holds a run of {count} events", subject, code="frame")
    out, at, end = [], _RUN_HEAD.size, len(frame)
    unpack = _LEN.unpack_from
    try:
        for _ in range(count):
            (n,) = unpack(frame, at)
            at += 4 + n
            record, flag = frame[at - n : at], frame[at : at + 1]
            if not n or at >= end or flag not in (_NO_PAYLOAD, _PAYLOAD):
                raise RelayMessageError(f"its frame names a {n}-byte record that it does not hold", subject,
                                        code="frame")
            at += 1
            if flag == _NO_PAYLOAD:
                out.append((record, None))
                continue
            (n,) = unpack(frame, at)
            at += 4 + n
            if at > end:
                raise RelayMessageError(f"its frame names a {n}-byte payload that it does not hold", subject,
                                        code="frame")
            out.append((record, frame[at - n : at]))
    except struct.error:
        raise RelayMessageError("its frame ends inside a run", subject, code="frame") from None
    if at != end:
        raise RelayMessageError("its frame has bytes after its run", subject, code="frame")
    return out


def _unframe(frame: bytes, subject: str) -> tuple[bytes, bytes | None]:
    if len(frame) < _LEN.size + 1:
        raise RelayMessageError("its frame is too short to hold an event", subject, code="frame")
    (n,) = _LEN.unpack_from(frame)
    end = _LEN.size + n
    if end >= len(frame) or frame[end : end + 1] not in (_NO_PAYLOAD, _PAYLOAD):
        raise RelayMessageError(f"its frame names a {n}-byte record that it does not hold", subject, code="frame")
    if frame[end : end + 1] == _NO_PAYLOAD:
        if end + 1 != len(frame):
            raise RelayMessageError("its frame has bytes after a record held without payload", subject, code="frame")
        return frame[_LEN.size : end], None
    return frame[_LEN.size : end], frame[end + 1 :]


def _shown(subject) -> str:
    """A subject from outside, bounded and printable, for an error line."""
    text = subject if isinstance(subject, str) else repr(subject)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:120] + ("..." if len(text) > 120 else "")
