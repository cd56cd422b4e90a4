"""The hand-written Cap'n Proto encoder against pycapnp: same bytes, same decoded values, one segment."""

from __future__ import annotations

import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog import crypto
from agentlog.codec import wire
from agentlog.codec.schema import event as event_schema
from agentlog.codec.schema import payloads as payload_schema
from agentlog.errors import DecodeError, InvalidValueError, SizeLimitError
from agentlog.log import payloads
from agentlog.log.event import (
    MAX_EPOCH,
    MAX_HEADER_BYTES,
    MAX_LAMPORT,
    MAX_SEQ,
    MAX_TIME_MS,
    ClockEntry,
    Header,
    HeaderWriter,
    check_shape,
    decode_header,
    encode_header,
)
from agentlog.prefs import reducer as pref_reducer
from agentlog.store import signing
from tests.helpers.builders import fill_header, fill_payload
from tests.helpers.samples import ALL_PAYLOADS, EDGE_PAYLOADS, HEADERS, LARGE_PAYLOADS, header


def pycapnp_bytes(struct_type, fill, value) -> bytes:
    """What pycapnp's builders give when set field by field, grown to one segment when large."""
    return wire.build(struct_type, fill, value)


def assert_one_segment(raw: bytes) -> None:
    segments_minus_one, words = struct.unpack_from("<II", raw)
    assert segments_minus_one == 0 and 8 + 8 * words == len(raw)


def check_payload(payload) -> bytes:
    raw = payloads.encode(payload)
    assert_one_segment(raw)
    assert raw == pycapnp_bytes(getattr(payload_schema, type(payload).__name__), fill_payload, payload)
    assert payloads.decode(payloads.kind_of(payload), raw) == payload
    return raw


@pytest.mark.parametrize("payload", ALL_PAYLOADS + EDGE_PAYLOADS + LARGE_PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_bytes_equal_pycapnp_and_round_trip(payload):
    check_payload(payload)


def test_large_payloads_are_one_segment_over_8_kib():
    assert all(len(check_payload(p)) > 8 * 1024 for p in LARGE_PAYLOADS)


def test_oversized_payload_is_refused():
    with pytest.raises(SizeLimitError):
        payloads.encode(payloads.Snapshot(views=(payloads.ViewState(name="v", version=1, digest=b"d" * 32,
                                                                    state=b"s" * (1024 * 1024)),)))


TEXT = st.text(max_size=40)
CONTEXT = st.lists(st.tuples(TEXT, TEXT), max_size=4).map(tuple)
U32, U64 = (st.integers(0, 2**bits - 1) for bits in (32, 64))
BP, MILLI = st.integers(0, 10_000), st.integers(0, 1_000_000_000)
ID, ENTRY = st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16)
EMBEDDINGS = st.builds(
    payloads.Embedding,
    model=TEXT,
    vector=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=20).map(tuple),
)
FIELDS = st.one_of(st.builds(payloads.MemoryField, type=st.sampled_from(payloads.MEMORY_TYPES)),
                   st.builds(payloads.MemoryField, content=TEXT), st.builds(payloads.MemoryField, confidence_bp=BP),
                   st.builds(payloads.MemoryField, embedding=EMBEDDINGS))
SEQS, TIMES = st.integers(0, MAX_SEQ), st.integers(0, MAX_TIME_MS)
LOG_POINTS = st.builds(payloads.LogPoint, author=ID, epoch=st.integers(0, MAX_EPOCH), seq=SEQS, id=ID, lamport=SEQS,
                       time=TIMES)
ANY_PAYLOAD = st.one_of(
    st.builds(payloads.Observation, setting=TEXT, value=TEXT, context=CONTEXT, weight_milli=MILLI),
    st.builds(payloads.Decision, setting=TEXT, value=TEXT, context=CONTEXT, confidence_bp=BP, reason=TEXT),
    st.builds(
        payloads.PrefConfig,
        setting=TEXT,
        policy=st.sampled_from(payloads.POLICIES),
        half_life_ms=st.integers(0, pref_reducer.MAX_HALF_LIFE_MS),
        value_type=st.sampled_from(payloads.VALUE_TYPES),
        choices=st.lists(TEXT, max_size=3).map(tuple),
    ),
    st.builds(payloads.OverrideSet, setting=TEXT, value=TEXT, context=CONTEXT, baseline=TEXT),
    st.builds(
        payloads.MemoryPut,
        entry=ENTRY,
        type=st.sampled_from(payloads.MEMORY_TYPES),
        content=TEXT,
        tags=st.lists(TEXT, max_size=4).map(tuple),
        confidence_bp=BP,
        embedding=st.none() | EMBEDDINGS,
    ),
    st.builds(
        payloads.MemoryUpdate,
        entry=ENTRY,
        fields=st.lists(FIELDS, max_size=4).map(tuple),
        tags_add=st.lists(TEXT, max_size=3).map(tuple),
        tags_remove=st.lists(TEXT, max_size=3).map(tuple),
    ),
    st.builds(
        payloads.Snapshot,
        frontier=st.lists(LOG_POINTS, max_size=3).map(tuple),
        views=st.lists(
            st.builds(payloads.ViewState, name=TEXT, version=U32, digest=ID, state=st.binary(max_size=100)), max_size=3
        ).map(tuple),
        stable=st.lists(LOG_POINTS, max_size=2).map(tuple),
        cuts=st.lists(st.builds(payloads.SettingCut, setting=TEXT, before=TIMES), max_size=2).map(tuple),
    ),
)


@settings(max_examples=300, deadline=None)
@given(ANY_PAYLOAD)
def test_any_payload_encodes_as_pycapnp_does(payload):
    raw = payloads.encode(payload)
    assert_one_segment(raw)
    assert raw == pycapnp_bytes(getattr(payload_schema, type(payload).__name__), fill_payload, payload)
    reader = getattr(payload_schema, type(payload).__name__).from_bytes(raw)
    with reader as msg:
        assert msg.to_dict() == pycapnp_message(payload).to_dict()


def pycapnp_message(payload):
    """A pycapnp builder holding the payload, for comparing decoded values."""
    msg = getattr(payload_schema, type(payload).__name__).new_message()
    fill_payload(msg, payload)
    return msg


@pytest.mark.parametrize("bad", [
    payloads.Observation(setting="s", value="v", weight_milli=-1),
    payloads.Observation(setting="s", value="v", weight_milli=2**32),
    payloads.Observation(setting="s", value="v", weight_milli=1.5),
    payloads.Observation(setting=b"s", value="v"),
    payloads.Observation(setting="\ud800", value="v"),
    payloads.Observation(setting="s", value="v", context=(("k",),)),
    payloads.Correction(decision="not bytes", value="v"),
    payloads.MemoryPut(entry=b"e" * 16, type="no such type", content="c"),
    payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c",
                       embedding=payloads.Embedding(model="m", vector=(1e39,))),
    payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c",
                       embedding=payloads.Embedding(model="m", vector=(float("nan"),))),
    payloads.Correction(decision=b"short", value="v"),
    payloads.Decision(setting="s", value="v", confidence_bp=10_001),
    payloads.MemoryUpdate(entry=b"e" * 16, fields=(payloads.MemoryField(),)),
    payloads.DeviceEnroll(device=b"k" * 31, name="x"),
], ids=repr)
def test_values_readers_would_refuse_are_refused_on_write(bad):
    with pytest.raises(InvalidValueError):
        payloads.encode(bad)


def test_non_payload_is_a_type_error():
    with pytest.raises(TypeError):
        payloads.encode(object())


@pytest.mark.parametrize("h", HEADERS, ids=range(len(HEADERS)))
def test_header_bytes_equal_pycapnp(h):
    raw = encode_header(h)
    assert_one_segment(raw)
    assert raw == pycapnp_bytes(event_schema.Header, fill_header, h)


def written(h: Header, writer: HeaderWriter | None = None) -> bytes:
    """What this device's writer gives for the header's fields."""
    writer = writer or HeaderWriter(h.group, h.author, h.epoch, h.time_ms)
    return writer.encode(h.seq, h.prev, h.lamport, h.clock, h.scope, h.kind, h.payload_hash, h.payload_len)


@pytest.mark.parametrize("h", HEADERS[:-1], ids=range(len(HEADERS) - 1))
def test_written_headers_are_encode_header_bytes(h):
    if h.payload_codec == "plain":
        assert written(h) == encode_header(h)
    assert decode_header(encode_header(h)) == h


PREVS = st.binary(min_size=32, max_size=32).filter(lambda b: b != crypto.ZERO_ID)
HEADER_STEPS = st.lists(
    st.tuples(
        st.integers(2, MAX_SEQ),
        PREVS,
        st.integers(1, MAX_LAMPORT),
        st.sampled_from(["user", "topic:\u00e9t\u00e9", "d" * 256]),
        st.sampled_from(["observation", "memory.put", "k" * 64]),
        st.binary(min_size=32, max_size=32),
        st.integers(0, 1024 * 1024),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(HEADER_STEPS, st.booleans())
def test_a_batch_of_written_headers_equals_encode_header(steps, first_has_clock):
    """Templates per (scope, kind) with seq, prev, lamport, hash and length written in give encode_header's bytes."""
    writer = HeaderWriter(b"g" * 32, b"a" * 32, 7, 1_700_000_000_000)
    for n, (seq, prev, lamport, scope, kind, payload_hash, payload_len) in enumerate(steps):
        clock = (ClockEntry(b"b" * 32, 1, 2),) if first_has_clock and n == 0 else ()
        h = Header(
            group=b"g" * 32,
            author=b"a" * 32,
            epoch=7,
            seq=seq,
            prev=prev,
            lamport=lamport,
            clock=clock,
            time_ms=1_700_000_000_000,
            scope=scope,
            kind=kind,
            payload_hash=payload_hash,
            payload_len=payload_len,
        )
        assert written(h, writer) == encode_header(h)


BAD_FIELDS = [
    dict(author=b"short"), dict(group=b"g"), dict(prev=b"p" * 31), dict(payload_hash=b""), dict(seq=0), dict(seq=1),
    dict(prev=crypto.ZERO_ID), dict(lamport=0), dict(kind="Not A Kind"), dict(kind="k" * 65), dict(scope=""),
    dict(scope="s" * 257), dict(scope="tab\there"), dict(payload_len=1024 * 1024 + 1),
    dict(clock=(ClockEntry(b"a" * 32, 0, 1),)), dict(clock=(ClockEntry(b"b" * 32, 0, 0),)),
    dict(clock=tuple(ClockEntry(bytes([i % 250 + 1]) * 31 + bytes([i // 250]), 0, 1) for i in range(257))),
]


@pytest.mark.parametrize("over", BAD_FIELDS, ids=repr)
@pytest.mark.parametrize("templated", [False, True])
def test_writer_refuses_what_readers_refuse(over, templated):
    h = header(**over)
    with pytest.raises((DecodeError, SizeLimitError)) as reader_error:
        check_shape(h)
    writer = HeaderWriter(h.group, h.author, h.epoch, h.time_ms)
    if templated and len(h.group) == len(h.author) == 32:
        written(header(), writer)
    with pytest.raises(type(reader_error.value), match=str(reader_error.value)[:20]):
        written(h, writer)


def test_largest_valid_header_is_within_the_limit():
    h = header(scope="\U0001F600" * 256, kind="k" * 64,
               clock=tuple(ClockEntry(bytes([i % 250 + 1]) * 31 + bytes([i // 250]), MAX_EPOCH, MAX_SEQ)
                           for i in range(256)))
    raw = written(h)
    assert len(raw) <= MAX_HEADER_BYTES and decode_header(raw) == h


@pytest.mark.parametrize("pool_from", [16, signing.POOL_FROM])
@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 100, 1001])
def test_sign_many_keeps_order_and_matches_single_signatures(count, pool_from, monkeypatch):
    monkeypatch.setattr(signing, "POOL_FROM", pool_from)
    monkeypatch.setattr(signing, "CHUNK", 8)
    key = crypto.DeviceKey.generate()
    ids = [crypto.blake2b256(i.to_bytes(4, "big")) for i in range(count)]
    assert signing.sign_many(key, ids) == [key.sign(i) for i in ids]


def test_sign_many_from_several_threads_at_once(monkeypatch):
    monkeypatch.setattr(signing, "POOL_FROM", 16)
    monkeypatch.setattr(signing, "CHUNK", 8)
    key = crypto.DeviceKey.generate()
    ids = [crypto.blake2b256(i.to_bytes(4, "big")) for i in range(200)]
    expected, results = [key.sign(i) for i in ids], []
    threads = [threading.Thread(target=lambda: results.append(signing.sign_many(key, ids))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_sign_many_raises_a_failure_on_any_thread(monkeypatch):
    real, bad = crypto.sodium.crypto_sign, crypto.blake2b256(b"bad")

    def failing(message, secret):
        if message == bad:
            raise RuntimeError("boom")
        return real(message, secret)

    monkeypatch.setattr(crypto.sodium, "crypto_sign", failing)
    monkeypatch.setattr(signing, "POOL_FROM", 16)
    monkeypatch.setattr(signing, "CHUNK", 8)
    key = crypto.DeviceKey.generate()
    ids = [crypto.blake2b256(i.to_bytes(4, "big")) for i in range(100)]
    for at in (0, 50, 99):
        with pytest.raises(RuntimeError, match="boom"):
            signing.sign_many(key, ids[:at] + [bad] + ids[at:])


def test_sign_many_signs_a_small_batch_on_the_calling_thread_alone(monkeypatch):
    def no_pool():
        raise AssertionError("a batch below POOL_FROM started the worker pool")

    monkeypatch.setattr(signing, "_executor", no_pool)
    key = crypto.DeviceKey.generate()
    ids = [crypto.blake2b256(i.to_bytes(4, "big")) for i in range(signing.POOL_FROM - 1)]
    assert signing.sign_many(key, ids) == [key.sign(i) for i in ids]
