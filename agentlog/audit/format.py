"""The audit export's line format (docs/audit.md), shared by the writer and the verifier. Pure: no I/O.

A line is one JSON object in canonical form: `json.dumps(obj, separators=(",", ":"))`, ASCII only,
keys in the writer's order. The verifier re-serializes every parsed line and refuses one that
differs, so any byte changed in a line is found and named, not only changes to signed fields.
Readable fields (device name, ISO time, kind, scope, content) are derived from the signed header
and payload by the functions here; the verifier derives them again and compares.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from agentlog.log import payloads
from agentlog.text import iso  # noqa: F401 - the export format's time text, named here for its users

FORMAT = "agentlog-audit/1"
DIGEST_PREFIX = b"agentlog audit export v1\n"       # hashed before the lines: the signed digest is no event id
ROSTER_KINDS = ("device.enroll", "device.revoke")
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_ONE_SHOT = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
string = json.encoder.encode_basestring_ascii          # a JSON string literal exactly as dumps writes it


def dumps(obj: dict) -> str:
    """The canonical text of one line (without its newline): json.dumps(obj, separators=(",", ":")), with
    the C encoder made once rather than per call."""
    return "".join(_ONE_SHOT(obj, 0)) if _ONE_SHOT else _ENCODER.encode(obj)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64: ValueError on anything but canonical padding and alphabet."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("base64 is not canonical")
    return raw


def content_of(kind: str, codec: str, payload: bytes) -> Any:
    """What a person reads of a payload: its decoded fields (bytes as hex; an embedding's vector and a
    snapshot view's state summarized by size: the base64 payload beside it holds them exactly).

    Raises:
        EventError: the payload does not decode as its kind.
    """
    if codec != "plain":
        return {"sealed": True}
    if kind not in payloads.KINDS:
        return {"opaque": True}
    return _plain(payloads.decode(kind, payload))


def _plain(value: Any) -> Any:
    """Payload objects as JSON values: dataclasses as objects, bytes as hex; tuples stay (JSON arrays)."""
    convert = _CONVERTERS.get(type(value))
    if convert is not None:
        return convert(value)
    if type(value) is tuple and value and type(value[0]) in _CONVERTERS:
        return [_plain(v) for v in value]
    if type(value) is tuple and value and type(value[0]) is bytes:      # ids, as an erase request's events
        return [v.hex() for v in value]
    return value


def _converter(cls: type):
    """A function from a payload object to a dict, compiled once per class (the export's hot path)."""
    parts = []
    for f in dataclasses.fields(cls):
        kind = _FIELD_TYPES[cls][f.name]
        value = f"o.{f.name}"
        if kind == "bytes":
            value += ".hex()"
        elif kind not in _SCALAR:
            value = f"(None if o.{f.name} is None else plain(o.{f.name}))"
        parts.append(f"{f.name!r}: {value}")
    env = {"plain": _plain}
    exec(f"def convert(o):\n    return {{{', '.join(parts)}}}\n", env)  # noqa: S102 - field names from our dataclasses
    return env["convert"]


_SCALAR = {"str", "int", "bool", "Context", "tuple[str, ...]", "str | None", "int | None"}
_CLASSES = (*payloads.KINDS.values(), payloads.MemoryField, payloads.HeadRef, payloads.LogPoint, payloads.SettingCut,
            payloads.SealedKey, payloads.GrantedKey)
_FIELD_TYPES = {cls: {f.name: str(f.type) for f in dataclasses.fields(cls)} for cls in _CLASSES}
_CONVERTERS: dict[type, Any] = {cls: _converter(cls) for cls in _CLASSES}
_CONVERTERS[payloads.Embedding] = lambda v: {"model": v.model, "dims": len(v.vector)}
_CONVERTERS[payloads.ViewState] = lambda v: {"name": v.name, "version": v.version, "digest": v.digest.hex(),
                                             "state_bytes": len(v.state)}


def scope_matches(scope: str, patterns: list[str] | None) -> bool:
    """`patterns` None selects every scope; a pattern ending in * is a prefix (device:*)."""
    if patterns is None:
        return True
    return any(scope.startswith(p[:-1]) if p.endswith("*") else scope == p for p in patterns)


def selected(time_ms: int, scope: str, selection: dict) -> bool:
    """Whether an event falls in an export's selection ({since_ms, until_ms, scopes}); until is exclusive."""
    since, until = selection.get("since_ms"), selection.get("until_ms")
    return (since is None or time_ms >= since) and (until is None or time_ms < until) and \
        scope_matches(scope, selection.get("scopes"))


def runs(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs -> [[lo, hi], ...] contiguous runs."""
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] + 1 == s:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out
