"""Compaction in a group with a sealed scope (docs/compaction.md, "Sealed scopes"): the snapshot's state folds
only plain events, the sealed ones and the scope and erase events stay as events beside it, and every device ends
with the views of a full replay: a reader and a non-reader, compacted, replayed, or started from the snapshot; the
non-reader started from it holds no byte of the sealed content. One bootstrap goes over the real protocol on
127.0.0.1, so the kept events' way over the wire is tested too."""

from __future__ import annotations

import pytest

from agentlog.errors import SnapshotError
from agentlog.log import snapshot
from agentlog.store import compaction
from agentlog.store.keyring import rebuild_scopes
from agentlog.store.layout import limits_in
from agentlog.store.verify import verify_store
from tests.helpers.bootstrap import CANARY, close_health, digests, health_family, over_socket, write_days
from tests.helpers.family import DAY
from tests.helpers.scoped import files_holding


@pytest.fixture
def home(tmp_path):
    f = health_family(tmp_path)
    yield f
    close_health(f)


def test_reader_and_non_reader_end_equal_compacted_replayed_and_started_from_the_snapshot(home):
    f = home
    write_days(f, 3)
    before = digests(f.laptop)
    held = f.laptop.count()
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)     # hub and radio: silent since enrolled
    assert report.snapshot is not None and report.dropped > held // 3
    bundle = compaction.base_bundle(f.laptop)
    assert all(CANARY.encode() not in state for state in bundle.states.values())
    kept = snapshot.unpack_retained(bundle.retained)
    assert kept and len(kept) < held - report.dropped + 1

    after = digests(f.laptop)
    f.laptop.rebuild_views()                                  # from the base snapshot plus what it holds
    assert digests(f.laptop) == after
    f.phone.rebuild_views()                                   # a full replay of the whole log, by a reader
    f.sync(f.laptop, f.phone)
    assert digests(f.phone) == digests(f.laptop)
    assert before["roster"] == after["roster"]
    assert f.laptop.scopes.get("health").can_read and verify_store(f.laptop, jobs=1).ok

    compaction.bootstrap(f.hub_, compaction.base_bundle(f.laptop))     # as handed over
    f.sync(f.laptop, f.hub_)
    assert over_socket(f.laptop, f.radio).bootstrapped                # over the replication protocol
    for store in (f.hub_, f.radio):
        assert verify_store(store, jobs=1).ok
    assert digests(f.hub_) == digests(f.laptop)               # the reader folded the kept sealed events
    assert any(CANARY in e.content for e in f.hub_.memory.list())
    assert not any(CANARY in e.content for e in f.radio.memory.list())

    f.sync(f.phone, f.speaker)                                # a non-reader that takes the whole log as events
    f.speaker.rebuild_views()
    assert digests(f.radio) == digests(f.speaker)
    assert digests(f.radio)["pref"] != digests(f.hub_)["pref"]      # not vacuous: the readers' views differ
    assert files_holding(f.tmp / "radio", CANARY) == []           # searched with its store open
    assert files_holding(f.tmp / "hub", CANARY)                # the same search finds it where it may be


def test_a_bundle_that_leaves_out_a_kept_event_is_refused_whole(home):
    f = home
    write_days(f, 2)
    compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    bundle = compaction.base_bundle(f.laptop)
    kept = snapshot.unpack_retained(bundle.retained)
    short = snapshot.Bundle(bundle.record, bundle.payload, bundle.states, snapshot.pack_retained(kept[:-1]))
    frontier = f.radio.frontier()
    with pytest.raises(SnapshotError, match="not the ones it signs"):
        compaction.bootstrap(f.radio, short)
    assert f.radio.frontier() == frontier and f.radio.meta("base") is None


def test_compaction_keeps_the_relay_key_and_the_scope_events(home):
    from agentlog.store import relay

    f = home
    relay.create_scope(f.laptop)
    f.meet()
    keys = dict(relay.keys(f.laptop))
    write_days(f, 2)
    compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    assert f.laptop.truncated()
    f.laptop.write(lambda txn: rebuild_scopes(f.laptop.dbs, txn, limits_in(f.laptop.dbs, txn)))   # from the log
    assert dict(relay.keys(f.laptop)) == keys and f.laptop.scopes.get("health").can_read


def test_a_sealed_entry_erased_before_compaction_reaches_a_new_reader_erased(home):
    f = home
    write_days(f, 2)
    gone = f.laptop.memory.put(f"{CANARY} to forget", scope="health")
    f.laptop.memory.forget(gone)
    f.meet()
    f.later(DAY)
    write_days(f, 1)
    compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    assert f.laptop.erasure_status()["covered"] == 0                 # the snapshot's state never held it
    compaction.bootstrap(f.hub_, compaction.base_bundle(f.laptop))
    f.sync(f.laptop, f.hub_)
    report = verify_store(f.hub_, jobs=1)
    assert report.ok and not report.withheld
    assert digests(f.hub_) == digests(f.laptop)
    assert not any("to forget" in e.content for e in f.hub_.memory.list())
    assert f.hub_.erasure_status()["erased"] >= 1 and files_holding(f.tmp / "hub", "to forget") == []


def test_a_second_compaction_folds_on_from_the_first_and_every_device_still_agrees(home):
    """Also: hub, radio and speaker never wrote, and the first compaction dropped their enrolments; they still
    count as silent past the horizon (by the truncation point's time), so the second one drops events too."""
    f = home
    write_days(f, 2)
    compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    first = compaction.base_bundle(f.laptop)
    write_days(f, 2)
    report = compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    assert report.snapshot is not None and report.dropped > 0
    second = compaction.base_bundle(f.laptop)
    assert len(snapshot.unpack_retained(second.retained)) > len(snapshot.unpack_retained(first.retained))
    f.phone.rebuild_views()
    f.sync(f.laptop, f.phone)
    compaction.bootstrap(f.hub_, second)
    f.sync(f.laptop, f.hub_)
    assert digests(f.hub_) == digests(f.laptop) == digests(f.phone)
    f.laptop.rebuild_views()
    assert digests(f.laptop) == digests(f.phone) and verify_store(f.laptop, jobs=1).ok
