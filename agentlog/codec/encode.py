"""A pure-Python Cap'n Proto encoder for agentlog's structs, laid out from the schema.

pycapnp builders cost several microseconds per message, and an append encodes two
messages per event. Here each struct gets a small Python function, generated once
from its schema node (section sizes, data offsets, pointer slots, union
discriminants), that computes every pointer arithmetically and packs the struct's
data and pointer sections in one struct.pack call; the message is one join of parts.

Output is one segment, unpacked, with every object placed after its parent in the
order the fields are given: pycapnp's builders allocate in the same order, so set
in that order they give the same bytes. decode.py is the matching reader.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

_SCALARS = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B", "uint16": "H", "uint32": "I",
            "uint64": "Q", "float32": "f", "float64": "d", "enum": "H"}
_SIZE_CODES = {1: 2, 2: 3, 4: 4, 8: 5}
_PAD = tuple(bytes(n) for n in range(9))
_HEAD = struct.Struct("<IIQ")
_WORD = struct.Struct("<Q")


class Layout:
    """The encoder of one struct: `encode(obj)` gives a whole message with that struct as root; `source` is its code.

    `fill` and `source` are made on first use: a process encodes few of the structs its modules declare."""

    __slots__ = ("fill", "lists", "size", "values", "word", "_source", "_spec")

    def __init__(self, struct_type, fields: Sequence[str], attrs: Sequence[str] | None = None,
                 nested: dict[str, Layout] | None = None):
        """Compile `fields` (schema names, in encoding order) of a pycapnp struct type.

        Values are read from objects by `attrs` (same order), or come as tuples in that
        order when `attrs` is None. `nested` gives the layout of each struct or
        struct-list field.
        """
        node = struct_type.schema.node.struct
        self.size = 8 * (node.dataWordCount + node.pointerCount)
        self.word = (node.dataWordCount | node.pointerCount << 16) << 32
        self.values = _getter(attrs) if attrs else (lambda item: item)
        self._spec = (struct_type, tuple(fields), nested or {})
        self._source: str | None = None
        self.fill: Callable = self._compile_and_fill
        kinds = {struct_type.schema.fields[name].proto.slot.type.which() for name in fields}
        self.lists: dict | None = {} if kinds <= {"text", "data"} else None

    @property
    def source(self) -> str:
        """The generated function's code."""
        self.compiled()
        return self._source

    def compiled(self) -> Callable:
        """The generated function `fill(parts, at, end, values)`, compiled now if it was not yet; `fill` is it after."""
        if self._source is None:
            struct_type, fields, nested = self._spec
            source, env = _generate(struct_type.schema, fields, nested)
            exec(compile(source, f"<capnp {struct_type.schema.node.displayName}>", "exec"), env)  # noqa: S102
            self.fill, self._source = env["fill"], source
        return self.fill

    def _compile_and_fill(self, parts: list, at: int, end: int, values) -> tuple[bytes, int]:
        """`fill` until the first encode compiles the real one."""
        return self.compiled()(parts, at, end, values)

    def encode(self, obj: Any) -> bytes:
        """One single-segment message whose root is this struct, filled from `obj`.

        Raises:
            ValueError: a value its field cannot hold (wrong type, out of range, bad enum name).
        """
        parts: list = [None, None]
        try:
            parts[1], end = self.fill(parts, 8, 8 + self.size, self.values(obj))
            parts[0] = _HEAD.pack(0, end >> 3, self.word)
            return b"".join(parts)
        except (struct.error, TypeError, AttributeError, KeyError, OverflowError) as exc:
            raise ValueError(f"cannot encode {type(obj).__name__}: {exc!r}") from None


def _getter(attrs: Sequence[str]) -> Callable[[Any], tuple]:
    """attrgetter(*attrs), always giving a tuple (it gives a bare value for one name)."""
    if len(attrs) > 1:
        return attrgetter(*attrs)
    get = attrgetter(attrs[0])
    return lambda obj: (get(obj),)


def section_struct(schema, slots: dict[int, tuple[str, str]]) -> tuple[struct.Struct, list[str]]:
    """The struct.Struct of a whole data+pointer section, given {byte offset: (format code, variable)}."""
    node = schema.node.struct
    fmt, names, at = "<", [], 0
    for offset in sorted(slots):
        code, var = slots[offset]
        if offset < at:
            raise NotImplementedError(f"{schema.node.displayName}: overlapping fields of different sizes")
        fmt += "x" * (offset - at) + code
        names.append(var)
        at = offset + struct.calcsize(code)
    return struct.Struct(fmt + "x" * (8 * (node.dataWordCount + node.pointerCount) - at)), names


def _generate(schema, fields: Sequence[str], nested: dict[str, Layout]) -> tuple[str, dict]:
    """Source of `fill(parts, at, end, values) -> (section bytes, end)` for one struct, and its globals.

    `at` is the byte position of the struct in the segment, `end` where its objects
    start; the function appends them to `parts` and returns the packed sections.
    """
    node = schema.node.struct
    data_bytes = 8 * node.dataWordCount
    env: dict[str, Any] = {"_PAD": _PAD, "_text": _text, "_data": _data, "_list": _list, "_struct": _struct,
                           "_struct_list": _struct_list, "_pointer_list": _pointer_list}
    slots: dict[int, tuple[str, str]] = {}
    body, unset = [], set()
    for i, name in enumerate(fields):
        f = schema.fields[name].proto
        if f.which() != "slot" or f.slot.hadExplicitDefault:
            raise NotImplementedError(f"field {name}: groups and explicit defaults are not supported")
        union = f.discriminantValue != 0xFFFF
        kind, offset, value = f.slot.type.which(), f.slot.offset, f"v{i}"
        if kind in _SCALARS:
            size = struct.calcsize(_SCALARS[kind])
            if kind == "enum":
                env[f"enum{i}"] = dict(schema.fields[name].schema.enumerants)
                value = f"enum{i}[v{i}]"
            var = _slot(slots, offset * size, _SCALARS[kind], f"d{offset * size}")
            code = [f"{var} = {value}"]
        else:
            var = _slot(slots, data_bytes + 8 * offset, "Q", f"p{offset}")
            code = _pointer(f, name, i, var, data_bytes + 8 * offset, nested.get(name), env)
        if union:
            disc = _slot(slots, 2 * node.discriminantOffset, "H", "disc")
            code.append(f"{disc} = {f.discriminantValue}")
            unset.add(disc)
        if union or kind not in _SCALARS:
            unset.add(var)
            body.append(f"    if v{i} is not None:")
            body.extend(f"        {line}" for line in code)
        else:
            body.extend(f"    {line}" for line in code)
    env["SECTION"], names = section_struct(schema, slots)
    head = [f"    {''.join(f'v{i}, ' for i in range(len(fields)))}= values"] + [
        f"    {var} = 0" for var in sorted(unset)
    ]
    source = "def fill(parts, at, end, values):\n" + "\n".join(head + body) + "\n"
    return source + f"    return SECTION.pack({', '.join(names)}), end\n", env


def _slot(slots: dict[int, tuple[str, str]], offset: int, code: str, var: str) -> str:
    """The variable for the section slot at byte `offset` (union members share one)."""
    if offset in slots and slots[offset][0] != code:
        raise NotImplementedError(f"slot at byte {offset} holds fields of different types")
    return slots.setdefault(offset, (code, var))[1]


def _pointer(f, name: str, i: int, var: str, pos: int, nested: Layout | None, env: dict) -> list[str]:
    """Lines that append field i's object to parts and set its pointer word `var`.

    Text and Data are written inline (a call per field costs more than the work);
    lists and structs go through the helpers below.
    """
    kind = f.slot.type.which()
    if kind == "text":
        return [f"raw = v{i}.encode()", "n = len(raw)", "parts += (raw, _PAD[8 - (n & 7)])",
                f"{var} = (end - at - {pos + 8}) >> 1 | 1 | ((n + 1) << 3 | 2) << 32", "end += n + 8 - (n & 7)"]
    if kind == "data":
        return [f"n = len(v{i})", f"parts += (v{i}, _PAD[-n & 7])",
                f"{var} = (end - at - {pos + 8}) >> 1 | 1 | (n << 3 | 2) << 32", "end += n + (-n & 7)"]
    if kind == "struct" and nested is not None:
        env[f"layout{i}"] = nested
        return [f"{var}, end = _struct(parts, end, at + {pos}, layout{i}, v{i})"]
    if kind == "list":
        element = f.slot.type.list.elementType.which()
        if element == "struct" and nested is not None:
            env[f"layout{i}"] = nested
            return [f"{var}, end = _struct_list(parts, end, at + {pos}, layout{i}, v{i})"]
        if element in ("text", "data"):
            return [f"{var}, end = _pointer_list(parts, end, at + {pos}, _{element}, v{i})"]
        if element in _SCALARS and element != "enum":
            code = _SCALARS[element]
            size = struct.calcsize(code)
            return [f"{var}, end = _list(parts, end, at + {pos}, {code!r}, {size}, {_SIZE_CODES[size]}, v{i})"]
    raise NotImplementedError(f"field {name}: {kind} fields are not supported here")


def _text(parts: list, end: int, pos: int, value: str) -> tuple[int, int]:
    """Append Text (UTF-8, NUL, padding to a word); the pointer word at `pos` and the new end."""
    raw = value.encode()
    n = len(raw)
    parts.append(raw)
    parts.append(_PAD[8 - (n & 7)])
    return (end - pos - 8) >> 1 | 1 | ((n + 1) << 3 | 2) << 32, end + n + 8 - (n & 7)


def _data(parts: list, end: int, pos: int, value: bytes) -> tuple[int, int]:
    """Append Data (padded to a word); the pointer word at `pos` and the new end."""
    n = len(value)
    parts.append(value)
    parts.append(_PAD[-n & 7])
    return (end - pos - 8) >> 1 | 1 | (n << 3 | 2) << 32, end + n + (-n & 7)


def _list(parts: list, end: int, pos: int, code: str, size: int, size_code: int, values) -> tuple[int, int]:
    """Append a list of numbers; the pointer word at `pos` and the new end."""
    n = len(values)
    parts.append(struct.pack(f"<{n}{code}", *values))
    parts.append(_PAD[-(n * size) & 7])
    return (end - pos - 8) >> 1 | 1 | (n << 3 | size_code) << 32, end + n * size + (-(n * size) & 7)


def _struct(parts: list, end: int, pos: int, layout: Layout, value) -> tuple[int, int]:
    """Append a struct and its objects; the pointer word at `pos` and the new end."""
    k = len(parts)
    parts.append(None)
    parts[k], new_end = layout.fill(parts, end, end + layout.size, layout.values(value))
    return (end - pos - 8) >> 1 | layout.word, new_end


def _struct_list(parts: list, end: int, pos: int, layout: Layout, items) -> tuple[int, int]:
    """Append a list of structs (tag word, then the elements) and their objects; pointer word and new end.

    Its bytes do not depend on where it goes (pointers are relative): a list of structs of text and data
    alone (a context's pairs, again and again) is encoded once and its bytes kept, by value."""
    n, memo = len(items), layout.lists
    block = None
    if memo is not None:
        try:
            block = memo.get(items)
        except TypeError:                     # an unhashable list: encoded every time
            memo = None
    if block is None:
        block = _list_block(layout, items)
        if memo is not None:
            if len(memo) >= _LISTS_KEPT:
                memo.clear()
            memo[items] = block
    parts.append(block)
    return (end - pos - 8) >> 1 | 1 | (n * layout.size | 7) << 32, end + len(block)


_LISTS_KEPT = 1024


def _list_block(layout: Layout, items) -> bytes:
    """A list of structs' tag word, elements and their objects, as if placed at 0."""
    parts = [None]
    sections = [_WORD.pack(len(items) << 2 | layout.word)]
    at, end = 8, 8 + len(items) * layout.size
    for item in items:
        section, end = layout.fill(parts, at, end, layout.values(item))
        sections.append(section)
        at += layout.size
    parts[0] = b"".join(sections)
    return b"".join(parts)


def _pointer_list(parts: list, end: int, pos: int, put: Callable, items) -> tuple[int, int]:
    """Append a list of Text or Data (pointer words, then the objects); pointer word and new end."""
    n, k = len(items), len(parts)
    parts.append(None)
    words, new_end = [], end + 8 * n
    for i, item in enumerate(items):
        word, new_end = put(parts, new_end, end + 8 * i, item)
        words.append(word)
    parts[k] = struct.pack(f"<{n}Q", *words)
    return (end - pos - 8) >> 1 | 1 | (n << 3 | 6) << 32, new_end
