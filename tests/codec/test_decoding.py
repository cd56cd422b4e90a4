"""The schema-derived decoder against pycapnp: same values, same errors, never anything else.

The reference is agentlog's previous decoding path on pycapnp's reader (kept below).
Where the two may differ is listed in STRICTER: messages pycapnp accepts and
capnp_decode refuses, by the reason in its DecodeError.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.codec import wire
from agentlog.codec.schema import event as event_schema
from agentlog.codec.schema import payloads as payload_schema
from agentlog.errors import DecodeError, InvalidValueError, SizeLimitError
from agentlog.log import event, payloads
from agentlog.log.event import (
    FORMAT_VERSION,
    MAX_CLOCK_ENTRIES,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    ClockEntry,
    Header,
    check_shape,
    decode_header,
    encode_header,
)
from tests.helpers.builders import fill_header, fill_payload
from tests.helpers.samples import ALL_PAYLOADS, EDGE_PAYLOADS, HEADERS, LARGE_PAYLOADS

STRICTER = (
    "far pointers are not accepted",  # pycapnp follows a far pointer to a landing pad in the segment
    "is not the schema's",  # pycapnp reads compatible element sizes (List(Float32) as 8-byte or struct elements, ...)
    "do not fill the list's",  # pycapnp allows unused words at the end of an inline-composite list
    "pointer offset lies outside the segment",  # pycapnp reads a zero-sized object anywhere as empty
)


# --- the reference: decoding as it was, on pycapnp --------------------------------------------------------------


def reference_header(raw: bytes) -> Header:
    with wire.reader(event_schema.Header, raw, MAX_HEADER_BYTES, "header") as msg:
        version = msg.formatVersion
        if version != FORMAT_VERSION:
            raise DecodeError(f"header format version {version} is not supported")
        clock_list = msg.clock
        if len(clock_list) > MAX_CLOCK_ENTRIES:
            raise SizeLimitError(f"header clock has {len(clock_list)} entries")
        header = Header(group=msg.group, author=msg.author, epoch=msg.epoch, seq=msg.seq, prev=msg.prev,
                        lamport=msg.lamport, clock=tuple(ClockEntry(e.author, e.epoch, e.seq) for e in clock_list),
                        time_ms=msg.time, scope=msg.scope, kind=msg.kind, payload_hash=msg.payloadHash,
                        payload_len=msg.payloadLen, payload_codec=str(msg.payloadCodec))
    check_shape(header)
    return header


def reference_payload(kind: str, raw: bytes):
    cls = payloads.KINDS[kind]
    with wire.reader(getattr(payload_schema, cls.__name__), raw, MAX_PAYLOAD_BYTES, f"{kind} payload") as msg:
        return _reference_read(msg, cls, kind)


def _reference_read(msg, cls: type, kind: str):
    names = payloads._FIELDS[cls]
    if cls is payloads.MemoryField:
        names = [(n, k) for n, k in names if k == msg.which()]
    kwargs = {}
    for name, key in names:
        if name == "embedding" and not msg._has(key):
            continue
        value = getattr(msg, key)
        if name == "context":
            value = tuple((kv.key, kv.value) for kv in value)
        elif name in payloads._NESTED:
            nested = payloads._NESTED[name]
            value = (_reference_read(value, nested, kind) if nested is payloads.Embedding
                     else tuple(_reference_read(v, nested, kind) for v in value))
        elif name in payloads._ENUMS:
            value = str(value)
        elif name in ("tags", "tags_add", "tags_remove", "vector", "choices"):
            value = tuple(value)
        elif name == "events":
            value = tuple(bytes(v) for v in value)
        problem = payloads._field_problem(name, value) if name in payloads._CHECKED[cls] else None
        if problem:
            raise DecodeError(f"{kind} payload {problem}")
        kwargs[name] = value
    problem = payloads._erase_problem(cls(**kwargs))
    if problem:
        raise DecodeError(f"{kind} payload {problem}")
    return cls(**kwargs)


def outcome(fn, *args):
    """What fn(*args) gives: ("ok", repr of the value) or ("error", exception type, message)."""
    try:
        return "ok", repr(fn(*args))
    except (DecodeError, SizeLimitError) as exc:
        return "error", type(exc), str(exc)


def assert_same(kind: str, raw: bytes) -> tuple:
    """Decode `raw` both ways; they must agree, except where the fast decoder is documented to be stricter."""
    if kind == "header":
        fast, ref = outcome(decode_header, raw), outcome(reference_header, raw)
    else:
        fast, ref = outcome(payloads.decode, kind, raw), outcome(reference_payload, kind, raw)
    if fast[0] == "ok" or ref[0] == "error":
        assert fast[:2] == ref[:2], (fast, ref)
    else:
        assert any(reason in fast[2] for reason in STRICTER), (fast, ref)
    return fast


# --- valid messages from both encoders ------------------------------------------------------------------------------

TEXT = st.text(max_size=12)
U16, U32, U64 = (st.integers(0, 2**bits - 1) for bits in (16, 32, 64))
SOME_BYTES = st.one_of(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16), st.binary(max_size=40))
EMBEDDINGS = st.builds(payloads.Embedding, model=TEXT, vector=st.lists(st.floats(width=32), max_size=6).map(tuple))
VALUES = {
    "setting": TEXT,
    "value": TEXT,
    "reason": TEXT,
    "name": TEXT,
    "content": TEXT,
    "model": TEXT,
    "context": st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
    "weight_milli": st.one_of(st.integers(0, 1_000_000_000), U32),
    "confidence_bp": st.one_of(st.integers(0, 10_000), U16),
    "decision": SOME_BYTES,
    "device": SOME_BYTES,
    "author": SOME_BYTES,
    "id": SOME_BYTES,
    "digest": SOME_BYTES,
    "retained": SOME_BYTES,
    "entry": SOME_BYTES,
    "into": SOME_BYTES,
    "rewrite": TEXT,
    "state": st.binary(max_size=20),
    "policy": st.sampled_from(payloads.POLICIES),
    "value_type": st.sampled_from(payloads.VALUE_TYPES),
    "baseline": TEXT,
    "choices": st.lists(TEXT, max_size=3).map(tuple),
    "type": st.sampled_from(payloads.MEMORY_TYPES),
    "half_life_ms": U64,
    "until_seq": U64,
    "epoch": U32,
    "seq": U64,
    "version": U32,
    "tags": st.lists(TEXT, max_size=3).map(tuple),
    "tags_add": st.lists(TEXT, max_size=3).map(tuple),
    "tags_remove": st.lists(TEXT, max_size=3).map(tuple),
    "embedding": st.none() | EMBEDDINGS,
}


def built(cls: type) -> st.SearchStrategy:
    """Any value of a payload dataclass, readable or not, with every field drawn from VALUES."""
    return st.builds(cls, **{f.name: VALUES[f.name] for f in dataclasses.fields(cls)})


VALUES["fields"] = st.lists(
    st.one_of(
        st.just(payloads.MemoryField()),
        st.builds(payloads.MemoryField, type=VALUES["type"]),
        st.builds(payloads.MemoryField, content=TEXT),
        st.builds(payloads.MemoryField, confidence_bp=VALUES["confidence_bp"]),
        st.builds(payloads.MemoryField, embedding=EMBEDDINGS),
    ),
    max_size=3,
).map(tuple)
VALUES.update(lamport=U64, time=U64, before=U64)
VALUES["branches"] = st.lists(built(payloads.HeadRef), max_size=2).map(tuple)
VALUES["frontier"] = VALUES["stable"] = st.lists(built(payloads.LogPoint), max_size=2).map(tuple)
VALUES["cuts"] = st.lists(built(payloads.SettingCut), max_size=2).map(tuple)
VALUES["views"] = st.lists(built(payloads.ViewState), max_size=2).map(tuple)
VALUES.update(scope=st.one_of(st.just("health"), TEXT), key=SOME_BYTES,
              box=st.one_of(st.binary(min_size=80, max_size=80), st.binary(max_size=90)))
VALUES["readers"] = st.lists(built(payloads.SealedKey), max_size=2).map(tuple)
VALUES["keys"] = st.lists(built(payloads.GrantedKey), max_size=2).map(tuple)
VALUES["events"] = st.lists(SOME_BYTES, max_size=3).map(tuple)
ANY_PAYLOAD = st.one_of([built(cls) for cls in payloads.KINDS.values()])
ANY_HEADER = st.builds(
    Header, group=SOME_BYTES, author=SOME_BYTES, epoch=U32, seq=st.one_of(st.integers(0, 3), U64), prev=SOME_BYTES,
    lamport=st.one_of(st.integers(0, 3), U64), time_ms=st.integers(-(2**63), 2**63 - 1),
    scope=st.one_of(st.just("user"), TEXT), kind=st.one_of(st.sampled_from(["observation", "memory.put"]), TEXT),
    payload_hash=SOME_BYTES, payload_len=st.one_of(st.integers(0, 2**20 + 1), U32),
    payload_codec=st.sampled_from(["plain", "sealed"]), format_version=st.one_of(st.just(1), U16),
    clock=st.lists(st.builds(ClockEntry, SOME_BYTES, U32, st.one_of(st.integers(0, 3), U64)), max_size=3).map(tuple))


def encodings(value) -> list[tuple[str, bytes]]:
    """(kind, bytes) of a header or payload as capnp_encode writes it and as pycapnp's builders write it."""
    if isinstance(value, Header):
        return [("header", encode_header(value)), ("header", wire.build(event_schema.Header, fill_header, value))]
    kind, struct_type = payloads.kind_of(value), getattr(payload_schema, type(value).__name__)
    return [(kind, payloads._LAYOUTS[type(value)].encode(value)), (kind, wire.build(struct_type, fill_payload, value))]


@settings(max_examples=500, deadline=None)
@given(ANY_PAYLOAD)
def test_payloads_decode_as_pycapnp_reads_them(payload):
    for kind, raw in encodings(payload):
        assert_same(kind, raw)
    try:
        payloads.check(payload)
    except InvalidValueError:
        return
    assert all(payloads.decode(kind, raw) == payload for kind, raw in encodings(payload))


@settings(max_examples=300, deadline=None)
@given(ANY_HEADER)
def test_headers_decode_as_pycapnp_reads_them(header):
    for kind, raw in encodings(header):
        if assert_same(kind, raw)[0] == "ok":
            assert decode_header(raw) == header


@pytest.mark.parametrize(
    "value", ALL_PAYLOADS + EDGE_PAYLOADS + LARGE_PAYLOADS + HEADERS, ids=lambda v: type(v).__name__
)
def test_fixed_values_decode_as_pycapnp_reads_them_from_any_buffer(value):
    for kind, raw in encodings(value):
        fast = assert_same(kind, raw)
        assert fast[0] == "ok" or value is HEADERS[-1]
        args = () if kind == "header" else (kind,)
        decode = decode_header if kind == "header" else payloads.decode
        assert outcome(decode, *args, bytearray(raw)) == outcome(decode, *args, memoryview(raw)) == fast


# --- older and newer writers: struct sections smaller or larger than the schema's -----------------------------------


def relayout(raw: bytes, sizes) -> bytes:
    """`raw` copied object by object into a new segment, every struct resized by `sizes(dw, pc)`.

    Missing words are dropped; extra data words hold junk, extra pointers hold junk
    words (far, capability, wild offsets) that no reader of this schema follows.
    """
    seg, out = raw[8:], bytearray(8)

    def word(i: int) -> int:
        return struct.unpack_from("<Q", seg, 8 * i)[0]

    def put(i: int, value: int) -> None:
        struct.pack_into("<Q", out, 8 * i, value)

    def alloc(words: int) -> int:
        out.extend(bytes(8 * words))
        return len(out) // 8 - words

    def pointer(at: int, target: int, kind: int, hi: int) -> int:
        return ((target - at - 1) << 2 & 0xFFFFFFFF) | kind | hi << 32

    def copy_struct(src: int, dw: int, pc: int, dst: int, ndw: int, npc: int) -> None:
        out[8 * dst : 8 * dst + 8 * min(dw, ndw)] = seg[8 * src : 8 * src + 8 * min(dw, ndw)]
        for k in range(dw, ndw):
            put(dst + k, 0x0123456789ABCDEF * (k + 1) & (2**64 - 1))
        for k in range(npc):
            if k < pc:
                copy_pointer(src + dw + k, dst + ndw + k)
            else:
                put(dst + ndw + k, (0x2A, 0xFFFF_FFFF_0000_0002, 3, 0x0000_0005_7FFF_FFFC)[k % 4])

    def copy_pointer(src: int, dst: int) -> None:
        w = word(src)
        if not w:
            return
        kind, hi = w & 3, w >> 32
        target = src + 1 + ((((w & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) >> 2)
        if kind == 0:
            ndw, npc = sizes(hi & 0xFFFF, hi >> 16)
            at = alloc(ndw + npc)
            copy_struct(target, hi & 0xFFFF, hi >> 16, at, ndw, npc)
            put(dst, pointer(dst, at, 0, ndw | npc << 16))
        elif hi & 7 == 7:
            tag = word(target)
            n, dw, pc = (tag & 0xFFFFFFFF) >> 2, tag >> 32 & 0xFFFF, tag >> 48
            ndw, npc = sizes(dw, pc)
            at = alloc(1 + n * (ndw + npc))
            put(at, n << 2 | (ndw | npc << 16) << 32)
            for e in range(n):
                copy_struct(target + 1 + e * (dw + pc), dw, pc, at + 1 + e * (ndw + npc), ndw, npc)
            put(dst, pointer(dst, at, 1, 7 | n * (ndw + npc) << 3))
        elif hi & 7 == 6:
            at = alloc(hi >> 3)
            for e in range(hi >> 3):
                copy_pointer(target + e, at + e)
            put(dst, pointer(dst, at, 1, hi))
        else:
            words = ((hi >> 3) * (0, 1, 8, 16, 32, 64)[hi & 7] + 63) // 64
            at = alloc(words)
            out[8 * at : 8 * at + 8 * words] = seg[8 * target : 8 * target + 8 * words]
            put(dst, pointer(dst, at, 1, hi))

    copy_pointer(0, 0)
    return struct.pack("<II", 0, len(out) // 8) + bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_PAYLOAD, ANY_HEADER), st.lists(st.integers(-2, 2), min_size=2, max_size=16))
def test_smaller_and_larger_struct_sections_decode_as_pycapnp_reads_them(value, changes):
    calls = iter(range(10**6))

    def sizes(dw: int, pc: int) -> tuple[int, int]:
        i = next(calls)
        return max(0, dw + changes[2 * i % len(changes)]), max(0, pc + changes[(2 * i + 1) % len(changes)])

    for kind, raw in encodings(value):
        assert_same(kind, relayout(raw, sizes))
        assert assert_same(kind, relayout(raw, lambda dw, pc: (dw + 1, pc + 2))) == assert_same(kind, raw)


# --- mutated messages ------------------------------------------------------------------------------------------------


def pointer_word(kind: int, offset: int, hi: int) -> int:
    return (offset << 2 & 0xFFFFFFFF) | kind | hi << 32


POINTERS = st.one_of(
    st.builds(lambda off, dw, pc: pointer_word(0, off, dw | pc << 16), st.integers(-12, 40), st.integers(0, 6),
              st.integers(0, 9)),
    st.builds(lambda off, code, n: pointer_word(1, off, code | n << 3), st.integers(-12, 40), st.integers(0, 7),
              st.one_of(st.integers(0, 70), st.integers(0, 2**29 - 1))),
    st.builds(lambda pad, double: 2 | double << 2 | pad << 3, st.integers(0, 40), st.integers(0, 1)),
    st.builds(lambda index: 3 | index << 32, st.integers(0, 3)),
    st.integers(0, 2**64 - 1),
)
INDEX = st.integers(0, 2**16)
MUTATIONS = st.lists(st.one_of(
    st.tuples(st.just("flip"), INDEX, st.integers(0, 7)),
    st.tuples(st.just("byte"), INDEX, st.integers(0, 255)),
    st.tuples(st.just("word"), INDEX, POINTERS),
    st.tuples(st.just("word"), INDEX, POINTERS),
    st.tuples(st.just("alias"), INDEX, st.tuples(INDEX, st.integers(1, 40))),
    st.tuples(st.just("insert"), INDEX, st.integers(1, 3)),
    st.tuples(st.just("delete"), INDEX, st.integers(1, 3)),
    st.tuples(st.just("truncate"), INDEX, st.booleans()),
    st.tuples(st.just("splice"), INDEX, st.binary(min_size=1, max_size=3)),
), min_size=1, max_size=4)


def mutate(raw: bytes, mutations) -> bytes:
    """Apply the mutations in order; word edits keep the segment table right, byte edits may not.

    "alias" copies the pointer at one word over `count` words from another, all
    pointing at its object, which makes readers charge that object again and again.
    """
    buf = bytearray(raw)
    for op, at, arg in mutations:
        words = max(1, len(buf) // 8)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= 1 << arg
        elif op == "byte" and len(buf) > 8:
            buf[8 + at % (len(buf) - 8)] = arg
        elif op == "word" and len(buf) >= 16:
            struct.pack_into("<Q", buf, 8 * (1 + at % (words - 1)), arg)
        elif op == "alias" and len(buf) >= 16:
            src, (dst, count) = 1 + at % (words - 1), arg
            w = struct.unpack_from("<Q", buf, 8 * src)[0]
            target = src + 1 + ((((w & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) >> 2)
            for i in range(1 + dst % (words - 1), min(words, 1 + dst % (words - 1) + count)):
                struct.pack_into("<Q", buf, 8 * i, pointer_word(w & 3, target - i - 1, w >> 32))
        elif op in ("insert", "delete") and len(buf) >= 16:
            i = 8 * (1 + at % (words - 1))
            if op == "insert":
                buf[i:i] = bytes(8 * arg)
            else:
                del buf[i : i + 8 * arg]
            struct.pack_into("<I", buf, 4, max(0, len(buf) // 8 - 1))
        elif op == "truncate":
            del buf[at % (len(buf) + 1) :]
            if arg and len(buf) >= 8:
                del buf[len(buf) - len(buf) % 8 :]
                struct.pack_into("<I", buf, 4, len(buf) // 8 - 1)
        elif op == "splice":
            buf[at % (len(buf) + 1) : at % (len(buf) + 1)] = arg
    return bytes(buf)


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ANY_PAYLOAD, ANY_HEADER), st.booleans(), MUTATIONS)
def test_mutated_messages_decode_as_pycapnp_reads_them_or_are_refused(value, by_pycapnp, mutations):
    kind, raw = encodings(value)[by_pycapnp]
    assert_same(kind, mutate(raw, mutations))


# --- the limits and the documented differences ----------------------------------------------------------------------


def message(*words: int) -> bytes:
    return struct.pack(f"<II{len(words)}Q", 0, len(words), *words)


def padded(raw: bytes) -> list[int]:
    raw += bytes(-len(raw) % 8)
    return list(struct.unpack(f"<{len(raw) // 8}Q", raw))


def text_word(offset: int, raw: bytes) -> int:
    return pointer_word(1, offset, 2 | len(raw) << 3)


def floats(*values: float) -> list[int]:
    return padded(struct.pack(f"<{len(values)}f", *values))


def memory_put(tags: int = 0, embedding: int = 0, *objects: int, data: int = 0) -> bytes:
    """A MemoryPut with a 16-byte entry and these tags and embedding pointers; `objects` start at word 8.

    Word 4 (tags) reaches word 8 + k with offset 3 + k, word 5 (embedding) with offset 2 + k.
    """
    return message(pointer_word(0, 0, 1 | 4 << 16), data, pointer_word(1, 3, 2 | 16 << 3), 0, tags, embedding,
                   *padded(b"e" * 16), *objects)


def observation_context(list_word: int, *objects: int) -> bytes:
    """An Observation whose context pointer (word 4) is `list_word`; `objects` start at word 5 (offset 0)."""
    return message(pointer_word(0, 0, 1 | 3 << 16), 0, 0, 0, list_word, *objects)


DIFFERENCES = {
    "far-pointer": ("pref.forget", message(pointer_word(0, 0, 1 << 16), 2 | 2 << 3, text_word(0, b"far\0"),
                                           *padded(b"far\0"))),
    "far-root": ("pref.forget", message(2 | 1 << 3, pointer_word(0, 0, 1 << 16), 0)),
    "float32-as-8-byte": ("memory.put", memory_put(0, pointer_word(0, 2, 2 << 16), 0, pointer_word(1, 0, 5 | 1 << 3),
                                                   *floats(1.5, 9.0))),
    "float32-as-struct": ("memory.put", memory_put(0, pointer_word(0, 2, 2 << 16), 0, pointer_word(1, 0, 7 | 1 << 3),
                                                   pointer_word(0, 1, 1), *floats(1.5, 9.0))),
    "text-as-struct": ("memory.put", memory_put(pointer_word(1, 3, 7 | 1 << 3), 0, pointer_word(0, 1, 1 << 16),
                                                text_word(0, b"t\0"), *padded(b"t\0"))),
    "struct-as-8-byte": ("observation", observation_context(pointer_word(1, 0, 5 | 1 << 3), 7)),
    "struct-as-pointer": ("observation", observation_context(pointer_word(1, 0, 6 | 1 << 3), 0)),
    "composite-slack": ("observation", observation_context(pointer_word(1, 0, 7 | 3 << 3), pointer_word(0, 1, 2 << 16),
                                                           0, 0, 0)),
    "empty-list-out-of-segment": ("memory.put", memory_put(pointer_word(1, 1000, 6))),
    "empty-struct-before-segment": ("memory.put", memory_put(0, pointer_word(0, -1000, 0))),
}


@pytest.mark.parametrize("name", DIFFERENCES)
def test_documented_differences_pycapnp_reads_and_this_decoder_refuses(name):
    kind, raw = DIFFERENCES[name]
    assert outcome(reference_payload, kind, raw)[0] == "ok"
    assert assert_same(kind, raw)[0] == "error"


def test_pycapnp_values_for_two_differences():
    assert reference_payload(*DIFFERENCES["far-pointer"]) == payloads.PrefForget(setting="far")
    assert reference_payload(*DIFFERENCES["float32-as-8-byte"]).embedding.vector == (1.5,)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), st.integers(0, 30), st.integers(0, 20))
def test_aliased_objects_hit_the_traversal_limit_exactly_where_pycapnp_does(aliases, size, slack):
    """A MemoryPut whose tags all point at one Text: each alias is charged again (the root pointer twice)."""
    text = b"x" * size + b"\0"
    tags = [pointer_word(1, aliases - k, 2 | len(text) << 3) for k in range(aliases + 1)]
    raw = memory_put(pointer_word(1, 3, 6 | (aliases + 1) << 3), 0, *tags, *padded(text), *[0] * slack)
    charged = 2 + 5 + 2 + (aliases + 1) * (1 + (len(text) + 7) // 8)
    assert assert_same("memory.put", raw)[0] == ("ok" if charged <= wire.traversal_limit(raw) else "error")


def test_zero_sized_struct_elements_are_charged_a_word_each():
    for count in (3, 4, 8, 9, 2**20):
        raw = observation_context(pointer_word(1, 0, 7), pointer_word(0, count, 0))
        fast = assert_same("observation", raw)
        if 2 + 4 + 1 + count > wire.traversal_limit(raw):
            assert fast[2].endswith("traversal limit exceeded (pointers alias one object)")
        else:      # read whole; a context holds at most 4 keys
            assert (fast[0] == "ok") == (count <= 4) and (count <= 4 or fast[2].endswith("over the limit of 4"))


@pytest.mark.parametrize("raw, kind, reason", [
    (message(pointer_word(0, 0, 2 | 1 << 16), 9, 0, 0), "pref.config", "enum value 9 is unknown"),
    (memory_put(data=7), "memory.put", "enum value 7 is unknown"),
    (message(pointer_word(0, 0, 1 << 16), text_word(0, b"\xff\0"), *padded(b"\xff\0")), "pref.forget", "UTF-8"),
    (message(pointer_word(0, 0, 1 << 16), text_word(0, b"ab"), *padded(b"ab")), "pref.forget", "NUL"),
    (message(pointer_word(0, 0, 1 << 16), pointer_word(1, 0, 2)), "pref.forget", "NUL"),
    (message(pointer_word(0, 0, 1 << 16), 3), "pref.forget", "capability pointer"),
    (message(pointer_word(0, 0, 1 << 16), pointer_word(0, 0, 1)), "pref.forget", "struct pointer where a list"),
    (message(pointer_word(1, 0, 2)), "pref.forget", "list pointer where a struct"),
    (message(pointer_word(0, 0, 2 << 16)), "pref.forget", "object overruns the segment"),
    (memory_put(pointer_word(1, 3, 6 | 1 << 3), 0, text_word(-100, b"x\0")), "memory.put", "outside the segment"),
    (observation_context(pointer_word(1, 0, 7 | 2 << 3), pointer_word(1, 1, 2 << 16), 0, 0), "observation", "tag"),
    (struct.pack("<II", 0, 0), "pref.forget", "no root pointer"),
], ids=["enum", "enum-in-struct", "utf8", "no-nul", "empty-text", "capability", "struct-for-text", "list-root",
        "overrun", "outside", "bad-tag", "no-root"])
def test_malformed_payloads_are_refused_by_both(raw, kind, reason):
    fast = assert_same(kind, raw)
    assert fast[0] == "error" and fast[1] is DecodeError and reason in fast[2]


def test_a_union_member_from_a_newer_writer_is_refused_by_both():
    for disc in (4, 0xFFFF):
        raw = message(
            pointer_word(0, 0, 4 << 16),
            pointer_word(1, 3, 2 | 16 << 3),
            pointer_word(1, 4, 7 | 2 << 3),
            0,
            0,
            *padded(b"e" * 16),
            pointer_word(0, 1, 1 | 1 << 16),
            disc << 16,
            0,
        )
        fast = assert_same("memory.update", raw)
        assert fast[0] == "error" and "union member" in fast[2]


def test_null_root_and_null_pointers_read_as_defaults():
    assert payloads.decode("snapshot", message(0)) == payloads.Snapshot()
    assert payloads.decode("pref.forget", message(pointer_word(0, -1, 0))) == payloads.PrefForget(setting="")
    assert payloads.decode("memory.put", memory_put()) == payloads.MemoryPut(entry=b"e" * 16, type="fact", content="",
                                                                             confidence_bp=0)
    assert payloads.decode("memory.put", memory_put(0, pointer_word(0, -1, 0))).embedding == payloads.Embedding(
        model="", vector=())
    with pytest.raises(DecodeError, match="entry is 0 bytes"):
        payloads.decode("memory.delete", message(0))


def test_a_clock_over_the_limit_is_a_size_error_before_its_entries_are_read():
    entries = tuple(
        ClockEntry(bytes([i % 250 + 1]) * 31 + bytes([i // 250]), 0, 1) for i in range(MAX_CLOCK_ENTRIES + 1)
    )
    raw = encode_header(dataclasses.replace(HEADERS[0], clock=entries))
    assert assert_same("header", raw)[1] is SizeLimitError
    assert assert_same("header", encode_header(dataclasses.replace(HEADERS[0], clock=entries, format_version=2)))[1] \
        is DecodeError


def test_embedding_vectors_must_be_finite_and_large_finite_ones_are():
    for bad in (math.inf, -math.inf, math.nan):
        payload = payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c",
                                     embedding=payloads.Embedding(model="m", vector=(1.0, bad)))
        with pytest.raises(DecodeError, match="non-finite"):
            payloads.decode("memory.put", payloads._LAYOUTS[payloads.MemoryPut].encode(payload))
    big = payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c",
                             embedding=payloads.Embedding(model="m", vector=(3.4e38, -3.4e38, 3.4e38) * 1365))
    assert assert_same("memory.put", payloads.encode(big))[0] == "ok"


# --- headers like one decoded before (event._KnownHeaders) ----------------------------------------------------------

ID = st.binary(min_size=32, max_size=32)
VALID_HEADER = st.builds(
    Header, group=ID, author=ID, epoch=U32, seq=st.integers(2, 2**64 - 1), prev=ID.filter(any),
    lamport=st.integers(1, 2**64 - 1), time_ms=st.integers(-(2**63), 2**63 - 1),
    scope=st.one_of(st.just("user"), st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1,
                                              max_size=12)),
    kind=st.sampled_from(["observation", "memory.put", "device.enroll", "x"]), payload_hash=ID,
    payload_len=st.integers(0, MAX_PAYLOAD_BYTES), payload_codec=st.sampled_from(["plain", "sealed"]))
CHANGES = st.dictionaries(
    st.sampled_from(["seq", "prev", "lamport", "time_ms", "payload_hash", "payload_len"]),
    st.one_of(
        st.sampled_from([0, 1, 2, 2**64 - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1, 2**32 - 1, -1, -(2**63)]),
        st.sampled_from([bytes(32), b"\1" * 32]),
        ID,
    ),
    max_size=6,
)


def fits(name: str, value) -> bool:
    """Whether a header field of that name can be encoded holding `value`."""
    if name in ("prev", "payload_hash"):
        return isinstance(value, bytes)
    bits, signed = {"seq": (64, False), "lamport": (64, False), "time_ms": (64, True), "payload_len": (32, False)}[name]
    return isinstance(value, int) and (-(2 ** (bits - 1)) if signed else 0) <= value < 2 ** (
        bits - (1 if signed else 0)
    )


def full_decode(raw: bytes) -> Header:
    """decode_header without the known headers: the generated reader, then check_shape."""
    header = event._HEADER_READER.read(raw, MAX_HEADER_BYTES, "header")
    check_shape(header)
    return header


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(VALID_HEADER, ANY_HEADER), st.booleans(), CHANGES, st.one_of(st.none(), MUTATIONS))
def test_a_header_like_one_decoded_before_decodes_as_the_full_decoder_reads_it(header, by_pycapnp, changes, mutations):
    """One header is decoded (and learned when it may be), then another with its changing fields replaced, maybe
    mutated too: decode_header must give exactly what the full decoder gives."""
    raw = encodings(header)[by_pycapnp][1]
    assert outcome(decode_header, raw) == outcome(full_decode, raw)
    changed = dataclasses.replace(header, **{name: value for name, value in changes.items() if fits(name, value)})
    other = encodings(changed)[by_pycapnp][1]
    if mutations:
        other = mutate(other, mutations)
    assert outcome(decode_header, other) == outcome(full_decode, other)


def test_an_authors_next_header_is_decoded_from_the_known_one():
    first = dataclasses.replace(HEADERS[0], seq=7, prev=b"p" * 32, author=bytes(range(32)))
    assert decode_header(encode_header(first)) == first
    for over in ({"seq": 8, "lamport": 9, "time_ms": 0, "prev": b"q" * 32, "payload_hash": b"r" * 32,
                  "payload_len": 0}, {"seq": 1, "prev": bytes(32)}):
        nxt = dataclasses.replace(first, **over)
        assert event._KNOWN.decode(encode_header(nxt)) == nxt
    for over, error in (
        ({"seq": 0}, "seq must be 1 or more"),
        ({"seq": 1}, "prev must be zero exactly at seq 1"),
        ({"prev": bytes(32)}, "prev must be zero exactly at seq 1"),
        ({"lamport": 0}, "lamport must be"),
        ({"payload_len": MAX_PAYLOAD_BYTES + 1}, "over the limit"),
    ):
        raw = encode_header(dataclasses.replace(first, **over))
        assert outcome(decode_header, raw) == outcome(full_decode, raw)
        with pytest.raises((DecodeError, SizeLimitError), match=error):
            event._KNOWN.decode(raw)
    other_scope = encode_header(dataclasses.replace(first, scope="other"))
    assert event._KNOWN.decode(other_scope) is None
