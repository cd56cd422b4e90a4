"""The preference view is a function of the set of events (issue 3, part 3).

Three devices of one group, one honest clock, one a year ahead and one behind, write
every kind of preference event through the API (observations with and without
context and weight, decisions, corrections, also on another device of a decision it
received, explicit statements, forget, configuration, overrides, confirmations)
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

import hashlib
import heapq
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentlog.crypto import DeviceKey
from agentlog.errors import InvalidValueError
from agentlog.log import payloads
from agentlog.prefs import reducer as pr
from agentlog.store import compaction, devices
from agentlog.store.store import Store

HOUR = 3_600_000
DAY = 24 * HOUR
YEAR = 365 * DAY
START = 1_750_000_000_000
NAMES = ("laptop", "phone", "hub")
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
    st.tuples(st.just("forget"), device, setting),
    st.tuples(st.just("config"), device, setting, st.sampled_from([None, *pr.POLICIES]),
              st.sampled_from([None, HOUR, HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY]), st.sampled_from(TYPES)),
    st.tuples(st.just("override"), device, setting, value),
    st.tuples(st.just("clear"), device, setting),
    st.tuples(st.just("confirm"), device, setting),
    st.tuples(st.just("snapshot"), device, st.sampled_from([HOUR, 3 * DAY, 30 * DAY])),
    st.tuples(st.just("snapshot"), device, st.sampled_from([HOUR, 3 * DAY, 30 * DAY])),
)


def sync(src: Store, dst: Store) -> None:
    if src is not dst:
        dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


def digest(store: Store) -> bytes:
    return store.views()["pref"]["digest"]


class World:
    """Three enrolled devices whose clocks read a shared simulated time plus their own skew; their keys
    come from `salt` and their names, so an example replays with the same event ids (whose order breaks
    ties between authors)."""

    def __init__(self, tmp: Path, skews: list[int], salt: bytes = b""):
        self.tmp, self.now, self.salt = tmp, START, salt
        self.stores: dict[str, Store] = {}
        for name, skew in zip(NAMES, skews):
            self.stores[name] = self._device(name, skew)
        laptop = self.stores["laptop"]
        laptop.create_group("laptop")
        for name in NAMES[1:]:
            devices.join(self.stores[name], devices.enroll(laptop, self.stores[name].device, name))
            sync(laptop, self.stores[name])
        # An enrolled device that never writes and has received nothing but its join token.
        self.watcher = self._device("watcher", 0)
        devices.join(self.watcher, devices.enroll(laptop, self.watcher.device, "watcher"))
        self.decisions: list[bytes] = []
        self.observers = 0

    def _device(self, name: str, skew: int) -> Store:
        seed = hashlib.blake2b(self.salt + name.encode(), digest_size=32).digest()
        store = Store(self.tmp / name, DeviceKey(seed), clock=lambda: self.now + skew)
        store.set_meta({"device": store.key.public, "name": name.encode()})
        return store

    def observer(self) -> Store:
        """A fresh store of the group that writes nothing: it only ingests."""
        self.observers += 1
        laptop = self.stores["laptop"]
        store = Store(self.tmp / f"observer-{self.observers}", None)
        store.set_meta({"group": laptop.group, "founder": laptop.founder, "genesis": laptop.genesis})
        return store

    def apply(self, op: tuple) -> None:
        kind, args = op[0], op[1:]
        if kind == "tick":
            self.now += args[0]
            return
        if kind == "sync":
            sync(self.stores[args[0]], self.stores[args[1]])
            return
        if kind == "snapshot":           # its day summaries fold on every device, in any order (no truncation)
            written = compaction.write_snapshot(self.stores[args[0]], now_ms=self.now, horizon_ms=args[1])[0]
            event("snapshot written" if written else "snapshot: nothing new")
            return
        store = self.stores[args[0]]
        prefs = store.prefs
        try:
            if kind == "observe":
                prefs.observe(args[1], args[2], args[3], weight=args[4])
            elif kind == "decide":
                self.decisions.append(prefs.decide(args[1], args[2], args[4], args[3]))
            elif kind == "correct":
                held = [d for d in self.decisions if store.get(d) is not None]
                if not held:
                    return
                prefs.correct(held[args[1] % len(held)], args[2])
            elif kind == "correct_unheld":
                # A client that learned a decision's id out of band (or a buggy one) corrects a
                # decision this device does not hold: observers may see it before the decision.
                unheld = [d for d in self.decisions if store.get(d) is None] or [bytes([args[1]]) * 32]
                store.append(payloads.Correction(decision=unheld[args[1] % len(unheld)], value=args[2]))
            elif kind == "set":
                prefs.set(args[1], args[2], args[3])
            elif kind == "forget":
                prefs.forget(args[1])
            elif kind == "config":
                policy, half_life, typed = args[2:]
                value_type, choices = typed or (None, ())
                prefs.configure(args[1], policy=policy, half_life_ms=half_life, value_type=value_type,
                                choices=choices)
            elif kind == "override":
                prefs.override(args[1], args[2])
            elif kind == "clear":
                prefs.clear_override(args[1])
            elif kind == "confirm":
                prefs.confirm(args[1])
        except InvalidValueError:
            event(f"{kind} refused")  # before writing (wrong type for the setting, nothing to confirm)
            return
        event(f"{kind} written")

    def close(self) -> None:
        for store in [*self.stores.values(), self.watcher]:
            store.close()


def causal_order(events: list, priority: list[int]) -> list:
    """A topological order of the event DAG (each author's chain, each event's clock),
    picking among the deliverable events the one of lowest `priority`."""
    key = {(e.header.author, e.header.epoch, e.header.seq): i for i, e in enumerate(events)}
    waiting_on = [0] * len(events)
    unlocks: list[list[int]] = [[] for _ in events]
    for i, e in enumerate(events):
        h = e.header
        deps = {(c.author, c.epoch, c.seq) for c in h.clock}
        if h.seq > 1:
            deps.add((h.author, h.epoch, h.seq - 1))
        for dep in deps:
            unlocks[key[dep]].append(i)
        waiting_on[i] = len(deps)
    ready = [(priority[i], i) for i, n in enumerate(waiting_on) if n == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(events[i])
        for j in unlocks[i]:
            waiting_on[j] -= 1
            if waiting_on[j] == 0:
                heapq.heappush(ready, (priority[j], j))
    assert len(out) == len(events), "the event DAG has a cycle or a dependency outside the set"
    return out


def batches(events: list, cuts: list[int]) -> list[list]:
    """`events` split at the positions in `cuts`."""
    edges = [0, *sorted({c for c in cuts if 0 < c < len(events)}), len(events)]
    return [events[a:b] for a, b in zip(edges, edges[1:])]


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
