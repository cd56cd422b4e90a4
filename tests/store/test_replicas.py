"""Stateful property test: three devices append, exchange events in any order hypothesis
draws, and always converge to the same verified log and the same roster."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agentlog.errors import EventError
from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.store.verify import verify_store

NAMES = ("laptop", "phone", "hub")


def digest(store) -> str:
    """Digest of the event set and the roster view."""
    h = hashlib.blake2b()
    for event in store.events():
        h.update(event.record + (event.payload or b""))
    h.update(store.roster().to_bytes())
    return h.hexdigest()


class Replicas(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="agentlog-replicas-"))
        laptop = home.create(self.tmp / "laptop", "laptop")
        laptop.create_group("laptop")
        self.stores = {"laptop": laptop}
        for name in NAMES[1:]:
            store = home.create(self.tmp / name, name)
            devices.join(store, devices.enroll(laptop, store.device, name))
            self.stores[name] = store
        self.written = 0

    def teardown(self):
        for store in self.stores.values():
            store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def missing(self, src, dst):
        return src.events_after(dst.frontier())

    @rule(
        name=st.sampled_from(NAMES), values=st.lists(st.sampled_from(["dark", "light", "auto"]), min_size=1, max_size=4)
    )
    def append(self, name, values):
        store = self.stores[name]
        if name != "laptop" and store.count() == 0:
            self.exchange("laptop", name)
        store.append_many([payloads.Observation(setting="theme", value=v) for v in values])
        self.written += len(values)

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def exchange(self, src, dst):
        if src != dst:
            self.stores[dst].ingest([(e.record, e.payload) for e in self.missing(self.stores[src], self.stores[dst])])

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES), data=st.data())
    def exchange_in_any_order(self, src, dst, data):
        """A batch in a drawn order is accepted whole, or refused whole leaving the store as it was."""
        if src == dst:
            return
        events = self.missing(self.stores[src], self.stores[dst])
        order = data.draw(st.permutations(events))
        before = digest(self.stores[dst])
        try:
            self.stores[dst].ingest([(e.record, e.payload) for e in order])
        except EventError:
            assert digest(self.stores[dst]) == before

    @precondition(lambda self: self.written > 0)
    @rule()
    def full_mesh_converges(self):
        for _ in range(2):
            for src in NAMES:
                for dst in NAMES:
                    self.exchange(src, dst)
        digests = {digest(s) for s in self.stores.values()}
        assert len(digests) == 1
        for store in self.stores.values():
            assert verify_store(store).ok

    @invariant()
    def heads_match_chains(self):
        for store in self.stores.values():
            for author, head in store.heads().items():
                assert head.seq == sum(1 for _ in store.events(author))


TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)
