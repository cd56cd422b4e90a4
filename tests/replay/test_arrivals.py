"""Arrivals (agentlog.store.scratch.arrivals): a ledger range's events take its time, and every event is raised to
the arrival of its causal past, across a gap in an author's seqs and a fork's two branches."""

from __future__ import annotations

from agentlog.log.event import ClockEntry
from agentlog.prefs.view import Folded
from agentlog.store.arrivals import Positions, arrivals, received_at
from agentlog.store.ledger import Range
from agentlog.store.scratch import Log

A, B, C, PEER = b"a" * 32, b"b" * 32, b"c" * 32, b"p" * 32


def event(author: bytes, seq: int, lamport: int, time_ms: int, clock=(), eid: bytes = b"") -> Folded:
    return Folded(author, 0, seq, lamport, time_ms, "observation", tuple(clock), eid or author[:1] * 31 + bytes([seq]),
                  None, "")


def test_ledger_ranges_and_the_causal_past_set_each_arrival():
    events = [event(A, 1, 1, 100), event(A, 2, 2, 110), event(A, 4, 7, 120),           # A's seq 3 is not held
              event(B, 1, 3, 90, clock=[ClockEntry(A, 0, 2)]),                          # B had seen A's seq 2
              event(B, 2, 4, 95, eid=b"x" * 32), event(B, 2, 4, 96, eid=b"y" * 32),     # a fork of B's seq 2
              event(B, 3, 5, 200),
              event(C, 1, 1, 50), event(C, 2, 2, 60), event(C, 3, 6, 70)]
    received = [Range(PEER, A, 0, 3, 4, 0, 500),         # names the missing seq 3 too
                Range(PEER, C, 0, 2, 9, 0, 400)]         # runs past C's last held seq
    assert arrivals(events, C, received) == [100, 110, 500, 110, 110, 110, 200, 50, 400, 400]


def test_a_log_reads_its_arrivals_and_latest_arrival_as_arrivals_gives_them():
    events = [event(A, 1, 1, 100), event(A, 2, 2, 110), event(A, 4, 7, 120),
              event(B, 1, 3, 90, clock=[ClockEntry(A, 0, 2)]), event(B, 2, 4, 95), event(B, 3, 5, 700),
              event(C, 1, 1, 50), event(C, 2, 2, 60, clock=[ClockEntry(B, 0, 3)]), event(C, 3, 6, 70)]
    received = [Range(PEER, A, 0, 3, 4, 0, 500), Range(PEER, B, 0, 1, 3, 0, 300)]
    raised = arrivals(events, C, received)
    assert raised == [100, 110, 500, 300, 300, 300, 50, 300, 300]
    index = Positions(events)
    fresh = Log(events, received_at(events, index, received), {}, None, None, positions=index)
    assert fresh.arrival_of(len(events)) == 500 and fresh._order is None      # everything held: no order needed
    log = Log(events, received_at(events, Positions(events), received), {}, None, None)
    assert log.arrival == raised
    assert log.order == sorted(range(len(events)), key=lambda i: (raised[i], events[i].lamport))
    assert [log.arrival_of(n) for n in range(1, len(events) + 1)] == sorted(raised)
