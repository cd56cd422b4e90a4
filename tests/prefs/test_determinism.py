"""The preference view is a function of the set of events (issue 3, part 3).

Three devices of one group, one honest clock, one a year ahead and one behind, write
every kind of preference event through the API (observations with and without
context and weight, decisions, corrections, also on another device of a decision it
received, explicit statements, forget (some erasing the evidence, docs/erasure.md),
configuration, overrides, confirmations)
interleaved with syncs between random pairs. The union of their events is then
delivered to fresh observers (stores of the group that only ingest, and an enrolled
device that never wrote) in many causally consistent orders (random topological
orders of each author's chain and each event's clock) and batch sizes: every
observer's view digest, every fresh replay and every fully synced device agree byte
for byte, and so do the answers.

Devices also write compaction snapshots now and then (without truncating): each folds its
covered old evidence into day summaries on every device, whatever the order it arrives in.

A few corrections name a decision their device does not hold (as a client that
learned the id out of band would write them), so observers meet corrections both
before and after their decisions.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentlog.prefs import reducer as pr
from agentlog.store.store import Store
from tests.helpers.determinism import DAY, HOUR, NAMES, YEAR, World, batches, causal_order, digest, sync

SETTINGS = ("theme", "units")
VALUES = ("dark", "light", "auto", "true", "false", "2.5")
CONTEXTS = (None, {"daypart": "night"}, {"daypart": "day"}, {"device_class": "phone"},
            {"daypart": "night", "device_class": "phone"}, {"daypart": "day", "device_class": "laptop"})
TYPES = (None, ("text", ()), ("bool", ()), ("number", ()), ("choice", ("dark", "light")))

device = st.sampled_from(NAMES)
setting = st.sampled_from(SETTINGS)
value = st.sampled_from(VALUES)
context = st.sampled_from(CONTEXTS)
TICK = st.tuples(st.just("tick"), st.sampled_from([60_000, HOUR, 9 * HOUR, 3 * DAY, 40 * DAY]))
OBSERVE = st.tuples(st.just("observe"), device, setting, value, context, st.floats(0.001, 20.0))
DECIDE = st.tuples(st.just("decide"), device, setting, value, context, st.floats(0.0, 1.0))
CORRECT = st.tuples(st.just("correct"), device, st.integers(0, 50), value)
SYNC = st.tuples(st.just("sync"), device, device)
OPS = st.one_of(
    TICK, TICK, OBSERVE, OBSERVE, OBSERVE, DECIDE, CORRECT, CORRECT, SYNC, SYNC, SYNC,
    st.tuples(st.just("correct_unheld"), device, st.integers(0, 50), value),
    st.tuples(st.just("set"), device, setting, value, context),
    st.tuples(st.just("forget"), device, setting, st.sampled_from([False, False, True])),   # True: and erase
    st.tuples(st.just("config"), device, setting, st.sampled_from([None, *pr.POLICIES]),
              st.sampled_from([None, HOUR, HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY]), st.sampled_from(TYPES)),
    st.tuples(st.just("override"), device, setting, value),
    st.tuples(st.just("clear"), device, setting),
    st.tuples(st.just("confirm"), device, setting),
    st.tuples(st.just("snapshot"), device, st.sampled_from([HOUR, 3 * DAY, 30 * DAY])),
    st.tuples(st.just("snapshot"), device, st.sampled_from([HOUR, 3 * DAY, 30 * DAY])),
)


def answers(store: Store, now: int) -> list:
    """Every lookup a user could make on this store, and its explanation."""
    out = []
    for name in SETTINGS:
        for ctx in CONTEXTS:
            out.append(store.prefs.get(name, ctx, now_ms=now).answer)
            out.append(store.prefs.explain(name, ctx, now_ms=now).contributions)
    return out


def device_answers(stores: dict[str, Store], view: Store, now: int) -> dict:
    """Each device's answers (its overrides included) computed from the state `view` holds."""
    out = {}
    for name in SETTINGS:
        s = view.prefs.setting(name)
        for device_name, store in stores.items():
            for i, ctx in enumerate(CONTEXTS):
                pairs = tuple(sorted((ctx or {}).items()))
                answer = pr.answer(s, store.device.hex(), pairs, now) if s else pr.default_answer(name)
                out[name, device_name, i] = answer
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(OPS, min_size=20, max_size=70), skews=st.permutations([0, YEAR, -45 * DAY]),
       salt=st.binary(max_size=2), data=st.data())
def test_pref_view_is_a_function_of_the_event_set(ops, skews, salt, data):
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-prefdet-"))
    world = World(tmp, skews, salt)
    observers = []
    try:
        for op in ops:
            world.apply(op)
        ending = data.draw(st.booleans(), label="meet, acknowledge and snapshot at the end")
        event(f"ending with a stable snapshot: {ending}")
        if ending:
            for _ in range(2):           # every device sees everything and says so: the log becomes stable
                for src in NAMES:
                    for dst in NAMES:
                        sync(world.stores[src], world.stores[dst])
                world.apply(("tick", 2 * DAY))
                for name in NAMES:
                    for setting_name in SETTINGS:
                        world.apply(("observe", name, setting_name, "auto", None, 1.0))
            world.apply(("snapshot", data.draw(device, label="last snapshot by"), HOUR))  # the watcher: silent
        for _ in range(2):
            for src in NAMES:
                for dst in NAMES:
                    sync(world.stores[src], world.stores[dst])
        synced = {digest(s) for s in world.stores.values()}
        assert len(synced) == 1, "fully synced devices disagree"
        [expected] = synced
        laptop = world.stores["laptop"]
        with laptop.raw_txn() as txn:
            summaries = sum(ev.kind == "summary" for name in SETTINGS for ev in laptop.pref_view.evidence_of(txn, name))
        event(f"day summaries in the view: {'some' if summaries else 'none'}")
        events = world.stores["laptop"].events_after({})
        n = len(events)
        event(f"events in the set: {n // 20 * 20}+")
        assert all(s.count() == n for s in world.stores.values())

        rank = {store.device: i for i, store in enumerate(world.stores.values())}
        plans = [
            ("lamport order, all at once", events, [n]),
            ("each author as far as it goes, one at a time",
             causal_order(events, [rank[e.header.author] * n + e.header.seq for e in events]), list(range(n))),
            ("authors the other way round, one at a time",
             causal_order(events, [-rank[e.header.author] * n + e.header.seq for e in events]), list(range(n))),
        ]
        for i in range(3):
            order = causal_order(events, data.draw(st.permutations(range(n)), label=f"priority {i}"))
            cuts = data.draw(st.one_of(st.just(list(range(n))), st.lists(st.integers(1, n), max_size=8)),
                             label=f"cuts {i}")
            plans.append((f"random order {i}", order, cuts))

        now = world.now + 2 * HOUR
        reference = answers(world.stores["laptop"], now)
        reference_devices = device_answers(world.stores, world.stores["laptop"], now)
        for name, store in world.stores.items():
            assert device_answers(world.stores, store, now) == reference_devices
            for setting_name in SETTINGS:
                for i, ctx in enumerate(CONTEXTS):
                    own = store.prefs.get(setting_name, ctx, now_ms=now).answer
                    assert own == reference_devices[setting_name, name, i], (name, setting_name, ctx)

        for label, order, cuts in plans:
            observer = world.observer()
            observers.append(observer)
            for batch in batches(order, cuts):
                observer.ingest([(e.record, e.payload) for e in batch])
            assert observer.count() == n, label
            assert digest(observer) == expected, label
            assert device_answers(world.stores, observer, now) == reference_devices, label

        watcher_order = causal_order(events, data.draw(st.permutations(range(n)), label="watcher priority"))
        for batch in batches(watcher_order, data.draw(st.lists(st.integers(1, n), max_size=8), label="watcher cuts")):
            world.watcher.ingest([(e.record, e.payload) for e in batch])
        assert digest(world.watcher) == expected, "a joined device that never wrote"

        observer_answers = [answers(o, now) for o in [*observers, world.watcher]]
        assert all(a == observer_answers[0] for a in observer_answers)
        later = now + 40 * DAY
        assert device_answers(world.stores, observers[0], later) == device_answers(world.stores, observers[1], later)

        observers[-1].rebuild_views()
        assert digest(observers[-1]) == expected, "a fresh replay differs from the incremental view"
        for store in world.stores.values():
            store.rebuild_views()
            assert digest(store) == expected, "a fresh replay on a device differs from its incremental view"
        assert answers(world.stores["laptop"], now) == reference
    finally:
        for observer in observers:
            observer.close()
        world.close()
        shutil.rmtree(tmp, ignore_errors=True)
