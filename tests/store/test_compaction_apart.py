"""Devices apart longer than the compaction horizon, each compacting, meet again and converge
(docs/compaction.md, "The only copy of an event"). Real stores; they meet over the sans-IO protocol."""

from __future__ import annotations

import shutil

import pytest

from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.store import compaction, devices
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.family import DAY, meet, new_device, observe_days
from tests.helpers.links import Link, views

HORIZON = 30 * DAY


def archive_of(store: Store, path) -> Store:
    """A copy of `store` that never compacts: fed every event, it replays the whole log at the end."""
    shutil.copytree(store.path, path)
    return Store(path, None)


def feed(archive: Store, store: Store) -> None:
    archive.ingest([(e.record, e.payload) for e in store.events_after(archive.frontier())])


def write_days(f, stores, days: int, entry: bytes, together: bool) -> None:
    """Each store updates the same memory entry (concurrently: a conflict) and observes, once a day."""
    for day in range(days):
        for i, store in enumerate(stores):
            store.memory.update(entry, content=f"{store.path.name} day {day}")
            store.append(payloads.Observation(setting="s0", value="ab"[i % 2], weight_milli=1000))
        if together:
            meet(f, stores)
        f.later(DAY)


def link(a: Store, b: Store) -> None:
    connection = Link(a, b)
    connection.start()
    connection.run()
    assert connection.closed == []


def test_two_devices_apart_past_the_horizon_both_compact_and_converge(family, tmp_path):
    f = family
    entry = f.laptop.memory.put("the seat by the window", tags=["travel"])
    observe_days(f, 2)
    archive = archive_of(f.laptop, tmp_path / "archive")
    try:
        write_days(f, [f.laptop, f.phone], 35, entry, together=False)
        for store, other in ((f.laptop, f.phone), (f.phone, f.laptop)):
            feed(archive, store)
            report = compaction.compact(store, now_ms=f.now, horizon_ms=HORIZON)
            assert report.silent == [other.device] and report.dropped > 0
            cut = store.truncated()[store.device].seq              # the other holds every own event dropped
            assert cut <= other.frontier()[store.device] and report.unacknowledged > 70
            assert cut + report.unacknowledged == store.frontier()[store.device]
        link(f.laptop, f.phone)
        feed(archive, f.laptop)                              # the snapshot events
        archive.rebuild_views()
        assert views(f.laptop) == views(f.phone) == views(archive)
        assert f.laptop.frontier() == f.phone.frontier()
        assert verify_store(f.laptop, jobs=1).ok and verify_store(f.phone, jobs=1).ok
    finally:
        archive.close()


def test_a_third_device_compacting_alone_past_the_horizon_converges_with_the_others(family, tmp_path):
    f = family
    hub = f.hub()
    entry = f.laptop.memory.put("the seat by the window", tags=["travel"])
    observe_days(f, 2)
    archive = archive_of(f.laptop, tmp_path / "archive")
    try:
        write_days(f, [f.laptop, f.phone], 35, entry, together=True)
        write_days(f, [hub], 3, entry, together=False)       # alone: the others never see these
        feed(archive, f.laptop)
        feed(archive, hub)
        for store in (f.laptop, f.phone):
            assert compaction.compact(store, now_ms=f.now, horizon_ms=HORIZON).silent == [hub.device]
        report = compaction.compact(hub, now_ms=f.now, horizon_ms=HORIZON)
        assert set(report.silent) == {f.laptop.device, f.phone.device}
        assert report.unacknowledged == 3 * 2 + 1                # what it wrote alone, and its snapshot
        assert f.laptop.truncated()[f.laptop.device].seq > hub.frontier()[f.laptop.device]   # it takes a snapshot
        link(hub, f.laptop)
        link(hub, f.phone)
        link(f.laptop, f.phone)
        for store in (f.laptop, f.phone):
            feed(archive, store)
        archive.rebuild_views()
        assert views(hub) == views(f.laptop) == views(f.phone)
        # the hub's clock names laptop events the others dropped, whose times they no longer know: its evidence
        # written alone counts at its own time there, not capped as a full replay caps it ("The horizon rule")
        assert {n: d for n, d in views(hub).items() if n != "pref"} == {n: d for n, d in views(archive).items()
                                                                      if n != "pref"}
        assert hub.frontier() == f.laptop.frontier() == f.phone.frontier()
    finally:
        archive.close()


def test_a_device_keeps_its_own_events_a_read_only_device_never_acknowledged_until_it_is_revoked(family):
    f = family
    observe_days(f, 35, per_day=2, devices_=[f.laptop])      # the phone writes nothing: it acknowledges nothing
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=HORIZON)
    own = f.laptop.frontier()[f.laptop.device]
    assert report.silent == [f.phone.device] and report.dropped == 0
    assert f.laptop.device not in f.laptop.truncated() and report.unacknowledged == own
    devices.revoke(f.laptop, f.phone.device.hex(), "lost")
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=HORIZON)
    assert f.laptop.truncated()[f.laptop.device].seq == own + 1 and report.unacknowledged == 0   # + the revocation


def test_a_device_alone_in_its_group_drops_its_own_events(tmp_path):
    with Store(tmp_path / "solo", DeviceKey.generate()) as store:
        store.create_group("solo")
        for value in "aab":
            store.append(payloads.Observation(setting="s0", value=value, weight_milli=1000))
        report = compaction.compact(store)
        assert report.dropped == 4 and report.unacknowledged == 0 and store.count() == 1



def test_agentlog_compact_says_why_it_kept_its_own_events_and_revoking_the_speaker_lets_them_go(tmp_path, capsys):
    from agentlog.cli.main import main

    def run(*args: str) -> str:
        assert main(["--home", str(tmp_path / "home"), *args]) == 0
        return capsys.readouterr().out

    run("init", "--name", "laptop")
    run("devices", "add", DeviceKey.generate().public.hex(), "--name", "speaker")    # it never writes
    run("observe", "ui.theme", "dark")
    out = run("compact")
    assert "dropped 0 events" in out and "kept 4 own events no other device has acknowledged" in out
    run("devices", "revoke", "speaker")
    out = run("compact")
    assert "dropped 5 events" in out and "acknowledged" not in out



def test_a_device_back_takes_a_snapshot_past_a_head_the_peer_still_holds_when_it_needs_it_anyway(family):
    f = family
    hub = f.hub()
    observe_days(f, 2)                                       # the hub holds it all and writes nothing
    f.later(2 * DAY)
    f.phone.append(payloads.Observation(setting="s0", value="a", weight_milli=1000))
    f.sync(f.phone, f.laptop)
    f.laptop.append(payloads.Observation(setting="s0", value="b", weight_milli=1000))   # the phone never saw it
    assert compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY).silent == [hub.device]
    cut, held = f.laptop.truncated(), hub.frontier()
    assert cut[f.phone.device].seq > held[f.phone.device]                       # the hub needs the snapshot
    assert cut[f.laptop.device].seq <= held[f.laptop.device] < f.laptop.frontier()[f.laptop.device]
    link(f.laptop, hub)
    assert views(hub) == views(f.laptop) and hub.frontier() == f.laptop.frontier()
    assert verify_store(hub, jobs=1).ok

@pytest.mark.xfail(strict=True, reason="known gap (docs/compaction.md, Known limits): a device started from a "
                   "snapshot lacks the times of the events between its stable frontier and its frontier")
def test_a_device_started_from_a_snapshot_folds_a_later_event_naming_a_covered_one_as_its_peers_do(family):
    f = family
    observe_days(f, 3)
    for _ in range(5):
        f.laptop.append(payloads.Observation(setting="s1", value="a", weight_milli=1000))
        f.later(DAY // 24)
    f.phone.ingest([(e.record, e.payload) for e in f.laptop.events_after(f.phone.frontier())][:3])
    compaction.compact(f.laptop, now_ms=f.now)              # its frontier passes what the phone holds
    tablet = new_device(f, "tablet")
    try:
        link(f.laptop, tablet)
        assert tablet.truncated()[f.laptop.device].seq > f.phone.frontier()[f.laptop.device]
        f.later(3 * DAY)
        f.phone.append(payloads.Observation(setting="s1", value="b", weight_milli=1000))   # its clock names one
        link(f.phone, f.laptop)
        link(f.phone, tablet)
        assert tablet.frontier() == f.laptop.frontier()
        assert views(tablet) == views(f.laptop)
    finally:
        tablet.close()
