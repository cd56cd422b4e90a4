"""StoreLog's ingest of batches that queued up while the last was stored: one transaction for all, and when one
is refused, those before it stored as they would have been alone."""

from __future__ import annotations

from dataclasses import replace

from agentlog.errors import PayloadHashError
from agentlog.sync.messages import WireEvent
from agentlog.sync.peer_log import StoreLog
from tests.helpers.events import phone_events, store_digest


def batches(events, size: int = 3) -> list[tuple[WireEvent, ...]]:
    wire = [WireEvent(e.record, e.payload) for e in events]
    return [tuple(wire[i : i + size]) for i in range(0, len(wire), size)]


def test_batches_that_queued_up_are_stored_in_one_transaction_and_each_answered(laptop, phone):
    events = phone_events(phone, 9)
    before = laptop.last_txnid()
    done = StoreLog(laptop, phone.device).ingest_queued(batches(events))
    assert laptop.last_txnid() == before + 1                       # one commit for the three batches
    last = (events[-1].header.epoch, events[-1].header.seq)
    assert [answer[0][phone.device] for answer in done] == [last] * 3
    assert [answer[2] for answer in done] == [0, 0, 9]
    assert laptop.heads()[phone.device].seq == last[1]


def test_a_refused_batch_among_them_is_stored_not_at_all_and_those_before_it_are(laptop, phone):
    events = phone_events(phone, 9)
    events[4] = replace(events[4], payload=events[4].payload + b" ")  # in the second batch
    done = StoreLog(laptop, phone.device).ingest_queued(batches(events))
    assert len(done) == 2 and done[0][2] == 3 and isinstance(done[1], PayloadHashError)
    assert laptop.heads()[phone.device].seq == events[2].header.seq
    digest = store_digest(laptop)
    assert isinstance(StoreLog(laptop, phone.device).ingest_queued(batches(events[3:]))[-1], PayloadHashError)
    assert store_digest(laptop) == digest                           # refused whole, the store unchanged
