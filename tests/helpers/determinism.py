"""Three devices writing preference events on skewed clocks, and the causal orders an observer may get them in."""

from __future__ import annotations

import hashlib
import heapq
from pathlib import Path

from hypothesis import event

from agentlog.crypto import DeviceKey
from agentlog.errors import InvalidValueError
from agentlog.log import payloads
from agentlog.store import compaction, devices
from agentlog.store.store import Store

HOUR = 3_600_000
DAY = 24 * HOUR
YEAR = 365 * DAY
START = 1_750_000_000_000
NAMES = ("laptop", "phone", "hub")


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
                prefs.forget(args[1], erase=len(args) > 2 and args[2])
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
