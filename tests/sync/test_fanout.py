"""The replicator passes its wake-ups on to the store's registered watchers (agentlog.sync.wakeups.Fanout)."""

from __future__ import annotations

import select

from agentlog.sync.wakeups import Fanout


def test_fanout_wakes_every_registered_watcher(laptop):
    watchers = [laptop.watch() for _ in range(3)]
    fanout = Fanout(laptop.path)
    try:
        assert not select.select(watchers, [], [], 0)[0]
        fanout()
        ready = set()
        while len(ready) < 3 and (found := select.select(watchers, [], [], 5)[0]):
            ready.update(found)
        assert len(ready) == 3
        for w in watchers:
            w.changed()                            # drains the wake-up
        watchers.pop().close()                     # unregisters; the two left are still woken
        fanout()
        ready = set()
        while len(ready) < 2 and (found := select.select(watchers, [], [], 5)[0]):
            ready.update(found)
        assert len(ready) == 2
    finally:
        fanout.close()
        for w in watchers:
            w.close()
