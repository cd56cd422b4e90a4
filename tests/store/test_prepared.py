"""Checks made ahead of ingest (agentlog.log.validate.predecode, outside the write transaction, as the relay does): the
batch is stored exactly as from (record, payload) pairs, and a failure is raised where the in-order checks would
raise it."""

from __future__ import annotations

import pytest

from agentlog.errors import DecodeError, PayloadHashError, SequenceError
from agentlog.log.validate import predecode
from tests.helpers.events import phone_events, store_digest
from tests.helpers.sync import sync


def pairs(events) -> list:
    return [(e.record, e.payload) for e in events]


def prepare(batch) -> list:
    return [predecode(record, payload) for record, payload in batch]


def test_a_prepared_batch_is_stored_as_its_pairs_are(laptop, phone, tablet):
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier())
    events += phone_events(phone, 5)
    laptop.ingest(pairs(events), every_signature=False)
    tablet.ingest(prepare(pairs(events)), every_signature=False)
    assert laptop.frontier() == tablet.frontier()
    assert {n: v["digest"] for n, v in laptop.views().items()} == {n: v["digest"] for n, v in tablet.views().items()}


def test_a_failure_found_ahead_is_raised_in_the_batch_order(laptop, phone):
    held = phone.events_after(laptop.frontier())
    laptop.ingest(pairs(held))
    first, second, third = phone_events(phone, 3)
    laptop.ingest(pairs([first]))
    before = store_digest(laptop)
    # a duplicate whose payload does not match is skipped, before and after: then the gap is the failure
    batch = [(first.record, first.payload + b"x"), (third.record, third.payload + b"x")]
    for given in (batch, prepare(batch)):
        with pytest.raises(SequenceError, match="arrives before seq"):
            laptop.ingest(given)
    # a record that does not decode, after an event whose payload does not match: the payload is named
    batch = [(second.record, second.payload + b"x"), (b"\x00" * 90, None)]
    for given in (batch, prepare(batch)):
        with pytest.raises(PayloadHashError):
            laptop.ingest(given)
    for given in (batch[::-1], prepare(batch[::-1])):
        with pytest.raises(DecodeError):
            laptop.ingest(given)
    assert store_digest(laptop) == before
