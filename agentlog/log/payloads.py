"""Typed payloads, one per event kind, and their Cap'n Proto encoding. Pure.

Each dataclass maps field by field (snake_case to camelCase) onto the struct of the
same name in agentlog/codec/schemas/payloads.capnp. `KINDS` names the kind of each; a kind not in
it is stored and relayed as opaque bytes, so newer devices can add kinds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentlog.codec.decode import Reader
from agentlog.codec.encode import Layout
from agentlog.codec.schema import payloads as _schema
from agentlog.errors import DecodeError, InvalidValueError, SizeLimitError
from agentlog.log import kinds
from agentlog.log.event import MAX_EPOCH, MAX_LAMPORT, MAX_PAYLOAD_BYTES, MAX_SEQ, MAX_TIME_MS

Context = tuple[tuple[str, str], ...]
MEMORY_TYPES = kinds.MEMORY_TYPES
POLICIES = ("unchanged", *kinds.POLICIES)        # "unchanged": a pref.config that keeps the current one
VALUE_TYPES = ("unchanged", *kinds.VALUE_TYPES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    setting: str
    value: str
    context: Context = ()
    weight_milli: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    setting: str
    value: str
    context: Context = ()
    confidence_bp: int = 5000
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Correction:
    decision: bytes
    value: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefSet:
    setting: str
    value: str
    context: Context = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefForget:
    setting: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefConfig:
    setting: str
    policy: str = "unchanged"
    half_life_ms: int = 0
    value_type: str = "unchanged"
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefConfirm:
    setting: str
    baseline: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OverrideSet:
    setting: str
    value: str
    context: Context = ()
    baseline: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OverrideClear:
    setting: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedding:
    model: str
    vector: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryPut:
    entry: bytes
    type: str
    content: str
    tags: tuple[str, ...] = ()
    confidence_bp: int = 10000
    embedding: Embedding | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryField:
    """One changed field of a memory entry: exactly one of the attributes is set."""

    type: str | None = None
    content: str | None = None
    confidence_bp: int | None = None
    embedding: Embedding | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryUpdate:
    entry: bytes
    fields: tuple[MemoryField, ...] = ()
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryDelete:
    entry: bytes
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryMerge:
    """`entry` folded into `into`: its tags join, its content is kept for search, `rewrite` (if any) replaces
    `into`'s content, and `entry` is deleted pointing at `into`."""

    entry: bytes
    into: bytes
    content: str
    tags: tuple[str, ...] = ()
    rewrite: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEnroll:
    device: bytes
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRevoke:
    device: bytes
    until_seq: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadRef:
    author: bytes
    epoch: int
    seq: int
    id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewState:
    name: str
    version: int
    digest: bytes
    state: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LogPoint:
    author: bytes
    epoch: int
    seq: int
    id: bytes
    lamport: int
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingCut:
    setting: str
    before: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    frontier: tuple[LogPoint, ...] = ()
    views: tuple[ViewState, ...] = ()
    stable: tuple[LogPoint, ...] = ()
    cuts: tuple[SettingCut, ...] = ()
    retained: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochStart:
    branches: tuple[HeadRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedKey:
    device: bytes
    box: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeKey:
    scope: str
    readers: tuple[SealedKey, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantedKey:
    key: bytes
    box: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeGrant:
    scope: str
    device: bytes
    keys: tuple[GrantedKey, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Erase:
    """A request to delete the payloads of earlier events everywhere (docs/erasure.md); never repeats content."""

    events: tuple[bytes, ...] = ()
    entry: bytes = b""
    setting: str = ""
    reason: str = ""


KINDS: dict[str, type] = {
    "observation": Observation,
    "decision": Decision,
    "correction": Correction,
    "pref.set": PrefSet,
    "pref.forget": PrefForget,
    "pref.config": PrefConfig,
    "pref.confirm": PrefConfirm,
    "override.set": OverrideSet,
    "override.clear": OverrideClear,
    "memory.put": MemoryPut,
    "memory.update": MemoryUpdate,
    "memory.delete": MemoryDelete,
    "memory.merge": MemoryMerge,
    "device.enroll": DeviceEnroll,
    "device.revoke": DeviceRevoke,
    "snapshot": Snapshot,
    "epoch.start": EpochStart,
    "scope.key": ScopeKey,
    "scope.grant": ScopeGrant,
    "erase": Erase,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in KINDS.items()}

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_NESTED = {"embedding": Embedding, "fields": MemoryField, "frontier": LogPoint, "views": ViewState, "branches": HeadRef,
           "stable": LogPoint, "cuts": SettingCut, "readers": SealedKey, "keys": GrantedKey}
_ENUMS = {"type": MEMORY_TYPES, "policy": POLICIES, "value_type": VALUE_TYPES}
_FIELDS = {
    cls: tuple((f.name, _camel(f.name)) for f in dataclasses.fields(cls))
    for cls in (*KINDS.values(), Embedding, MemoryField, HeadRef, ViewState, SettingCut, LogPoint, SealedKey,
                GrantedKey)
}


def _layout(cls: type, nested: dict[str, Layout]) -> Layout:
    """The encoder of a payload dataclass's struct; objects are laid out in dataclass field order."""
    names = _FIELDS[cls]
    return Layout(getattr(_schema, cls.__name__), [key for _, key in names], [name for name, _ in names], nested)


def _reader(cls: type, nested: dict[str, Reader]) -> Reader:
    """The decoder of a payload dataclass's struct; fields are read in dataclass field order."""
    names = _FIELDS[cls]
    return Reader(getattr(_schema, cls.__name__), [key for _, key in names], cls, [name for name, _ in names], nested)


def _codecs(make: Callable, key_value) -> dict[type, Any]:
    """One encoder or decoder per kind, built by `make(cls, nested)`, sharing the nested ones."""
    embedding, head_ref, log_point = make(Embedding, {}), make(HeadRef, {}), make(LogPoint, {})
    nested = {"context": key_value, "embedding": embedding, "fields": make(MemoryField, {"embedding": embedding}),
              "frontier": log_point, "branches": head_ref, "stable": log_point, "views": make(ViewState, {}),
              "cuts": make(SettingCut, {}), "readers": make(SealedKey, {}), "keys": make(GrantedKey, {})}
    return {cls: make(cls, nested) for cls in KINDS.values()}


_LAYOUTS = _codecs(_layout, Layout(_schema.KeyValue, ("key", "value")))
_READERS = _codecs(_reader, Reader(_schema.KeyValue, ("key", "value")))
_RANGES = {"confidence_bp": 10000, "weight_milli": 1_000_000_000, "half_life_ms": kinds.MAX_HALF_LIFE_MS,
           "until_seq": MAX_SEQ, "epoch": MAX_EPOCH, "seq": MAX_SEQ, "lamport": MAX_LAMPORT, "time": MAX_TIME_MS,
           "before": MAX_TIME_MS}
_LENGTHS = {"device": 32, "decision": 32, "author": 32, "id": 32, "digest": 32, "entry": 16, "into": 16, "key": 32,
            "box": kinds.BOX_LEN}
MAX_NAME_LEN = 64                       # a device's name (devices.py) and a snapshot view's
MAX_FIELD_UPDATES = 16                  # field changes in one memory.update
MAX_LIST = 4096                         # a snapshot's frontier, stable points or cuts; an epoch start's branches
_CONTENTS = ("content", "rewrite")       # memory content: at most MAX_CONTENT_BYTES of UTF-8
# characters a text field may hold (content: UTF-8 bytes), and items a list field may hold
_TEXTS = {"setting": kinds.MAX_SETTING_LEN, "value": kinds.MAX_VALUE_LEN, "baseline": kinds.MAX_VALUE_LEN,
          "reason": kinds.MAX_REASON_LEN, "model": kinds.MAX_MODEL_LEN, "name": MAX_NAME_LEN}
_ITEMS = {"context": kinds.MAX_CONTEXT_KEYS, "choices": kinds.MAX_CHOICES, "tags": kinds.MAX_TAGS,
          "tags_add": kinds.MAX_TAGS, "tags_remove": kinds.MAX_TAGS, "vector": kinds.MAX_EMBEDDING_DIM,
          "frontier": MAX_LIST, "stable": MAX_LIST, "cuts": MAX_LIST, "branches": MAX_LIST, "views": MAX_LIST,
          "fields": MAX_FIELD_UPDATES, "readers": kinds.MAX_READERS, "keys": kinds.MAX_GRANTED_KEYS}
_ITEM_LEN = {"context": kinds.MAX_CONTEXT_LEN, "choices": kinds.MAX_VALUE_LEN, "tags": kinds.MAX_TAG_LEN,
             "tags_add": kinds.MAX_TAG_LEN, "tags_remove": kinds.MAX_TAG_LEN}


def kind_of(payload: Any) -> str:
    """The event kind a payload object is written as."""
    try:
        return KIND_OF[type(payload)]
    except KeyError:
        raise TypeError(f"{type(payload).__name__} is not an agentlog payload") from None


def encode(payload: Any) -> bytes:
    """Serialize a payload object as a single-segment message of its kind's struct.

    Raises:
        TypeError: not an agentlog payload.
        InvalidValueError: a field value readers would refuse, or its struct field cannot hold.
        SizeLimitError: the message is over MAX_PAYLOAD_BYTES.
    """
    layout = _LAYOUTS.get(type(payload))
    if layout is None:
        raise TypeError(f"{type(payload).__name__} is not an agentlog payload")
    check(payload)
    try:
        raw = layout.encode(payload)
    except ValueError as exc:
        raise InvalidValueError(f"{kind_of(payload)} payload: {exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise SizeLimitError(f"{kind_of(payload)} payload is {len(raw)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    return raw


def encode_decoded(payload: Any) -> bytes:
    """`encode`'s bytes for a payload `decode` gave (its fields passed the same checks then): a rebuild
    re-encodes every decision it keeps, and repeating `check` on each cost as much as the encoding."""
    return _LAYOUTS[type(payload)].encode(payload)


_DECODED: dict[tuple[str, bytes], Any] = {}
_DECODED_MAX_BYTES, _DECODED_MAX = 256, 4096


def decode(kind: str, raw: bytes) -> Any:
    """Decode payload bytes of a known kind into its dataclass.

    Small payloads repeat (the same observation, again and again): each distinct one
    is decoded once and its (immutable) object shared.

    Raises:
        DecodeError: unknown kind, bad framing, or a field out of its range.
        SizeLimitError: over MAX_PAYLOAD_BYTES.
    """
    small = type(raw) is bytes and len(raw) <= _DECODED_MAX_BYTES
    if small:
        hit = _DECODED.get((kind, raw))
        if hit is not None:
            return hit
    payload = _decode(kind, raw)
    if small:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[kind, raw] = payload
    return payload


def decode_stored(kind: str, raw: bytes) -> Any:
    """`decode` of payload bytes the store validated when it accepted them (never input from outside):
    the same object, read without the framing checks when laid out as every encoder lays it out; the
    field rules are checked as `decode` checks them."""
    cls = KINDS.get(kind)
    if cls is None or type(raw) is not bytes or len(raw) < 16:        # 16: a message's framing and root pointer
        return _decode(kind, raw)
    payload = _READERS[cls].read_stored(raw, f"{kind} payload")
    problem = _decoded_problem(payload)
    if problem:
        raise DecodeError(f"{kind} payload {problem}")
    return payload


def _decode(kind: str, raw: bytes) -> Any:
    cls = KINDS.get(kind)
    if cls is None:
        raise DecodeError(f"payload kind {kind!r} is unknown to this version")
    payload = _READERS[cls].read(raw, MAX_PAYLOAD_BYTES, f"{kind} payload")
    problem = _decoded_problem(payload)
    if problem:
        raise DecodeError(f"{kind} payload {problem}")
    return payload


def _decoded_problem(obj: Any) -> str | None:
    """The first problem `_field_problem` finds in a decoded payload or nested struct, or None.

    A decoded vector holds Float32 values, whose sum cannot overflow a float: it is
    finite exactly when every value is.
    """
    problem = _erase_problem(obj)
    if problem:
        return problem
    for name in _CHECKED[type(obj)]:
        value = getattr(obj, name)
        if value is None:
            continue
        if name == "vector" and len(value) <= _ITEMS["vector"] and math.isfinite(sum(value)):
            continue
        problem = _field_problem(name, value)
        if problem:
            return problem
        if name in _NESTED:
            for item in value if type(value) is tuple else (value,):
                problem = _decoded_problem(item)
                if problem:
                    return problem
    return None


_CHECKED = {
    cls: tuple(n for n, _ in names if n in _LENGTHS or n in _RANGES or n in _ENUMS or n in _NESTED or n in _TEXTS
               or n in _ITEMS or n in (*_CONTENTS, "scope"))
    for cls, names in _FIELDS.items()
}
_CHECKED[Erase] = ("setting", "reason")


def _erase_problem(obj: Any) -> str | None:
    """Why an erase request is not allowed (its own rules: `entry` may be empty, ids are 32 bytes), or None."""
    if type(obj) is not Erase:
        return None
    if len(obj.events) > kinds.MAX_ERASE_IDS:
        return f"events has {len(obj.events)} items, over the limit of {kinds.MAX_ERASE_IDS}"
    short = next((e for e in obj.events if len(e) != kinds.ERASE_ID_LEN), None)
    if short is not None:
        return f"events holds an id of {len(short)} bytes, not {kinds.ERASE_ID_LEN}"
    if len(set(obj.events)) != len(obj.events):
        return "events names one event twice"
    if obj.entry and len(obj.entry) != _LENGTHS["entry"]:
        return f"entry is {len(obj.entry)} bytes, not {_LENGTHS['entry']} (or empty)"
    if not (obj.events or obj.entry or obj.setting):
        return "names nothing: give events, an entry or a setting"
    return None


def _field_problem(name: str, value: Any) -> str | None:
    """Why a field value is not allowed (the same rule for writers and readers: docs/format.md), or None."""
    if name in _LENGTHS and len(value) != _LENGTHS[name]:
        return f"{name} is {len(value)} bytes, not {_LENGTHS[name]}"
    if name in _RANGES and not 0 <= value <= _RANGES[name]:
        return f"{name} {value} is out of range 0..{_RANGES[name]}"
    if name in _TEXTS and len(value) > _TEXTS[name]:
        return f"{name} is {len(value)} characters, over the limit of {_TEXTS[name]}"
    if name in _CONTENTS and len(value.encode()) > kinds.MAX_CONTENT_BYTES:
        return f"{name} is {len(value.encode())} bytes, over the limit of {kinds.MAX_CONTENT_BYTES}"
    if name in _ITEMS and len(value) > _ITEMS[name]:
        return f"{name} has {len(value)} items, over the limit of {_ITEMS[name]}"
    if name in _ITEM_LEN:
        limit = _ITEM_LEN[name]
        long = next((x for x in value for x in (x if name == "context" else (x,)) if len(x) > limit), None)
        if long is not None:
            return f"{name} holds an item of {len(long)} characters, over the limit of {limit}"
    if name == "vector" and not math.isfinite(sum(value)) and not all(math.isfinite(x) for x in value):
        return "embedding holds a non-finite number"
    if name in _ENUMS and value not in _ENUMS[name]:
        return f"{name} {value!r} is not one of {', '.join(_ENUMS[name])}"
    if name == "scope":
        return kinds.scope_name_problem(value)
    if name in ("readers", "keys"):
        names = [item.device if name == "readers" else item.key for item in value]
        if len(set(names)) != len(names):
            return f"{name} names one {'device' if name == 'readers' else 'key'} twice"
    return None


def check(payload: Any, kind: str | None = None) -> None:
    """Raise InvalidValueError unless a reader would accept every field of `payload`."""
    kind = kind or kind_of(payload)
    if type(payload) is MemoryField and sum(getattr(payload, n) is not None for n, _ in _FIELDS[MemoryField]) != 1:
        raise InvalidValueError(f"{kind} payload: a memory field update sets exactly one field")
    problem = _erase_problem(payload)
    if problem:
        raise InvalidValueError(f"{kind} payload {problem}")
    for name in _CHECKED[type(payload)]:
        value = getattr(payload, name)
        if value is None:
            continue
        problem = _field_problem(name, value)
        if problem:
            raise InvalidValueError(f"{kind} payload {problem}")
        if name in _NESTED:
            for item in value if isinstance(value, tuple) else (value,):
                check(item, kind)
