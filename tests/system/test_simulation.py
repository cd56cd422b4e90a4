"""Deterministic simulation of replication (tools/simulate.py): faults from a seed, then convergence.

Each seed runs three devices with real stores and replicators over simulated streams
under a mock clock, through random partitions, dropped and cut connections, delays,
crashes and store reopens while the devices write, then heals the network and checks
that every device holds every event with the same view digests as a rebuild from the
log. A failing seed names itself and the command that replays it exactly.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import structlog

from agentlog.prefs import reducer as pr
from agentlog.sync.protocol import Events
from tests.helpers.links import Link
from tests.helpers.paths import REPO
from tests.helpers.pref_index import NOW, MemoryIndex, evidence

SEEDS = 200
CHUNK = 20


def _load_simulate():
    path = REPO / "tools" / "simulate.py"
    spec = importlib.util.spec_from_file_location("simulate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("simulate", module)
    spec.loader.exec_module(module)
    return module


simulate = _load_simulate()


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK), ids=lambda s: f"seeds {s}-{s + CHUNK - 1}")
def test_devices_converge_after_faults(first):
    failures = []
    for seed in range(first, first + CHUNK):
        try:
            result = simulate.run(seed)
        except simulate.SimulationFailure as exc:
            failures.append(str(exc))
            continue
        assert result.events > 3                       # the enrolments, then what the devices wrote
        assert result.stats["writes"] > 0
    assert not failures, "\n".join(failures)


def test_a_seed_replays_exactly():
    first, again = simulate.run(7), simulate.run(7)
    assert first.trace == again.trace
    assert first.stats == again.stats and first.events == again.events
    assert any("crash" in line for line in first.trace)
    assert any("partition" in line for line in first.trace)
    assert simulate.run(8).trace != first.trace


def test_a_seed_that_cuts_writes_replays_exactly():
    """Where a write is cut depends on the size of what is in flight, so on every byte a store put there."""
    runs = [simulate.run(4) for _ in range(3)]
    assert any("drop mid-write" in line for line in runs[0].trace)
    assert runs[1].trace == runs[0].trace and runs[2].trace == runs[0].trace


def test_the_fault_phase_exercises_every_fault():
    """Over a few seeds, every kind of fault happens and devices converge after it."""
    totals: dict[str, int] = {}
    for seed in range(5):
        for name, n in simulate.run(seed).stats.items():
            totals[name] = totals.get(name, 0) + n
    assert all(totals[k] > 0 for k in ("partitions", "drops", "restarts", "reopens", "writes")), totals


def test_devices_that_cannot_converge_fail_naming_the_seed(monkeypatch):
    heal = simulate.Simulation._heal

    async def heal_then_isolate_dev0(self):
        await heal(self)
        self.net.partition({"dev0"}, "reset")
        self.devices[0].store.prefs.observe("theme", "dark")       # an event no other device can get

    monkeypatch.setattr(simulate.Simulation, "_heal", heal_then_isolate_dev0)
    monkeypatch.setattr(simulate, "SETTLE_S", 10.0)
    with pytest.raises(simulate.SimulationFailure, match=r"^seed 2: no convergence .* dev1 holds dev0:(\d+)/") as info:
        simulate.run(2)
    assert "rerun: python tools/simulate.py --seed 2 --devices 3 --verbose" in str(info.value)


def test_a_connection_ended_by_a_protocol_error_is_a_finding():
    trace = simulate.Trace()
    for reason in ("connection ended: connection closed", "partitioned: nothing heard for 3.0 s"):
        with pytest.raises(structlog.DropEvent):
            trace.processor(None, "info", {"event": "connection closed", "reason": reason})
    assert trace.findings == []
    with pytest.raises(structlog.DropEvent):
        trace.processor(None, "warning", {"event": "connection closed", "reason": "seq: batch 1: a gap"})
    assert trace.findings == ["-: connection closed: seq: batch 1: a gap"]
    assert len(trace.lines) == 3


# -- regressions the simulation found, replayed on the sans-IO protocol ------------------------------


def test_events_written_after_hello_wait_for_the_peers_want(laptop, phone):
    """Seed 7: events written between a hello and the peer's want for what the hello announced
    were pushed ahead of the answer to that want, so the peer saw a gap in the author's chain
    and closed the connection with a `seq` error."""
    for _i in range(3):
        laptop.prefs.observe("ui.theme", "dark")
    link = Link(laptop, phone)
    link.start()                                       # laptop's hello announces the three observations
    for _i in range(2):
        laptop.prefs.observe("ui.theme", "light")      # written before the phone's want arrives
    link.run()
    assert link.closed == []
    assert laptop.frontier() == phone.frontier()
    pushed = [m for who, m in link.sent if who == "a" and isinstance(m, Events)]
    assert sum(len(m.events) for m in pushed) == 5     # each event sent once


def test_a_sum_cancelled_by_a_positive_term_is_left_out_of_the_bytes():
    """Seeds 94, 98, 120, 161, 195: a setting stored with a negative sum (a correction against a
    value) met a positive term that cancelled it exactly; the [0, 0] sum stayed in the setting's
    bytes, so that device's preference view differed from its peers' and from a rebuild."""
    against = evidence(1, NOW, weight=-2000, role=1, kind="correction")
    cancelling = evidence(2, NOW, weight=2000)
    index = MemoryIndex()
    stored = pr.Setting("theme")
    stored.add(against, index)
    stored = pr.Setting.from_bytes("theme", stored.to_bytes())
    stored.add(cancelling, index)
    fresh, fresh_index = pr.Setting("theme"), MemoryIndex()
    for ev in (cancelling, against):
        fresh.add(ev, fresh_index)
    assert stored.to_bytes() == fresh.to_bytes()
    assert stored.sums == {}
