"""Readers and layouts compile their generated functions on first use: lazily built ones read and write
exactly what ones compiled up front do, and every one agentlog's modules declare compiles."""

from __future__ import annotations

import gc
import importlib
import pkgutil

import pytest

import agentlog
from agentlog.codec.decode import Reader
from agentlog.codec.encode import Layout
from agentlog.codec.schema import event as event_schema
from agentlog.codec.schema import payloads as payload_schema
from agentlog.log import payloads
from agentlog.log.event import ClockEntry, encode_header
from agentlog.sync import messages
from tests.helpers.samples import ALL_PAYLOADS, EDGE_PAYLOADS, HEADERS, LARGE_PAYLOADS

SAMPLES = ALL_PAYLOADS + EDGE_PAYLOADS + LARGE_PAYLOADS


def _fresh_codecs() -> tuple[dict, dict]:
    """Payload layouts and readers built as payloads.py builds its own, none compiled yet."""
    layouts = payloads._codecs(payloads._layout, Layout(payload_schema.KeyValue, ("key", "value")))
    readers = payloads._codecs(payloads._reader, Reader(payload_schema.KeyValue, ("key", "value")))
    return layouts, readers


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda p: type(p).__name__)
def test_a_lazily_built_payload_codec_gives_what_one_compiled_first_gives(payload):
    lazy_layouts, lazy_readers = _fresh_codecs()
    eager_layouts, eager_readers = _fresh_codecs()
    for codec in (*eager_layouts.values(), *eager_readers.values()):
        codec.compiled()
    cls = type(payload)
    raw = lazy_layouts[cls].encode(payload)
    assert raw == eager_layouts[cls].encode(payload) == payloads.encode(payload)
    assert lazy_readers[cls].read(raw, len(raw), "payload") == eager_readers[cls].read(raw, len(raw), "payload") \
        == payload
    fresh = _fresh_codecs()[1][cls]
    assert fresh.read_stored(raw, "payload") == payload
    assert lazy_layouts[cls].source == eager_layouts[cls].source
    assert lazy_readers[cls].source == eager_readers[cls].source


def test_a_reader_compiles_on_its_first_read_and_compiles_its_nested_readers_with_it():
    clock = Reader(event_schema.ClockEntry, ("author", "epoch", "seq"), ClockEntry, ("author", "epoch", "seq"))
    peek = Reader(event_schema.Header, ("lamport", "clock"), nested={"clock": clock})
    assert peek.fn == peek._compile_and_read and clock.fn == clock._compile_and_read
    h = HEADERS[-1]
    raw = encode_header(h)
    assert peek.read(raw, len(raw), "header") == (h.lamport, h.clock)
    assert peek.fn != peek._compile_and_read and clock.fn != clock._compile_and_read
    compiled = peek.fn
    assert peek.read(raw, len(raw), "header") == (h.lamport, h.clock) and peek.fn is compiled


def test_protocol_messages_round_trip_through_codecs_compiled_on_first_use():
    msg = messages.Events(3, (messages.WireEvent(b"r" * 40, b"p" * 9), messages.WireEvent(b"s" * 8, None)), 1)
    assert messages.decode(messages.encode(msg)) == msg


def test_every_reader_and_layout_agentlogs_modules_build_compiles():
    """A struct a generator does not support fails at its first use now, not at import: compile them all."""
    for module in pkgutil.walk_packages(agentlog.__path__, "agentlog."):
        if not module.name.startswith(("agentlog.cli", "agentlog.mcp", "agentlog.__main__")):
            importlib.import_module(module.name)
    found = [o for o in gc.get_objects() if isinstance(o, (Reader, Layout))]
    assert {id(c) for c in (*payloads._READERS.values(), *payloads._LAYOUTS.values(), messages._READER,
                            messages._LAYOUT)} <= {id(c) for c in found}
    for codec in found:
        assert callable(codec.compiled()) and codec.source
