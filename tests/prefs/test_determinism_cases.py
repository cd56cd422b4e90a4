"""Cases the determinism property test (tests/prefs/test_determinism.py) found, replayed as explicit ops:
after full syncs every device's preference view equals every other's and a rebuild from its log."""

from __future__ import annotations

import pytest

from tests.helpers import determinism as det
from tests.helpers.determinism import DAY, HOUR, NAMES, YEAR, World, causal_order, digest, sync

HONEST_LAPTOP = [0, YEAR, -45 * DAY]     # skews of laptop, phone, hub
LAPTOP_AHEAD = [YEAR, 0, -45 * DAY]


@pytest.fixture(autouse=True)
def _no_hypothesis_events(monkeypatch):
    monkeypatch.setattr(det, "event", lambda *a: None)


def settle(tmp_path, skews: list[int], ops: list[tuple]) -> World:
    """Apply `ops`, then sync every pair twice: every device holds every event."""
    world = World(tmp_path, skews)
    for op in ops:
        world.apply(op)
    for _ in range(2):
        for src in NAMES:
            for dst in NAMES:
                sync(world.stores[src], world.stores[dst])
    return world


def assert_one_view(world: World, first: str = "laptop") -> None:
    """Every device, its rebuild, and an observer taking every event in one batch, `first`'s as far
    as they go, agree."""
    digests = {name: digest(store) for name, store in world.stores.items()}
    events = world.stores["laptop"].events_after({})
    device = world.stores[first].device
    order = causal_order(events, [(e.header.author != device) * len(events) + i for i, e in enumerate(events)])
    observer = world.observer()
    try:
        observer.ingest([(e.record, e.payload) for e in order])
        digests["observer"] = digest(observer)
    finally:
        observer.close()
    for name, store in world.stores.items():
        store.rebuild_views()
        digests[f"{name} rebuilt"] = digest(store)
    assert len(set(digests.values())) == 1, digests


def test_a_correction_covered_by_a_snapshot_before_its_decision_arrives(tmp_path):
    """The hub corrects a decision it does not hold (pending), then writes a snapshot whose stable
    frontier covers the correction; the decision arrives afterwards. Summarizing the correction's
    evidence depended on whether its decision was held when the snapshot was folded: a rebuild
    summarized it, the hub's own fold kept its rows."""
    ops = [("tick", 60_000)] * 15 + [
        ("decide", "laptop", "units", "dark", None, 0.0),
        ("correct_unheld", "hub", 0, "dark"),
        ("tick", 3 * DAY),
        ("observe", "hub", "units", "dark", None, 1.0),
        ("snapshot", "hub", HOUR),
    ]
    world = settle(tmp_path, HONEST_LAPTOP, ops)
    try:
        assert_one_view(world)
    finally:
        world.close()


@pytest.mark.parametrize(
    "then",
    [[], [("observe", "laptop", "theme", "dark", None, 1.0), ("snapshot", "laptop", HOUR)]],
    ids=["alone", "then-a-snapshot"],
)
def test_a_pending_unwitnessed_correction_moved_by_its_decisions_witness_in_one_batch(tmp_path, then):
    """The laptop, its clock a year ahead, corrects the phone's decision before it has seen the phone.
    An observer takes the correction (unwitnessed, pending) and then the decision in one batch; the
    decision names the laptop, so it moves the correction's effective time, but the batch then counted
    the correction at its old time (its fact as first folded)."""
    ops = [("tick", 60_000)] * 10 + [("decide", "phone", "theme", "dark", None, 0.0),
                                      ("correct_unheld", "laptop", 0, "light"), *then]
    world = settle(tmp_path, LAPTOP_AHEAD, ops)
    try:
        assert_one_view(world, first="laptop")
    finally:
        world.close()


@pytest.mark.xfail(strict=True, reason="known gap (docs/compaction.md, the horizon rule): a forget from a device "
                   "left out of a snapshot's stable frontier, lower than some evidence the snapshot summarized, "
                   "keeps that summary where it arrives after the snapshot, not where it arrives before")
def test_a_forget_from_a_silent_device_concurrent_with_a_snapshot(tmp_path):
    """The phone forgets `theme` having seen the hub's first observation only; the hub, which counts the
    phone as silent, summarizes that observation with two later ones in one day's summary. The laptop
    takes the forget first and drops the first observation before summarizing; the hub cannot split its
    summary when the forget arrives. (The laptop acknowledges the hub's observations before the snapshot:
    a device never drops its own events that no other device has acknowledged.)"""
    ops = [("observe", "hub", "theme", "dark", None, 1.0), ("sync", "hub", "phone"),
           ("observe", "hub", "theme", "dark", None, 1.0), ("observe", "hub", "theme", "dark", None, 1.0),
           ("sync", "hub", "laptop"), ("observe", "laptop", "other", "x", None, 1.0), ("sync", "laptop", "hub"),
           ("forget", "phone", "theme"),
           ("tick", 3 * DAY), ("observe", "hub", "theme", "dark", None, 1.0), ("snapshot", "hub", HOUR)]
    world = settle(tmp_path, [0, 0, 0], ops)
    try:
        assert_one_view(world, first="phone")
    finally:
        world.close()
