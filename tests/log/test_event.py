"""Header and payload encoding: round trips and strict decoding of outside bytes."""

from __future__ import annotations

import struct

import pytest

from agentlog import crypto
from agentlog.codec.schema import payloads as payload_schema
from agentlog.errors import DecodeError, SizeLimitError
from agentlog.log import payloads
from agentlog.log.event import (
    ClockEntry,
    Header,
    decode_header,
    decode_record,
    encode_header,
    event_id,
    peek_record,
    record_lamport,
    seal,
)
from tests.helpers.samples import ALL_PAYLOADS


def header(**over) -> Header:
    fields = dict(group=b"g" * 32, author=b"a" * 32, epoch=0, seq=1, prev=crypto.ZERO_ID, lamport=1,
                  time_ms=1_700_000_000_000, scope="user", kind="observation", payload_hash=b"h" * 32, payload_len=10)
    fields.update(over)
    return Header(**fields)


def test_header_round_trip_keeps_every_field():
    h = header(seq=7, prev=b"p" * 32, lamport=42, clock=(ClockEntry(b"b" * 32, 0, 5), ClockEntry(b"c" * 32, 1, 9)),
               scope="device:ab", kind="memory.update", payload_codec="sealed")
    assert decode_header(encode_header(h)) == h


def test_peek_of_a_stored_record_reads_what_the_full_decoder_reads():
    h = header(seq=7, prev=b"p" * 32, lamport=42, clock=(ClockEntry(b"b" * 32, 0, 5),), kind="decision")
    raw = encode_header(h)
    assert peek_record(raw + b"s" * 64) == (42, h.time_ms, "decision", "plain", h.clock)
    far = raw[:8] + struct.pack("<iI", 4, struct.unpack_from("<I", raw, 12)[0]) + b"\0" * 8 + raw[16:]
    far = struct.pack("<II", 0, len(far) // 8 - 1) + far[8:]
    assert decode_header(far) == h                      # the root struct one word further: not the fast path
    assert peek_record(far + b"s" * 64) == (42, h.time_ms, "decision", "plain", h.clock)
    with pytest.raises(DecodeError):
        peek_record(raw[:40] + b"\xff" * (len(raw) - 40) + b"s" * 64)


def test_the_lamport_of_a_stored_record_is_the_peeks():
    h = header(seq=7, lamport=42, clock=(ClockEntry(b"b" * 32, 0, 5),))
    raw = encode_header(h)
    far = raw[:8] + struct.pack("<iI", 4, struct.unpack_from("<I", raw, 12)[0]) + b"\0" * 8 + raw[16:]
    far = struct.pack("<II", 0, len(far) // 8 - 1) + far[8:]
    assert record_lamport(raw + b"s" * 64) == record_lamport(far + b"s" * 64) == peek_record(raw + b"s" * 64)[0] == 42


def test_id_is_blake2b_of_exact_header_bytes_and_signature_covers_it():
    key = crypto.DeviceKey.generate()
    event = seal(header(author=key.public), key, b"x")
    assert event.id == crypto.blake2b256(event.header_bytes) == event_id(event.header_bytes)
    assert crypto.verify(key.public, event.id, event.signature)
    assert not crypto.verify(key.public, crypto.blake2b256(b"other"), event.signature)
    assert decode_record(event.record).id == event.id


@pytest.mark.parametrize("raw, error", [
    (b"", DecodeError),
    (b"\x00" * 7, DecodeError),
    (b"\x01\x00\x00\x00" + b"\x00" * 12, DecodeError),
    (struct.pack("<II", 0, 100) + b"\x00" * 16, DecodeError),
    (b"\xff" * 64, DecodeError),
    (struct.pack("<II", 0, 3000) + b"\x00" * 24000, SizeLimitError),
])
def test_malformed_headers_raise_named_errors(raw, error):
    with pytest.raises(error):
        decode_header(raw)


def test_trailing_bytes_are_rejected():
    with pytest.raises(DecodeError, match="declares"):
        decode_header(encode_header(header()) + b"\x00" * 8)


@pytest.mark.parametrize("over, words", [
    (dict(author=b"short"), "author"),
    (dict(seq=0), "seq"),
    (dict(seq=2), "prev"),
    (dict(prev=b"p" * 32), "prev"),
    (dict(kind="Not A Kind"), "kind"),
    (dict(scope=""), "scope"),
    (dict(payload_len=2 * 1024 * 1024), "payload length"),
    (dict(format_version=2), "version"),
])
def test_header_field_shapes_are_checked(over, words):
    with pytest.raises((DecodeError, SizeLimitError), match=words):
        decode_header(encode_header(header(**over)))


def test_every_kind_has_a_payload_struct():
    assert {payloads.kind_of(p) for p in ALL_PAYLOADS} == set(payloads.KINDS)


@pytest.mark.parametrize("payload", ALL_PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_round_trip(payload):
    assert payloads.decode(payloads.kind_of(payload), payloads.encode(payload)) == payload


def test_payload_range_and_kind_checks():
    raw = payload_schema.Decision.new_message(setting="s", value="v", confidenceBp=20000).to_bytes()
    with pytest.raises(DecodeError, match="out of range"):
        payloads.decode("decision", raw)
    with pytest.raises(DecodeError, match="unknown"):
        payloads.decode("no.such.kind", raw)
    with pytest.raises(DecodeError):
        payloads.decode("observation", raw[:-8])
