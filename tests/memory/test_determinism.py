"""The memory view is a function of the set of events.

Three devices of one group (one honest clock, one a year ahead, one behind) put, update
(content, type, confidence, tags added and removed, sometimes an embedding of this
home's model or of another), resolve, merge and delete memory entries through the API,
interleaved with syncs between random pairs. A few updates and deletes name an entry
their device does not hold (as a client that learned the id out of band would write
them), so observers meet orphans before their put. Now and then a device forgets an entry
(an erase request with an entry rule, docs/erasure.md): its events fold as if never held.
The union of the events is then delivered to fresh observers in many causally consistent orders and batchings: every
observer's memory digest, every fully synced device and every fresh replay agree byte
for byte, and so do the entries they show.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentlog.crypto import DeviceKey
from agentlog.errors import InvalidValueError
from agentlog.log import payloads
from agentlog.memory import reducer as mr
from agentlog.store import devices
from agentlog.store.store import Store
from tests.helpers.determinism import batches, causal_order

DAY = 24 * 3_600_000
YEAR = 365 * DAY
START = 1_750_000_000_000
NAMES = ("laptop", "phone", "hub")
CONTENTS = ("the user drinks tea", "the user drinks coffee", "standup is at nine", "the cat is called Miso",
            "deploys happen on Fridays", "the build cache is flaky")
TAGS = ("ui", "ops", "health", "work")
CONFIDENCES = (0.0, 0.25, 0.5, 0.9, 1.0)
SCOPES = ("user", "device:work")    # plain: sealed scopes, read by some devices only, are in tests/store/test_scopes.py
EMBEDDINGS = (None, None, "local", "other")
OTHER_DIM = 8
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None    # memory-backed: a store fsyncs every write

device = st.sampled_from(NAMES)
pick = st.integers(0, 3)             # a few entries draw most edits, so concurrent ones meet
TICK = st.tuples(st.just("tick"), st.sampled_from([1_000, 3_600_000, 3 * DAY]))
PUT = st.tuples(st.just("put"), device, st.integers(0, len(CONTENTS) - 1), st.sampled_from(mr.TYPES),
                st.sets(st.sampled_from(TAGS), max_size=2), st.sampled_from(EMBEDDINGS), st.sampled_from(SCOPES))
UPDATE = st.tuples(st.just("update"), device, pick,
                   st.one_of(st.none(), st.integers(0, len(CONTENTS) - 1)),
                   st.one_of(st.none(), st.none(), st.sampled_from(mr.TYPES)),
                   st.one_of(st.none(), st.none(), st.sampled_from(CONFIDENCES)),
                   st.sets(st.sampled_from(TAGS), max_size=2), st.integers(0, 2), st.sampled_from(EMBEDDINGS))
EDIT = st.tuples(st.just("update"), device, pick, st.integers(0, len(CONTENTS) - 1), st.none(), st.none(),
                 st.just(frozenset()), st.just(0), st.none())
RESOLVE = st.tuples(st.just("resolve"), device, pick, st.integers(0, 30))
DELETE = st.tuples(st.just("delete"), device, pick)
MERGE = st.tuples(st.just("merge"), device, pick, pick, st.booleans())
UNHELD = st.tuples(st.just("unheld"), device, pick, st.integers(0, len(CONTENTS) - 1),
                   st.sampled_from([False, False, True]))
FORGET = st.tuples(st.just("forget"), device, pick, st.integers(0, 3))   # acts one time in four: forgetting is rare
SYNC = st.tuples(st.just("sync"), device, device)
OPS = st.one_of(TICK, PUT, PUT, PUT, UPDATE, UPDATE, UPDATE, EDIT, EDIT, RESOLVE, RESOLVE, DELETE, MERGE, UNHELD,
                FORGET, SYNC, SYNC, SYNC)


def sync(src: Store, dst: Store) -> None:
    if src is not dst:
        dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


def digest(store: Store) -> bytes:
    return store.views()["memory"]["digest"]


def embedding_args(kind: str | None, seed: int) -> dict:
    """Keyword arguments for an embedding: none, one of this home's model (384 values) or one of another model."""
    if kind is None:
        return {}
    rng = np.random.default_rng(seed)
    if kind == "local":
        return {"embedding": rng.standard_normal(384).astype(np.float32)}
    return {"embedding": rng.standard_normal(OTHER_DIM).astype(np.float32), "model": "other-model"}


class World:
    """Three enrolled devices whose clocks read a shared simulated time plus their own skew."""

    def __init__(self, tmp: Path, skews: list[int], salt: int):
        self.tmp, self.now, self.salt = tmp, START, salt
        self.stores: dict[str, Store] = {}
        for name, skew in zip(NAMES, skews):
            store = Store(tmp / name, DeviceKey(self._bytes(name, 32)), clock=lambda skew=skew: self.now + skew)
            store.set_meta({"device": store.key.public, "name": name.encode()})
            self.stores[name] = store
        laptop = self.stores["laptop"]
        laptop.create_group("laptop")
        for name in NAMES[1:]:
            devices.join(self.stores[name], devices.enroll(laptop, self.stores[name].device, name))
            sync(laptop, self.stores[name])
        self.entries: list[bytes] = []        # every id put anywhere, in the order put
        self.forgotten: set[bytes] = set()    # entries an erase request forgot (docs/erasure.md)
        self.observers: list[Store] = []
        self.seed = 0
        self.minted = 0

    def _bytes(self, what: str, n: int) -> bytes:
        return hashlib.blake2b(f"{self.salt}:{what}".encode(), digest_size=n).digest()

    def mint(self, n: int) -> bytes:
        """Entry ids from the salt, not os.urandom: a run repeats exactly when hypothesis replays it."""
        self.minted += 1
        return self._bytes(f"entry {self.minted}", n)

    def observer(self) -> Store:
        """A fresh store of the group that writes nothing: it only ingests."""
        laptop = self.stores["laptop"]
        store = Store(self.tmp / f"observer-{len(self.observers)}", None)
        store.set_meta({"group": laptop.group, "founder": laptop.founder, "genesis": laptop.genesis})
        self.observers.append(store)
        return store

    def visible(self, store: Store) -> list[bytes]:
        return sorted(m.id for m in store.memory.list())

    def apply(self, op: tuple) -> None:
        kind, args = op[0], op[1:]
        if kind == "tick":
            self.now += args[0]
            return
        if kind == "sync":
            sync(self.stores[args[0]], self.stores[args[1]])
            return
        store = self.stores[args[0]]
        memory = store.memory
        self.seed += 1
        try:
            if kind == "put":
                _, content, type_, tags, embedding, scope = args
                self.entries.append(memory.put(CONTENTS[content], type=type_, tags=sorted(tags), scope=scope,
                                               confidence=0.5, **embedding_args(embedding, self.seed)))
                event(f"put written{' with an embedding' if embedding else ''}")
                return
            held = self.visible(store)
            if kind == "unheld":
                # Out of band: name an entry this device does not hold, so observers may fold it before its put.
                _, which, content, is_delete = args
                unheld = [e for e in self.entries if e not in held and not self._known(store, e)]
                if not unheld:
                    return
                entry = unheld[which % len(unheld)]
                if is_delete:
                    store.append(payloads.MemoryDelete(entry=entry, reason="out of band"))
                else:
                    store.append(payloads.MemoryUpdate(entry=entry, fields=(payloads.MemoryField(
                        content=CONTENTS[content] + " (unheld)"),), tags_add=("ops",)))
                event(f"unheld {'delete' if is_delete else 'update'} written")
                return
            if kind == "resolve":
                held = sorted(m.id for m in memory.conflicts())
            if not held:
                event(f"{kind}: nothing to {kind}")
                return
            entry = held[args[1] % len(held)]
            if kind == "update":
                _, _, content, type_, confidence, add, n_remove, embedding = args
                current = memory.get(entry).tags
                remove = [t for t in current if t not in add][:n_remove]
                memory.update(entry, content=None if content is None else CONTENTS[content] + f" #{self.seed}",
                              type=type_, confidence=confidence, add_tags=sorted(add), remove_tags=remove,
                              **embedding_args(embedding, self.seed))
            elif kind == "resolve":
                conflicts = memory.get(entry).conflicts
                name = sorted(conflicts)[args[2] % len(conflicts)]
                choice = args[2] % len(mr.TYPES)
                value = {"content": f"settled {self.seed}", "type": mr.TYPES[choice],
                         "confidence": CONFIDENCES[choice % len(CONFIDENCES)],
                         "embedding": conflicts[name][choice % len(conflicts[name])].event.hex()}.get(name)
                memory.resolve(entry, name, value)
                kind = f"resolve {name}"
            elif kind == "delete":
                memory.delete(entry, reason=f"gone {self.seed}")
            elif kind == "merge":
                scope = memory.get(entry).scope
                others = [h for h in held if h != entry and memory.get(h).scope == scope] or [entry]
                other = others[args[2] % len(others)]
                memory.merge(entry, other, content=f"merged {self.seed}" if args[3] else None)
            elif kind == "forget":
                if args[2]:
                    return
                memory.forget(entry, reason=f"erased {self.seed}")
                self.forgotten.add(entry)
        except InvalidValueError:
            event(f"{kind} refused")     # before writing (nothing to update, too many tags)
            return
        event(f"{kind} written")

    @staticmethod
    def _known(store: Store, entry: bytes) -> bool:
        try:
            store.memory.get(entry)
        except InvalidValueError:
            return False
        return True

    def close(self) -> None:
        for store in [*self.stores.values(), *self.observers]:
            store.close()


def pasts_of(events: list) -> dict[tuple, dict]:
    """Each event's whole causal past (author -> newest (epoch, seq) in it, itself included), from the
    headers alone: its author's previous event and the events its clock names, transitively."""
    pasts: dict[tuple, dict] = {}
    for e in events:                                      # lamport order: causes first
        h = e.header
        past = dict(pasts[(h.author, h.epoch, h.seq - 1)]) if h.seq > 1 else {}
        for c in h.clock:
            for author, pos in pasts[(c.author, c.epoch, c.seq)].items():
                past[author] = max(past.get(author, (-1, -1)), pos)
        past[h.author] = (h.epoch, h.seq)
        pasts[(h.author, h.epoch, h.seq)] = past
    return pasts


def by_the_rules(events: list) -> dict[bytes, tuple]:
    """What every device should show, by the rules of docs/memory.md stated naively: a field shows the
    writes no other write of it saw (greatest (lamport, author) first), a tag stands while one of its
    adds was seen by none of its removes, and any delete hides the entry."""
    pasts = pasts_of(events)

    def saw(later: tuple, earlier: tuple) -> bool:
        return later != earlier and pasts[later].get(earlier[0], (-1, -1)) >= earlier[1:]

    writes: dict = {}
    adds: dict = {}
    removes: dict = {}
    deleted, put = set(), set()
    for e in events:
        h = e.header
        if h.kind not in mr.KINDS or e.payload is None:      # erased: folded as if never held
            continue
        p, dot, order = payloads.decode(h.kind, e.payload), (h.author, h.epoch, h.seq), (h.lamport, h.author)
        fields = writes.setdefault(p.entry, {})
        if h.kind == "memory.delete":
            deleted.add(p.entry)
            continue
        if h.kind == "memory.merge":                          # the merged entry deleted; its tags join `into`
            deleted.add(p.entry)
            if p.rewrite:
                writes.setdefault(p.into, {}).setdefault("content", []).append((order, dot, p.rewrite))
            for tag in p.tags:
                adds.setdefault(p.into, {}).setdefault(tag, []).append(dot)
            continue
        if h.kind == "memory.put":
            put.add(p.entry)
            new = {"type": p.type, "content": p.content, "confidence": p.confidence_bp,
                   "embedding": p.embedding.model if p.embedding else None}
            tags_add, tags_remove = p.tags, ()
        else:
            new = {}
            for f in p.fields:
                new.update({name: value for name, value in (("type", f.type), ("content", f.content),
                            ("confidence", f.confidence_bp),
                            ("embedding", f.embedding.model if f.embedding else None)) if value is not None})
            tags_add, tags_remove = p.tags_add, p.tags_remove
        for name, value in new.items():
            if value is not None:
                fields.setdefault(name, []).append((order, dot, value))
        for tag in tags_add:
            adds.setdefault(p.entry, {}).setdefault(tag, []).append(dot)
        for tag in tags_remove:
            removes.setdefault(p.entry, {}).setdefault(tag, []).append(dot)

    out = {}
    for entry in put:
        if entry in deleted:
            out[entry] = ("deleted",)
            continue
        standing = {}
        for name, ws in writes[entry].items():
            kept = sorted((w for w in ws if not any(saw(o[1], w[1]) for o in ws)), reverse=True)
            standing[name] = [w[2] for w in kept]
        tags = tuple(sorted(tag for tag, dots in adds.get(entry, {}).items()
                            if any(not any(saw(r, a) for r in removes.get(entry, {}).get(tag, ())) for a in dots)))
        out[entry] = (standing["type"][0], standing["content"][0], standing["confidence"][0] / 10000,
                      standing.get("embedding", [None])[0], tags,
                      {name: [v / 10000 if name == "confidence" else v for v in vs]
                       for name, vs in sorted(standing.items()) if len(vs) > 1})
    return out


def as_expected(e) -> tuple:
    """A MemoryEntry in the shape `by_the_rules` gives."""
    if e.is_deleted:
        return ("deleted",)
    return (e.type, e.content, e.confidence, e.embedding_model, e.tags,
            {name: [c.value for c in cs] for name, cs in e.conflicts.items()})


def shown(store: Store, entries: list[bytes]) -> list:
    """Everything the memory API shows on `store` about the entries."""
    out = []
    for entry in entries:
        try:
            e = store.memory.get(entry)
        except InvalidValueError:
            out.append((entry, None))          # an entry only named by out-of-band updates
            continue
        found = store.memory.vector(entry)
        out.append((e, None if found is None else (found[0], found[1].tobytes())))
    out.append([m.id for m in store.memory.list()])
    out.append([m.id for m in store.memory.list(deleted=True)])
    out.append([m.id for m in store.memory.conflicts()])
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(OPS, min_size=40, max_size=120), skews=st.permutations([0, YEAR, -45 * DAY]),
       salt=st.integers(0, 2**32), data=st.data())
def test_memory_view_is_a_function_of_the_event_set(ops, skews, salt, data):
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-memdet-", dir=SCRATCH))
    world = World(tmp, skews, salt)
    try:
        with mock.patch("agentlog.memory.api.os", SimpleNamespace(urandom=world.mint)):
            for op in ops:
                world.apply(op)
        for _ in range(2):
            for src in NAMES:
                for dst in NAMES:
                    sync(world.stores[src], world.stores[dst])
        synced = {digest(s) for s in world.stores.values()}
        assert len(synced) == 1, "fully synced devices disagree"
        [expected] = synced
        events = world.stores["laptop"].events_after({})
        n = len(events)
        assert all(s.count() == n for s in world.stores.values())
        memory_events = sum(e.header.kind in mr.KINDS for e in events)
        event(f"memory events: {memory_events // 20 * 20}+")

        reference = shown(world.stores["laptop"], world.entries)
        event(f"entries in conflict at the end: {min(len(reference[-1]), 3)}")
        for name in NAMES[1:]:
            assert shown(world.stores[name], world.entries) == reference, f"{name} shows the entries differently"
        rules = by_the_rules(events)
        assert sorted(rules) == sorted(set(world.entries) - world.forgotten)
        event(f"entries forgotten: {min(len(world.forgotten), 3)}")
        for entry in world.entries:
            if entry in world.forgotten:
                assert (entry, None) in reference, f"forgotten {entry.hex()} still shows"
                continue
            assert as_expected(world.stores["laptop"].memory.get(entry)) == rules[entry], entry.hex()
        assert reference[-1] == sorted(i for i, r in rules.items() if r[0] != "deleted" and r[-1])

        rank = {store.device: i for i, store in enumerate(world.stores.values())}
        plans = [
            ("lamport order, all at once", events, [n]),
            ("lamport order, one at a time", events, list(range(n))),
            ("each author as far as it goes, one at a time",
             causal_order(events, [rank[e.header.author] * n + e.header.seq for e in events]), list(range(n))),
            ("authors the other way round, in a few batches",
             causal_order(events, [-rank[e.header.author] * n + e.header.seq for e in events]), [n // 3, 2 * n // 3]),
        ]
        for i in range(3):
            order = causal_order(events, data.draw(st.permutations(range(n)), label=f"priority {i}"))
            cuts = data.draw(st.one_of(st.just(list(range(n))), st.lists(st.integers(1, n), max_size=8)),
                             label=f"cuts {i}")
            plans.append((f"random order {i}", order, cuts))

        for label, order, cuts in plans:
            observer = world.observer()
            for batch in batches(order, cuts):
                observer.ingest([(e.record, e.payload) for e in batch])
            assert observer.count() == n, label
            assert digest(observer) == expected, label
            assert shown(observer, world.entries) == reference, label

        world.observers[-1].rebuild_views()
        assert digest(world.observers[-1]) == expected, "a fresh replay differs from the incremental view"
        for store in world.stores.values():
            store.rebuild_views()
            assert digest(store) == expected, "a fresh replay on a device differs from its incremental view"
        assert shown(world.stores["hub"], world.entries) == reference
    finally:
        world.close()
        shutil.rmtree(tmp, ignore_errors=True)
