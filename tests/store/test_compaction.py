"""Compaction (issue 6): snapshots, causal stability, truncation, bootstrap, and the views staying equal
to a full replay of the log taken before truncation. Real stores; devices meet by `ingest`."""

from __future__ import annotations

import json
import shutil

import pytest

from agentlog.errors import SnapshotError
from agentlog.log import payloads, snapshot
from agentlog.store import compaction
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.family import DAY, HOUR, SETTINGS, new_device, observe_days


def digests(store: Store) -> dict[str, bytes]:
    return {name: v["digest"] for name, v in store.views().items()}


def full_replay(store: Store, tmp_path, name: str) -> dict[str, bytes]:
    """The digests of a fresh full replay of a copy of `store`'s log as it is now."""
    copy = tmp_path / name
    shutil.copytree(store.path, copy)
    with Store(copy, None) as other:
        other.rebuild_views()
        return digests(other)


def test_compaction_keeps_the_views_of_a_full_replay_and_drops_what_everyone_has_seen(family, tmp_path):
    f = family
    observe_days(f, 20)
    before_events = f.laptop.count()
    sid, stable, silent = compaction.write_snapshot(f.laptop, now_ms=f.now)
    replayed = full_replay(f.laptop, tmp_path, "replay-before-truncation")
    assert digests(f.laptop) == replayed
    dropped = compaction.truncate(f.laptop)
    assert dropped > 0.9 * before_events and f.laptop.count() == before_events + 1 - dropped
    assert digests(f.laptop) == replayed
    assert set(stable) == {f.laptop.device, f.phone.device} and silent == []
    f.laptop.rebuild_views()
    assert digests(f.laptop) == replayed
    assert verify_store(f.laptop, jobs=1).ok
    assert f.laptop.truncated()[f.phone.device].seq == stable[f.phone.device][1]


def test_a_device_that_never_compacted_folds_the_snapshot_to_the_same_views(family, tmp_path):
    f = family
    observe_days(f, 15)
    compaction.compact(f.laptop, now_ms=f.now)
    f.sync(f.laptop, f.phone)
    assert digests(f.phone) == digests(f.laptop)
    assert full_replay(f.phone, tmp_path, "phone-replay") == digests(f.laptop)
    with f.laptop.raw_txn() as txn:
        evidence = [ev for name in SETTINGS for ev in f.laptop.pref_view.evidence_of(txn, name)]
    summaries = [ev for ev in evidence if ev.kind == "summary"]
    assert summaries and all(ev.eff % DAY == 0 for ev in summaries)


def test_a_device_behind_catches_up_from_a_compacted_one_and_they_converge(family):
    f = family
    observe_days(f, 10)
    for _i in range(30):                        # the phone is offline while the laptop learns on
        f.laptop.append(payloads.Observation(setting="s1", value="b", weight_milli=1000))
        f.later(HOUR)
    f.phone.append(payloads.Observation(setting="s2", value="c", weight_milli=1000))
    report = compaction.compact(f.laptop, now_ms=f.now)
    assert report.dropped > 0
    f.meet()
    assert digests(f.phone) == digests(f.laptop)
    assert f.phone.prefs.get("s1").to_json() == f.laptop.prefs.get("s1").to_json()


def test_a_new_device_bootstraps_from_the_snapshot_and_keeps_up(family):
    f = family
    observe_days(f, 12)
    compaction.compact(f.laptop, now_ms=f.now)
    hub = new_device(f, "hub")
    try:
        compaction.bootstrap(hub, compaction.base_bundle(f.laptop))
        f.sync(f.laptop, hub)
        assert digests(hub) == digests(f.laptop)
        assert hub.count() < 10 and verify_store(hub, jobs=1).ok
        hub.append(payloads.Observation(setting="s3", value="a", weight_milli=1000))
        f.phone.append(payloads.Observation(setting="s3", value="b", weight_milli=1000))
        for a, b in [(hub, f.laptop), (f.phone, f.laptop), (f.laptop, hub), (f.laptop, f.phone)]:
            f.sync(a, b)
        assert digests(hub) == digests(f.laptop) == digests(f.phone)
    finally:
        hub.close()


def test_a_correction_of_a_compacted_decision_still_counts(family):
    f = family
    decision = f.laptop.prefs.decide("s0", "a", confidence=0.9)
    observe_days(f, 5)
    compaction.compact(f.laptop, now_ms=f.now)
    assert f.laptop.get(decision) is None
    correction = f.phone.prefs.correct(decision, "c")
    f.meet()
    assert digests(f.phone) == digests(f.laptop)
    counted = f.laptop.prefs.explain("s0", limit=1000).contributions
    assert [c.eid for c in counted if c.kind == "correction"] == [correction] * 2


def test_forget_and_a_half_life_change_after_compaction_agree_with_an_uncompacted_device(family):
    f = family
    observe_days(f, 10)
    compaction.compact(f.laptop, now_ms=f.now)
    f.sync(f.laptop, f.phone)
    f.phone.prefs.forget("s1")
    f.phone.prefs.configure("s2", half_life_ms=3 * DAY)
    f.meet()
    assert digests(f.phone) == digests(f.laptop)
    assert f.laptop.prefs.get("s1").value is None


def tampered(bundle: snapshot.Bundle, **change) -> snapshot.Bundle:
    return snapshot.Bundle(change.get("record", bundle.record), change.get("payload", bundle.payload),
                           {**bundle.states, **change.get("states", {})})


@pytest.mark.parametrize("case", ["state byte", "state truncated", "view missing", "signature", "payload"])
def test_a_bad_snapshot_is_refused_whole(family, case):
    f = family
    observe_days(f, 4)
    compaction.compact(f.laptop, now_ms=f.now)
    bundle = compaction.base_bundle(f.laptop)
    pref = bundle.states["pref"]
    bad = {
        "state byte": lambda: tampered(bundle, states={"pref": pref[:-1] + bytes([pref[-1] ^ 1])}),
        "state truncated": lambda: tampered(bundle, states={"pref": pref[:-10]}),
        "view missing": lambda: snapshot.Bundle(bundle.record, bundle.payload, {"roster": bundle.states["roster"]}),
        "signature": lambda: tampered(bundle, record=bundle.record[:-1] + bytes([bundle.record[-1] ^ 1])),
        "payload": lambda: tampered(bundle, payload=bundle.payload[:-1] + bytes([bundle.payload[-1] ^ 1])),
    }[case]()
    hub = new_device(f, "hub")
    try:
        before = (digests(hub), hub.heads(), hub.truncated())
        with pytest.raises(SnapshotError):
            compaction.bootstrap(hub, bad)
        assert (digests(hub), hub.heads(), hub.truncated()) == before
    finally:
        hub.close()


def test_a_snapshot_by_a_device_this_one_does_not_know_is_refused(family, tmp_path):
    f = family
    observe_days(f, 3)
    compaction.compact(f.phone, now_ms=f.now)        # the phone, not the hub's enroller nor the founder
    hub = new_device(f, "hub")
    try:
        with pytest.raises(SnapshotError, match="trusts"):
            compaction.bootstrap(hub, compaction.base_bundle(f.phone))
        assert hub.truncated() == {}
    finally:
        hub.close()


def test_a_silent_device_holds_truncation_back_until_the_horizon(family):
    f = family
    hub = f.hub()
    observe_days(f, 3)                               # the hub writes nothing: it acknowledges nothing
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=30 * DAY)
    assert report.dropped == 0 and report.silent == []
    observe_days(f, 31)
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=30 * DAY)
    assert report.silent == [hub.device] and report.dropped > 0


def test_verify_names_a_truncation_point_that_the_log_does_not_continue(family):
    f = family
    observe_days(f, 4)
    compaction.compact(f.laptop, now_ms=f.now)
    cut = f.laptop.truncated()[f.phone.device]
    with f.laptop.raw_txn(write=True) as txn:
        raw = bytearray(txn.get(f.phone.device, db=f.laptop.db("truncated")))
        raw[12] ^= 1                                 # the id the next event must link to
        txn.put(f.phone.device, bytes(raw), db=f.laptop.db("truncated"))
    problems = [p for p in verify_store(f.laptop, jobs=1).problems if p.author == f.phone.device]
    assert problems and any("truncation point" in p.what for p in problems)
    assert cut.seq in {p.seq for p in problems} or cut.seq + 1 in {p.seq for p in problems}


def test_an_event_below_a_truncation_point_arriving_again_is_a_duplicate(family):
    f = family
    observe_days(f, 4)
    old = [(e.record, e.payload) for e in f.phone.events(f.phone.device)][:5]
    compaction.compact(f.laptop, now_ms=f.now)
    before = digests(f.laptop)
    result = f.laptop.ingest(old)
    assert (result.accepted, result.duplicates) == (0, 5) and digests(f.laptop) == before


def test_agentlog_compact_reports_and_refuses_a_bad_horizon(tmp_path):
    from tests.helpers.cli import run

    home = tmp_path / "home"
    run(home, "init", "--name", "laptop")
    for value in ("dark", "dark", "light"):
        run(home, "observe", "ui.theme", value)
    doc = json.loads(run(home, "compact", "--json").stdout)
    assert doc["events_before"] == 4 and doc["dropped"] == 4 and doc["events_after"] == 1 and doc["snapshot"]
    assert json.loads(run(home, "compact", "--json").stdout)["snapshot"] is None
    assert "0 problems" in run(home, "verify").stderr
    assert "dark" in run(home, "pref", "get", "ui.theme").stdout
    status = json.loads(run(home, "status", "--json").stdout)["compaction"]
    assert status["snapshot"] == doc["snapshot"] and status["truncated"] == {"laptop": 4}
    assert f"compacted: snapshot {doc['snapshot'][:16]}; dropped laptop to seq 4" in run(home, "status").stdout
    bad = run(home, "compact", "--horizon", "0", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--horizon" in bad.stderr



def test_explain_names_a_snapshot_summary_with_its_day_and_event_count(family):
    from agentlog.documents import contribution

    f = family
    observe_days(f, 8)
    compaction.compact(f.laptop, now_ms=f.now)
    explained = f.laptop.prefs.explain("s0", limit=1000)
    summaries = [c for c in explained.contributions if c.kind == "summary"]
    assert summaries and all(c.effective_ms % DAY == 0 and c.time_ms >= 1 for c in summaries)
    shown = contribution(summaries[0], f.laptop.roster())
    assert shown["author"] == "(summary)" and shown["events"] == summaries[0].time_ms
    assert shown["time"].endswith("00:00:00Z") or "T00:00" in shown["time"]


def test_a_device_back_after_the_horizon_bootstraps_and_its_offline_events_count(family):
    f = family
    hub = f.hub()
    hub.append(payloads.Observation(setting="s0", value="a", weight_milli=1000))
    f.meet()
    hub_had = hub.frontier()
    observe_days(f, 35, devices_=[f.laptop, f.phone])       # the hub is away (meet() below skips it)
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=30 * DAY)
    assert report.silent == [hub.device] and report.dropped > 0
    offline = hub.append(payloads.Observation(setting="s5", value="c", weight_milli=5000))
    f.laptop.ingest([(e.record, e.payload) for e in hub.events_after(f.laptop.frontier())])
    assert f.laptop.get(offline) is not None
    assert compaction.compact(f.laptop, now_ms=f.now, horizon_ms=30 * DAY).snapshot is not None
    assert any(hub_had.get(a, 0) < cut.seq for a, cut in f.laptop.truncated().items())
    compaction.bootstrap(hub, compaction.base_bundle(f.laptop))
    f.sync(f.laptop, hub)
    f.sync(f.laptop, f.phone)
    assert digests(hub) == digests(f.laptop) == digests(f.phone)
    assert hub.get(offline) is not None and verify_store(hub, jobs=1).ok



def test_this_device_can_still_correct_a_decision_whose_event_compaction_dropped(family):
    f = family
    decision = f.laptop.prefs.decide("s4", "a", confidence=1.0)
    observe_days(f, 4)
    compaction.compact(f.laptop, now_ms=f.now)
    assert f.laptop.get(decision) is None and f.laptop.decision(decision).value == "a"
    correction = f.laptop.prefs.correct(decision, "c")
    f.meet()
    assert digests(f.phone) == digests(f.laptop)
    counted = f.laptop.prefs.explain("s4", limit=1000).contributions
    assert [c.eid for c in counted if c.kind == "correction"] == [correction] * 2


async def test_serve_compacts_on_its_own_once_the_policy_is_due(family):
    import trio

    from agentlog.sync.serve import compact_when_due

    f = family
    observe_days(f, 3)
    policy = compaction.Policy(events=f.laptop.count() + 5, bytes=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(compact_when_due, f.laptop, policy, 0.01)
        await trio.sleep(0.2)
        assert f.laptop.meta("base") is None                 # not due yet: fewer events than the policy's count
        for _ in range(5):
            f.laptop.append(payloads.Observation(setting="s0", value="a", weight_milli=1000))
        with trio.fail_after(20):
            while f.laptop.meta("base") is None:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert f.laptop.truncated() and verify_store(f.laptop, jobs=1).ok


def test_snapshot_view_databases_are_the_views_digested_ones():
    from agentlog.memory import view as memory_view
    from agentlog.prefs import view as pref_view
    assert snapshot.VIEW_DBS["pref"] == pref_view.DBS[: len(snapshot.VIEW_DBS["pref"])] == pref_view.DBS[:6]
    assert snapshot.VIEW_DBS["memory"] == memory_view.DBS[: len(snapshot.VIEW_DBS["memory"])] == memory_view.DBS[:4]
