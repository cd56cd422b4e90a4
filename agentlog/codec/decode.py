"""A pure-Python Cap'n Proto decoder for agentlog's structs, laid out from the schema.

The mirror of encode.py: each struct gets a small Python function, generated once
from its schema node (section sizes, data offsets, pointer slots, union
discriminants, list element sizes), that reads one struct with struct.unpack_from
and follows its pointers through the helpers below. It reads bytes from untrusted
peers, so it accepts a strict subset of what a conformant Cap'n Proto reader
accepts, and for every message it accepts gives exactly the values pycapnp gives
(tests/codec/test_decoding.py checks both, by differential fuzzing).

Invariants:

- Framing is wire.check_framing's: one segment, exact length, size limit. The
  segment is buf[8:] and every object a pointer reaches lies wholly inside it,
  zero-sized objects included.
- Every pointer followed is null (it reads as the default: 0, "", b"", () or None),
  a struct pointer (kind 0) where the schema has a struct, or a list pointer
  (kind 1) whose element size code is exactly the schema type's: 2 (bytes) for
  Text and Data, 6 (pointers) for List(Text) and List(Data), 2 to 5 by width for
  lists of numbers (4 for List(Float32)), 7 (inline composite) for lists of
  structs, whose tag is a struct word and whose elements fill exactly the list's
  word count. Far pointers (kind 2) and capabilities (kind 3) are refused.
- Text ends with a NUL byte and the bytes before it are UTF-8 (NUL bytes inside
  are kept, as pycapnp keeps them).
- A struct section smaller than the schema's reads its missing fields as
  defaults; a larger one (a newer writer's) is read up to the schema's fields.
  Unknown enum values and union discriminants are refused, as pycapnp refuses them.
- Work is bounded. Every object read is charged its size in words, exactly as
  Cap'n Proto's traversal limit charges it (the root pointer twice, a struct list
  its tag too, zero-sized elements of a struct list one word each), and decoding
  fails once the charges pass wire.traversal_limit, where pycapnp fails too:
  pointers aliasing one object cannot make decoding quadratic.
  Only pointers the schema names are followed, so nesting is the schema's depth,
  which a reader checks against wire.NESTING_LIMIT when it is built.
- Every failure is DecodeError, or SizeLimitError from framing or a `checks` hook.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from typing import Any

from agentlog.codec.encode import section_struct
from agentlog.codec.wire import NESTING_LIMIT, check_framing, traversal_limit
from agentlog.errors import DecodeError

_SCALARS = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B", "uint16": "H", "uint32": "I",
            "uint64": "Q", "float32": "f", "float64": "d", "enum": "H"}
_SIZE_CODES = {1: 2, 2: 3, 4: 4, 8: 5}
_KINDS = ("struct", "list", "far", "capability")
_POINTER = struct.Struct("<iI")


class _Malformed(Exception):
    """Why a message does not decode; Reader.read turns it into DecodeError."""


class Reader:
    """The decoder of one struct: `read(raw, limit, what)` decodes a whole message with that struct as root.

    `fn` is its generated function and `source` that function's code, both made on first use (a process
    reads few of the structs its modules declare: `agentlog serve` starts faster); `depth` bounds how many
    pointers deep reading the struct goes, counting the one to it.
    """

    __slots__ = ("depth", "fn", "_canonical", "_source", "_spec")

    def __init__(self, struct_type, fields: Sequence[str], make: Callable | None = None,
                 attrs: Sequence[str] | None = None, nested: dict[str, Reader] | None = None,
                 checks: dict[str, Callable[[Any], None]] | None = None):
        """Compile `fields` (schema names, in reading order) of a pycapnp struct type.

        Values go to `make` as keyword arguments named by `attrs` (same order), or
        positionally when `attrs` is None; without `make` the value is a tuple.
        `nested` gives the reader of each struct or struct-list field. `checks` are
        called, in reading order, with a field's value right after it is read, or
        for a list with its length before its elements are read.
        """
        nested = nested or {}
        self.depth = 2 + max((r.depth for r in nested.values()), default=1)
        if self.depth > NESTING_LIMIT:
            raise NotImplementedError(f"{struct_type.schema.node.displayName} nests deeper than {NESTING_LIMIT}")
        self._spec = (struct_type, tuple(fields), make, attrs, nested, checks or {})
        self._source: str | None = None
        self.fn: Callable = self._compile_and_read
        node = struct_type.schema.node.struct
        self._canonical = (node.pointerCount << 16) | node.dataWordCount

    @property
    def source(self) -> str:
        """The generated function's code."""
        self.compiled()
        return self._source

    def compiled(self) -> Callable:
        """The generated function `read(buf, at, dw, pc, budget)`, compiled now if it was not yet; `fn` is it after."""
        if self._source is None:
            struct_type, fields, make, attrs, nested, checks = self._spec
            source, env = _generate(struct_type.schema, fields, make, attrs, nested, checks)
            exec(compile(source, f"<capnp read {struct_type.schema.node.displayName}>", "exec"), env)  # noqa: S102
            self.fn, self._source = env["read"], source
        return self.fn

    def _compile_and_read(self, buf: bytes, at: int, dw: int, pc: int, budget: int) -> tuple[Any, int]:
        """`fn` until the first read compiles the real one."""
        return self.compiled()(buf, at, dw, pc, budget)

    def read_stored(self, buf: bytes, what: str) -> Any:
        """Decode a message the store validated when it accepted it, skipping the checks `read` makes
        first when the root struct sits right after its pointer with this schema's section sizes (as
        every encoder lays it out); anything else goes through `read`. Never for input from outside.
        """
        lo, hi = _POINTER.unpack_from(buf, 8)
        if lo == 0 and hi == self._canonical and len(buf) >= 16 + 8 * ((hi & 0xFFFF) + (hi >> 16)):
            try:
                return self.fn(buf, 16, hi & 0xFFFF, hi >> 16, len(buf) >> 3)[0]
            except _Malformed as exc:
                raise DecodeError(f"{what} does not decode: {exc}") from None
            except UnicodeDecodeError:
                raise DecodeError(f"{what} does not decode: Text is not UTF-8") from None
        return self.read(buf, len(buf), what)

    def read(self, raw: bytes, limit: int, what: str) -> Any:
        """The root struct of one message from outside, after wire.check_framing(raw, limit, what).

        A buffer other than bytes is copied first, so it cannot change while it is read.

        Raises:
            SizeLimitError: `raw` is over `limit` bytes (or a check says so).
            DecodeError: anything else this decoder refuses.
        """
        buf = raw if type(raw) is bytes else memoryview(raw).tobytes()
        check_framing(buf, limit, what)
        try:
            if len(buf) < 16:
                raise _Malformed("the message has no root pointer")
            lo, hi = _POINTER.unpack_from(buf, 8)
            budget = traversal_limit(buf) - 2
            if not (lo or hi):
                return self.fn(buf, 16, 0, 0, budget)[0]
            return _struct(buf, 8, lo, hi, budget, "root", self.fn)[0]
        except _Malformed as exc:
            raise DecodeError(f"{what} does not decode: {exc}") from None
        except UnicodeDecodeError:
            raise DecodeError(f"{what} does not decode: Text is not UTF-8") from None


def _generate(schema, fields: Sequence[str], make: Callable | None, attrs: Sequence[str] | None,
              nested: dict[str, Reader], checks: dict[str, Callable]) -> tuple[str, dict]:
    """Source of `read(buf, at, dw, pc, budget) -> (value, budget left)` for one struct, and its globals.

    The struct's data section starts at byte `at` of `buf` and has `dw` words; its
    `pc` pointers follow. Its bounds and its charge are already checked. Each
    pointer is unpacked as its low half `a<k>` (signed: offset and kind) and its
    high half `b<k>` (sizes).
    """
    node = schema.node.struct
    data_bytes = 8 * node.dataWordCount
    env: dict[str, Any] = {"_Malformed": _Malformed, "_refused": _refused, "_resized": _resized, "_bytes": _bytes,
                           "_text": _text, "_numbers": _numbers, "_pointers": _pointers, "_struct": _struct,
                           "_struct_list": _struct_list}
    slots: dict[int, tuple[str, str]] = {}
    body = []
    members = {f.proto.discriminantValue for f in schema.fields_list if f.proto.discriminantValue != 0xFFFF}
    if members:
        disc = _slot(slots, 2 * node.discriminantOffset, "H", "disc")
        env["MEMBERS"] = frozenset(members)
        body += [
            f"    if {disc} not in MEMBERS:",
            f"        raise _Malformed('union member ' + str({disc}) + ' is unknown')",
        ]
    for i, name in enumerate(fields):
        f = schema.fields[name].proto
        if f.which() != "slot" or f.slot.hadExplicitDefault:
            raise NotImplementedError(f"field {name}: groups and explicit defaults are not supported")
        kind, offset = f.slot.type.which(), f.slot.offset
        if kind in _SCALARS:
            size = struct.calcsize(_SCALARS[kind])
            var = _slot(slots, offset * size, _SCALARS[kind], f"d{offset * size}")
            if kind == "enum":
                env[f"enum{i}"] = {value: key for key, value in schema.fields[name].schema.enumerants.items()}
                code = [f"v{i} = enum{i}.get({var})", f"if v{i} is None:",
                        f"    raise _Malformed('{name}: enum value ' + str({var}) + ' is unknown')"]
            else:
                code = [f"v{i} = {var}"]
        else:
            lo = _slot(slots, data_bytes + 8 * offset, "i", f"a{offset}")
            hi = _slot(slots, data_bytes + 8 * offset + 4, "I", f"b{offset}")
            code = _pointer(f, name, i, (lo, hi), 8 * offset, nested.get(name), env, checks.get(name))
        if name in checks and kind != "list":
            env[f"check{i}"] = checks[name]
            code.append(f"check{i}(v{i})")
        if f.discriminantValue != 0xFFFF:
            body += [f"    v{i} = None", f"    if disc == {f.discriminantValue}:"]
            body.extend(f"        {line}" for line in code)
        else:
            body.extend(f"    {line}" for line in code)
    env["SECTION"], names = section_struct(schema, slots)
    unpacked = f"{', '.join(names)}," if names else "_"
    head = [
        f"    if dw == {node.dataWordCount} and pc >= {node.pointerCount}:",
        f"        {unpacked} = SECTION.unpack_from(buf, at)",
        "    else:",
        f"        {unpacked} = SECTION.unpack(_resized(buf, at, dw, pc, {node.dataWordCount}, {node.pointerCount}))",
        "    pos, end = at + 8 * dw, len(buf)",
    ]
    source = "def read(buf, at, dw, pc, budget):\n" + "\n".join(head + body + _make(make, attrs, len(fields), env))
    return source + "\n", env


def _slot(slots: dict[int, tuple[str, str]], offset: int, code: str, var: str) -> str:
    """The variable for the section slot at byte `offset` (union members share one)."""
    if offset in slots and slots[offset][0] != code:
        raise NotImplementedError(f"slot at byte {offset} holds fields of different types")
    return slots.setdefault(offset, (code, var))[1]


def _pointer(f, name: str, i: int, word: tuple[str, str], rel: int, nested: Reader | None, env: dict,
             check: Callable | None) -> list[str]:
    """Lines that read field i from its pointer (halves `word`), at byte `rel` of the pointer section.

    Text and Data are read inline (a call per field costs more than the work); when
    the inline check fails, the helper that reads them out of line says why.
    """
    kind = f.slot.type.which()
    lo, hi = word
    args = f"buf, pos + {rel}, {lo}, {hi}, budget, {name!r}"
    if kind in ("text", "data"):
        text = kind == "text"
        return [f"v{i} = {'' if text else 'b'}''", f"if {lo} or {hi}:", f"    n = {hi} >> 3",
                f"    t = pos + {rel + 8} + ({lo} >> 2 << 3)",
                f"    if {lo} & 3 != 1 or {hi} & 7 != 2 or t < 8 or t + n > end or budget < (n + 7 >> 3)"
                + (" or not n or buf[t + n - 1]:" if text else ":"),
                f"        raise _refused({'_text' if text else '_bytes'}, {args})",
                "    budget -= n + 7 >> 3",
                f"    v{i} = buf[t : t + n - 1].decode()" if text else f"    v{i} = buf[t : t + n]"]
    if kind == "struct" and nested is not None:
        env[f"read{i}"] = nested.compiled()
        return [f"v{i} = None", f"if {lo} or {hi}:", f"    v{i}, budget = _struct({args}, read{i})"]
    if kind == "list":
        env[f"check{i}"] = check
        element = f.slot.type.list.elementType.which()
        if element == "struct" and nested is not None:
            env[f"read{i}"] = nested.compiled()
            call = f"_struct_list({args}, read{i}, check{i})"
        elif element in ("text", "data"):
            env[f"read{i}"], env[f"default{i}"] = (_bytes, b"") if element == "data" else (_text, "")
            call = f"_pointers({args}, read{i}, default{i}, check{i})"
        elif element in _SCALARS and element != "enum":
            size = struct.calcsize(_SCALARS[element])
            call = f"_numbers({args}, {_SIZE_CODES[size]}, {size}, {_SCALARS[element]!r}, check{i})"
        else:
            call = None
        if call:
            return [f"v{i} = ()", f"if {lo} or {hi}:", f"    v{i}, budget = {call}"]
    raise NotImplementedError(f"field {name}: {kind} fields are not supported here")


def _make(make: Callable | None, attrs: Sequence[str] | None, count: int, env: dict) -> list[str]:
    """Lines that build and return the struct's value from v0, v1, ... and the budget left.

    A slotted dataclass without __post_init__ whose fields are exactly `attrs` gets
    its slots set directly, as its __init__ would set them, at half the cost.
    """
    values = [f"v{i}" for i in range(count)]
    if make is None:
        return [f"    return ({''.join(v + ', ' for v in values)}), budget"]
    env["make"] = make
    if attrs is None:
        return [f"    return make({', '.join(values)}), budget"]
    if (dataclasses.is_dataclass(make) and "__slots__" in vars(make) and not hasattr(make, "__post_init__")
            and {f.name for f in dataclasses.fields(make)} == set(attrs)):
        env["new"] = object.__new__
        env.update((f"set{i}", getattr(make, attr).__set__) for i, attr in enumerate(attrs))
        return ["    obj = new(make)", *(f"    set{i}(obj, v{i})" for i in range(count)), "    return obj, budget"]
    return [f"    return make({', '.join(f'{attr}={v}' for attr, v in zip(attrs, values))}), budget"]


def _refused(read: Callable, *args) -> _Malformed:
    """The problem `read(*args)` finds with a pointer an inline check refused."""
    try:
        read(*args)
    except _Malformed as exc:
        return exc
    return _Malformed(f"{args[-1]}: pointer refused")


def _resized(buf: bytes, at: int, dw: int, pc: int, data_words: int, pointers: int) -> bytes:
    """A struct's sections cut or zero-padded to the schema's sizes (an older or newer writer's struct)."""
    data = buf[at : at + 8 * min(dw, data_words)]
    ptrs = buf[at + 8 * dw : at + 8 * dw + 8 * min(pc, pointers)]
    return data + bytes(8 * data_words - len(data)) + ptrs + bytes(8 * pointers - len(ptrs))


def _kind_problem(lo: int, expected: str, what: str) -> str:
    """Why a pointer of low half `lo` is not a pointer to `expected`."""
    if lo & 3 == 2:
        return f"{what}: far pointers are not accepted"
    return f"{what}: {_KINDS[lo & 3]} pointer where a {expected} pointer belongs"


def _list_problem(lo: int, hi: int, code: int, what: str) -> str:
    """Why a pointer (halves lo, hi) is not a list with element size `code`."""
    if lo & 3 != 1:
        return _kind_problem(lo, "list", what)
    return f"{what}: list element size code {hi & 7} is not the schema's {code}"


def _bounds_problem(buf: bytes, at: int, size: int, budget: int, what: str) -> str:
    """Why an object of `size` bytes at byte `at` cannot be read, given the traversal budget left after it."""
    if at < 8 or at > len(buf):
        return f"{what}: pointer offset lies outside the segment"
    if at + size > len(buf):
        return f"{what}: object overruns the segment"
    return f"{what}: traversal limit exceeded (pointers alias one object)"


def _bytes(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str) -> tuple[bytes, int]:
    """The Data that the non-null pointer at byte `pos` points to, and the budget left."""
    if lo & 3 != 1 or hi & 7 != 2:
        raise _Malformed(_list_problem(lo, hi, 2, what))
    n = hi >> 3
    at = pos + 8 + (lo >> 2 << 3)
    budget -= n + 7 >> 3
    if at < 8 or at + n > len(buf) or budget < 0:
        raise _Malformed(_bounds_problem(buf, at, n, budget, what))
    return buf[at : at + n], budget


def _text(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str) -> tuple[str, int]:
    """The Text that the non-null pointer at byte `pos` points to, and the budget left."""
    raw, budget = _bytes(buf, pos, lo, hi, budget, what)
    if not raw or raw[-1]:
        raise _Malformed(f"{what}: Text is not NUL-terminated")
    try:
        return raw[:-1].decode(), budget
    except UnicodeDecodeError:
        raise _Malformed(f"{what}: Text is not UTF-8") from None


def _numbers(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str, code: int, size: int, fmt: str,
             check: Callable | None) -> tuple[tuple, int]:
    """The list of numbers (element size `code`, `size` bytes, struct format `fmt`) the pointer points to."""
    if lo & 3 != 1 or hi & 7 != code:
        raise _Malformed(_list_problem(lo, hi, code, what))
    n = hi >> 3
    at = pos + 8 + (lo >> 2 << 3)
    budget -= n * size + 7 >> 3
    if at < 8 or at + n * size > len(buf) or budget < 0:
        raise _Malformed(_bounds_problem(buf, at, n * size, budget, what))
    if check:
        check(n)
    return struct.unpack_from(f"<{n}{fmt}", buf, at), budget


def _pointers(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str, read: Callable, default: Any,
              check: Callable | None) -> tuple[tuple, int]:
    """The list of Text or Data (`read` each, `default` when null) the pointer points to."""
    if lo & 3 != 1 or hi & 7 != 6:
        raise _Malformed(_list_problem(lo, hi, 6, what))
    n = hi >> 3
    at = pos + 8 + (lo >> 2 << 3)
    budget -= n
    if at < 8 or at + 8 * n > len(buf) or budget < 0:
        raise _Malformed(_bounds_problem(buf, at, 8 * n, budget, what))
    if check:
        check(n)
    items = []
    for element_lo, element_hi in _POINTER.iter_unpack(buf[at : at + 8 * n]):
        if element_lo or element_hi:
            item, budget = read(buf, at, element_lo, element_hi, budget, what)
            items.append(item)
        else:
            items.append(default)
        at += 8
    return tuple(items), budget


def _struct(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str, read: Callable) -> tuple[Any, int]:
    """The struct that the non-null pointer at byte `pos` points to, decoded by `read`."""
    if lo & 3:
        raise _Malformed(_kind_problem(lo, "struct", what))
    dw, pc = hi & 0xFFFF, hi >> 16
    at = pos + 8 + (lo >> 2 << 3)
    budget -= dw + pc
    if at < 8 or at + 8 * (dw + pc) > len(buf) or budget < 0:
        raise _Malformed(_bounds_problem(buf, at, 8 * (dw + pc), budget, what))
    return read(buf, at, dw, pc, budget)


def _struct_list(buf: bytes, pos: int, lo: int, hi: int, budget: int, what: str, read: Callable,
                 check: Callable | None) -> tuple[tuple, int]:
    """The inline-composite list of structs the pointer points to, each decoded by `read`."""
    if lo & 3 != 1 or hi & 7 != 7:
        raise _Malformed(_list_problem(lo, hi, 7, what))
    words = hi >> 3
    at = pos + 8 + (lo >> 2 << 3)
    budget -= words + 1
    if at < 8 or at + 8 + 8 * words > len(buf) or budget < 0:
        raise _Malformed(_bounds_problem(buf, at, 8 + 8 * words, budget, what))
    tag, sizes = _POINTER.unpack_from(buf, at)
    if tag & 3:
        raise _Malformed(f"{what}: struct list tag is a {_KINDS[tag & 3]} word, not a struct word")
    n, dw, pc = tag >> 2 & 0x3FFFFFFF, sizes & 0xFFFF, sizes >> 16
    if n * (dw + pc) != words:
        raise _Malformed(f"{what}: {n} elements of {dw + pc} words do not fill the list's {words} words")
    if not dw + pc:
        budget -= n
        if budget < 0:
            raise _Malformed(_bounds_problem(buf, at, 0, budget, what))
    if check:
        check(n)
    items = []
    for k in range(n):
        item, budget = read(buf, at + 8 + 8 * k * (dw + pc), dw, pc, budget)
        items.append(item)
    return tuple(items), budget
