"""Bootstrap over the real protocol: devices on 127.0.0.1 sockets (OS-chosen ports), one side serving with
the Replicator, the other running `sync_once`. A device that lacks events its peer truncated starts from
the peer's snapshot; one that lacks nothing truncated catches up event by event; a tampered snapshot is
refused and leaves the store as it was."""

from __future__ import annotations

import os

import pytest
import structlog

from agentlog.errors import PeerError
from agentlog.log import payloads
from agentlog.store import compaction
from agentlog.sync import net
from agentlog.sync.peer_log import StoreLog
from tests.helpers.bootstrap import compacted, digests, newcomer, over_socket, write
from tests.helpers.family import DAY


def state(store) -> dict:
    """Everything a failed bootstrap must leave as it was."""
    return {"count": store.count(), "frontier": store.frontier(), "views": digests(store),
            "truncated": store.truncated(), "base": store.meta("base")}


def test_a_new_device_bootstraps_from_the_snapshot_and_then_converges(family):
    f = family
    f.laptop.append_many([payloads.MemoryPut(entry=os.urandom(16), type="fact", content=os.urandom(7000).hex())
                          for _ in range(400)])     # a memory view's state of several frames: it goes in chunks
    held = compacted(f)
    assert len(compaction.base_bundle(f.laptop).states["memory"]) > net.MAX_FRAME
    hub = newcomer(f)
    progress = []
    result = over_socket(f.laptop, hub, snapshot_progress=lambda done, total: progress.append((done, total)))
    assert result.bootstrapped and result.synced and not result.error
    assert hub.count() < held // 10 and hub.count() <= f.laptop.count()
    assert digests(hub) == digests(f.laptop)
    assert hub.frontier() == f.laptop.frontier()
    assert len(progress) > 5 and progress[-1][0] == progress[-1][1] > net.MAX_FRAME
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    # Everyone writes on: the hub's events reach the laptop, the phone's reach the hub through it.
    write(f, hub, 5, "h")
    write(f, f.phone, 5, "p")
    write(f, f.laptop, 5, "l")
    assert not over_socket(f.laptop, hub).bootstrapped
    assert not over_socket(f.laptop, f.phone).bootstrapped
    assert not over_socket(f.laptop, hub).bootstrapped
    assert digests(hub) == digests(f.laptop) == digests(f.phone)
    assert hub.frontier() == f.laptop.frontier() == f.phone.frontier()


def test_a_device_behind_within_the_stable_frontier_catches_up_without_a_snapshot(family):
    f = family
    compacted(f)
    cuts = f.laptop.truncated()
    write(f, f.laptop, 30, "l")              # the phone has not seen these; nothing it lacks was truncated
    assert all(f.phone.frontier()[a] >= h.seq for a, h in cuts.items())
    before = f.phone.count()
    result = over_socket(f.laptop, f.phone)
    assert not result.bootstrapped and result.received >= 31
    assert f.phone.truncated() == {} and f.phone.count() == before + result.received
    assert digests(f.phone) == digests(f.laptop) and f.phone.frontier() == f.laptop.frontier()


def test_a_device_back_after_the_horizon_bootstraps_and_its_offline_events_reach_the_others(family):
    f = family
    away = f.hub()
    write(f, away, 10, "a")
    f.meet()
    f.later(31 * DAY)                         # the hub goes silent past the horizon
    for _ in range(2):
        write(f, f.laptop, 30, "l")
        write(f, f.phone, 30, "p")
        f.sync(f.laptop, f.phone)
        f.sync(f.phone, f.laptop)
    report = compaction.compact(f.laptop, now_ms=f.now)
    assert away.device in report.silent
    assert f.laptop.truncated()[f.laptop.device].seq > away.frontier()[f.laptop.device]
    write(f, away, 6, "a")                    # written offline, never sent
    offline = away.frontier()[away.device]
    result = over_socket(f.laptop, away)
    assert result.bootstrapped and result.sent >= 7
    assert f.laptop.frontier()[away.device] == offline == away.frontier()[away.device]
    assert not over_socket(f.laptop, f.phone).bootstrapped
    assert f.phone.frontier()[away.device] == offline
    assert digests(away) == digests(f.laptop) == digests(f.phone)
    assert away.frontier() == f.laptop.frontier() == f.phone.frontier()


def test_a_tampered_snapshot_is_refused_and_the_store_is_unchanged(family, monkeypatch):
    f = family
    compacted(f)
    hub = newcomer(f)
    before = state(hub)
    honest = StoreLog.snapshot

    def tampered(self):
        record, payload, states = honest(self)
        memory = bytearray(states["memory"])
        memory[len(memory) // 2] ^= 1
        return record, payload, {**states, "memory": bytes(memory)}

    monkeypatch.setattr(StoreLog, "snapshot", tampered)
    with structlog.testing.capture_logs() as logs, pytest.raises(PeerError) as refused:
        over_socket(f.laptop, hub)
    assert "snapshot refused" in str(refused.value) and "memory view" in str(refused.value)
    reasons = [e["reason"] for e in logs if e.get("event") == "connection closed" and e["log_level"] == "warning"]
    assert any("snapshot refused" in r and "signed digest" in r for r in reasons), logs
    assert state(hub) == before
    monkeypatch.undo()                        # an honest peer is still taken
    assert over_socket(f.laptop, hub).bootstrapped
    assert digests(hub) == digests(f.laptop)
