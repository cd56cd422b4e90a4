"""Typed payloads, one per event kind, and their Cap'n Proto encoding. Pure.

Each dataclass maps field by field (snake_case to camelCase) onto the struct of the
same name in schemas/payloads.capnp. `KINDS` names the kind of each; a kind not in
it is stored and relayed as opaque bytes, so newer devices can add kinds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import DecodeError, SizeLimitError
from .event import MAX_PAYLOAD_BYTES
from .schema import payloads as _schema
from .wire import build, reader

Context = tuple[tuple[str, str], ...]
MEMORY_TYPES = ("fact", "preference", "decision", "finding", "context", "conversation")
POLICIES = ("unchanged", "sticky", "vote", "reconfirm")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefConfirm:
    setting: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OverrideSet:
    setting: str
    value: str
    context: Context = ()


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
class Snapshot:
    frontier: tuple[HeadRef, ...] = ()
    views: tuple[ViewState, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochStart:
    branches: tuple[HeadRef, ...] = ()


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
    "device.enroll": DeviceEnroll,
    "device.revoke": DeviceRevoke,
    "snapshot": Snapshot,
    "epoch.start": EpochStart,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in KINDS.items()}

_STRUCTS = {cls: getattr(_schema, cls.__name__) for cls in KINDS.values()}
_NESTED = {"context": None, "embedding": Embedding, "fields": MemoryField, "frontier": HeadRef, "views": ViewState, "branches": HeadRef}
_RANGES = {"confidence_bp": 10000, "weight_milli": 1_000_000_000}
_LENGTHS = {"device": 32, "decision": 32, "author": 32, "id": 32, "digest": 32, "entry": 16}


def kind_of(payload: Any) -> str:
    """The event kind a payload object is written as."""
    try:
        return KIND_OF[type(payload)]
    except KeyError:
        raise TypeError(f"{type(payload).__name__} is not an agentlog payload") from None


def encode(payload: Any) -> bytes:
    """Serialize a payload object as a single-segment message of its kind's struct."""
    raw = build(_STRUCTS[type(payload)], _to_capnp(payload))
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise SizeLimitError(f"{kind_of(payload)} payload is {len(raw)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    return raw


def decode(kind: str, raw: bytes) -> Any:
    """Decode payload bytes of a known kind into its dataclass.

    Raises:
        DecodeError: unknown kind, bad framing, or a field out of its range.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise DecodeError(f"payload kind {kind!r} is unknown to this version")
    with reader(_STRUCTS[cls], raw, MAX_PAYLOAD_BYTES, f"{kind} payload") as msg:
        fields = msg.to_dict()
    return _from_capnp(cls, fields, kind)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _to_capnp(obj: Any) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if f.name == "context":
            value = [{"key": k, "value": v} for k, v in value]
        elif dataclasses.is_dataclass(value):
            value = _to_capnp(value)
        elif isinstance(value, tuple):
            value = [_to_capnp(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[_camel(f.name)] = value
    return out


def _from_capnp(cls: type, data: dict, kind: str) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _camel(f.name)
        if key not in data:
            continue
        value = data[key]
        nested = _NESTED.get(f.name)
        if f.name == "context":
            value = tuple((kv.get("key", ""), kv.get("value", "")) for kv in value)
        elif f.name == "embedding":
            value = Embedding(model=value.get("model", ""), vector=tuple(value.get("vector", ())))
            if not all(math.isfinite(x) for x in value.vector):
                raise DecodeError(f"{kind} payload embedding holds a non-finite number")
        elif nested is not None:
            value = tuple(_from_capnp(nested, item, kind) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        if f.name in _LENGTHS and len(value) != _LENGTHS[f.name]:
            raise DecodeError(f"{kind} payload {f.name} is {len(value)} bytes, not {_LENGTHS[f.name]}")
        if f.name in _RANGES and value is not None and value > _RANGES[f.name]:
            raise DecodeError(f"{kind} payload {f.name} {value} is out of range")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DecodeError(f"{kind} payload is missing a field: {exc}") from None
