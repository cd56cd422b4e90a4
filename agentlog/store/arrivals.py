"""When each held event arrived on this device (docs/replay.md): own events at their author time, received ones
at the end of the replication-ledger range that recorded them, events with no ledger row at their author time;
each then raised to its causal past's (prev and clock), so that every cut by arrival is causally closed.
Events are given in key order (author, epoch, seq), a fork's branches side by side.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from operator import itemgetter

from agentlog.prefs.view import Folded
from agentlog.store import ledger

_AUTHOR_EPOCH, _SEQ = itemgetter(0, 1), itemgetter(2)          # a Folded's fields
_LAMPORT, _TIME = itemgetter(3), itemgetter(4)


class Positions:
    """(author, epoch, seq) -> index in `events` (key order): one entry per run of consecutive seqs, not per event."""

    def __init__(self, events: list[Folded]):
        self.runs: dict[tuple[bytes, int], list[tuple[int, int, int]]] = {}   # -> [(first index, first seq, count)]
        seqs = list(map(_SEQ, events))
        lo = 0
        while lo < len(events):                    # each (author, epoch)'s events, found by bisection
            log = events[lo][:2]
            hi = bisect_right(events, log, lo, key=_AUTHOR_EPOCH)
            if seqs[lo:hi] == list(range(seqs[lo], seqs[lo] + hi - lo)):     # the common case: one run
                self.runs[log] = [(lo, seqs[lo], hi - lo)]
            else:
                runs, start = self.runs.setdefault(log, []), lo
                for i in range(lo + 1, hi + 1):
                    if i == hi or seqs[i] != seqs[i - 1] + 1:
                        runs.append((start, seqs[start], i - start))
                        start = i
            lo = hi

    def at(self, author: bytes, epoch: int, seq: int) -> list[int]:
        """The indices of the events at (author, epoch, seq): one, a fork's branches, or none."""
        return [first + seq - start for first, start, count in self.runs.get((author, epoch), ())
                if 0 <= seq - start < count]

    def get(self, position: tuple[bytes, int, int]) -> int | None:
        found = self.at(*position)
        return found[0] if found else None


def arrivals(events: list[Folded], device: bytes, received: Iterable[ledger.Range]) -> list[int]:
    """Each event's arrival time (ms), aligned with `events` (key order): own events at their time,
    received ones at their ledger range's last_ms, no row: their time; then raised to the arrival of
    everything in their causal past, so that a cut by arrival is causally closed."""
    index = Positions(events)
    return raised(events, index, received_at(events, index, received))


def received_at(events: list[Folded], index: Positions, received: Iterable[ledger.Range]) -> list[int]:
    """Each event's arrival before the causal past raises it: its ledger range's last_ms, else its time."""
    arrival = list(map(_TIME, events))
    for r in received:
        runs = index.runs.get((r.author, r.epoch), ())
        if len(runs) == 1:                             # the range's held events are one slice
            first, seq, count = runs[0]
            lo, hi = max(r.lo, seq), min(r.hi, seq + count - 1)
            if lo <= hi:
                arrival[first + lo - seq:first + hi - seq + 1] = [r.last_ms] * (hi - lo + 1)
            continue
        for seq in range(r.lo, r.hi + 1):
            i = index.get((r.author, r.epoch, seq))
            if i is not None:
                arrival[i] = r.last_ms
    return arrival


def raised(events: list[Folded], index: Positions, arrival: list[int]) -> list[int]:
    """`arrival` with each event raised to the arrival of everything in its causal past (in place)."""
    lamports = list(map(_LAMPORT, events))
    for i in sorted(range(len(events)), key=lamports.__getitem__):
        f = events[i]
        t = arrival[i]
        if i and arrival[i - 1] > t:
            g = events[i - 1]                          # key order: the author's previous event, if any
            if g.author == f.author and g.epoch == f.epoch:
                t = arrival[i - 1]
        for c in f.clock:
            j = index.get((c.author, c.epoch, c.seq))
            if j is not None and arrival[j] > t:
                t = arrival[j]
        arrival[i] = t
    return arrival
