"""The replicator's watcher (agentlog.sync.wakeups.Watch) and a link's own commits: which commits reach `changed`."""

from __future__ import annotations

from agentlog.sync.wakeups import Watch


class _Calls:
    def __init__(self):
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def _watch(last: int) -> tuple[Watch, _Calls, _Calls]:
    changed, fanout = _Calls(), _Calls()
    watch = Watch(None, changed, lambda: True)
    watch.last, watch.fanout = last, fanout
    return watch, changed, fanout


def test_an_own_commit_not_looked_at_yet_is_taken_as_seen_and_wakes_the_stores_watchers():
    watch, changed, fanout = _watch(10)
    watch.settle((10, 11))
    assert (watch.last, changed.n, fanout.n) == (11, 0, 1)


def test_an_own_commit_seen_while_storing_reaches_changed_only_with_another_process_commit():
    watch, changed, _ = _watch(11)
    watch.pending = (10, 11)                      # seen while the store was under way: that store only
    watch.settle((10, 11))
    assert (changed.n, watch.pending) == (0, None)
    watch.pending = (11, 13)                      # 12 by another process, 13 the link's
    watch.last = 13
    watch.settle((12, 13))
    assert changed.n == 1


def test_commits_seen_while_storing_reach_changed_when_the_store_was_not_one_commit_alone():
    watch, changed, fanout = _watch(11)
    watch.pending = (10, 11)
    watch.settle(None)
    assert (changed.n, fanout.n, watch.last) == (1, 0, 11)
    watch.settle((5, 6))                          # an own commit the watcher looked past long ago: nothing
    assert (changed.n, fanout.n, watch.last) == (1, 0, 11)
