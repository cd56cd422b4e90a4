"""pycapnp builders filled from agentlog's dataclasses: the reference encoding the codec is checked against."""

from __future__ import annotations

import dataclasses

from agentlog.log import payloads
from agentlog.log.event import Header


def fill_payload(msg, obj) -> None:
    """Set a pycapnp builder from a payload dataclass in dataclass field order."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), payloads._camel(f.name)
        if value is None:
            continue
        if f.name == "context":
            for slot, (k, v) in zip(msg.init(key, len(value)), value):
                slot.key, slot.value = k, v
        elif dataclasses.is_dataclass(value):
            fill_payload(msg.init(key), value)
        elif isinstance(value, tuple):
            slots = msg.init(key, len(value))
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    fill_payload(slots[i], item)
                else:
                    slots[i] = item
        else:
            setattr(msg, key, value)


def fill_header(msg, h: Header) -> None:
    """Set a pycapnp Header builder; the clock last and only when there is one."""
    for name, key in (("format_version", "formatVersion"), ("group", "group"), ("author", "author"), ("epoch", "epoch"),
                      ("seq", "seq"), ("prev", "prev"), ("lamport", "lamport"), ("time_ms", "time"),
                      ("scope", "scope"), ("kind", "kind"), ("payload_hash", "payloadHash"),
                      ("payload_len", "payloadLen"), ("payload_codec", "payloadCodec")):
        setattr(msg, key, getattr(h, name))
    if h.clock:
        for slot, entry in zip(msg.init("clock", len(h.clock)), h.clock):
            slot.author, slot.epoch, slot.seq = entry.author, entry.epoch, entry.seq
