"""agentlog replay on a compacted store: it starts from the base snapshot's state and folds the held events
after its frontier; every point at or after the snapshot gives the digests the device had then, and a
point before it is refused in one line naming the snapshot."""

from __future__ import annotations

import json
import random

import pytest

from agentlog.errors import UsageError
from agentlog.replay.history import memory_history, setting_history
from agentlog.store import compaction, devices, home
from agentlog.store.keyring import Keyring
from agentlog.store.scratch import LiveLog, Point, replay
from tests.helpers.bootstrap import close_health, health_family, write_days
from tests.helpers.replay import Clock, agentlog, device, digests, files_digest, sync, write_something

DAY = 86_400_000


def meet(stores) -> None:
    for _ in range(2):
        for a in stores:
            for b in stores:
                if a is not b:
                    sync(a, b)


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    """A laptop and a phone (clock 3 s ahead) write for 12 days, meeting daily; the laptop compacts, then
    both write and sync for 5 steps, the laptop compacts again, and 7 more steps follow. Returns the
    homes, the laptop's moments (its clock's time, digests) after each step since the first compaction,
    its final digests, the two snapshots' times and the first compaction's report."""
    tmp = tmp_path_factory.mktemp("replay-compacted")
    clock, rng = Clock(), random.Random(11)
    laptop, phone = device(tmp, "laptop", clock.of(0)), device(tmp, "phone", clock.of(3_000))
    laptop.create_group("laptop")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)
    mine: dict[str, dict] = {"laptop": {}, "phone": {}}
    for _ in range(12):
        for _ in range(6):
            clock.now += DAY // 6
            for name, store in (("laptop", laptop), ("phone", phone)):
                write_something(store, rng, mine[name])
        meet([laptop, phone])
    clock.now += 60_000
    entry = laptop.memory.list()[0].id                # written before the snapshots: the base holds it
    report = compaction.compact(laptop, now_ms=clock.now)
    snapshots = [clock.now]
    moments = [(clock.now, digests(laptop))]
    for step in range(12):
        if step == 5:
            clock.now += 60_000
            compaction.compact(laptop, now_ms=clock.now)
            snapshots.append(clock.now)
            moments.append((clock.now, digests(laptop)))
        clock.now += 3_600_000
        for name, store in (("laptop", laptop), ("phone", phone)):
            for _ in range(rng.randrange(1, 4)):
                write_something(store, rng, mine[name])
        if step % 3 != 2:                          # some steps the phone's events wait on the phone
            sync(phone, laptop)
        sync(laptop, phone)
        moments.append((clock.now, digests(laptop)))
    final = digests(laptop)
    laptop.close()
    phone.close()
    return {"tmp": tmp, "moments": moments, "final": final, "snapshots": snapshots, "report": report,
            "entry": entry}


def path_of(compacted):
    return compacted["tmp"] / "laptop" / home.STORE_DIR


def test_replay_until_each_moment_after_the_snapshot_equals_the_digests_the_device_had(compacted):
    assert compacted["report"].dropped > 0
    with LiveLog(path_of(compacted)) as live:
        assert live.truncated and live.base is not None
        log = live.read()
        assert log.base.time_ms == compacted["snapshots"][1]            # the newest snapshot is the base
        checked = 0
        for at, expected in compacted["moments"]:
            if at >= compacted["snapshots"][1]:
                done, _ = replay(live, Point(until=at), log)
                assert done.base and {v: d["digest"] for v, d in done.views.items()} == expected, at
                checked += 1
        assert checked == 8
        everything, _ = replay(live, Point(), log)
        assert {v: d["digest"] for v, d in everything.views.items()} == compacted["final"]
        assert everything.events == len(log.order) < len(log.events)     # some held events are covered: not folded


def test_a_point_before_the_snapshot_is_refused_naming_it(compacted):
    first, second = compacted["snapshots"]
    with LiveLog(path_of(compacted)) as live:
        log = live.read()
        for until in (first, second - 1):
            with pytest.raises(UsageError, match=r"is before the compaction snapshot laptop:\d+ \([0-9a-f]{12}\) of "):
                replay(live, Point(until=until, text=str(until)), log)
        with pytest.raises(UsageError, match="at or below the frontier of the compaction snapshot"):
            replay(live, Point(at=(live.device, 1), text="laptop:1"), log)
        at = log.events[log.order[0]]
        done, _ = replay(live, Point(at=(at.author, at.seq), text="first"), log)
        assert done.events == 1


def test_histories_start_from_the_snapshot(compacted):
    with LiveLog(path_of(compacted)) as live:
        log = live.read()
        steps = setting_history(log, Point(), "ui.theme", live.device)
        assert steps[0].start and steps[0].event.eid == log.base.sid and steps[0].arrival == log.base.time_ms
        assert steps[0].state["source"] != "default" and all(not s.start for s in steps[1:])
        memory = memory_history(log, Point(), compacted["entry"])
        assert memory[0].start and memory[0].state["exists"]
        with pytest.raises(UsageError, match="before the compaction snapshot"):
            setting_history(log, Point(until=compacted["snapshots"][0]), "ui.theme", live.device)


def test_the_command_replays_a_compacted_store_and_refuses_an_earlier_point_in_one_line(compacted):
    home_dir, path = compacted["tmp"] / "laptop", path_of(compacted)
    before = files_digest(path)
    done = agentlog("--home", str(home_dir), "replay", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["same_as_live"] is True and doc["from_snapshot"].startswith("the compaction snapshot laptop:")
    done = agentlog("--home", str(home_dir), "replay", "--setting", "ui.theme", "--every")
    assert done.returncode == 0 and done.stdout.splitlines()[1].startswith("* from the compaction snapshot laptop:")
    for args in (("--until", str(compacted["snapshots"][0])), ("--at", "laptop:1"),
                 ("--diff", str(compacted["snapshots"][0]), str(compacted["moments"][-1][0]))):
        done = agentlog("--home", str(home_dir), "replay", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "the compaction snapshot laptop:" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr
    assert files_digest(path) == before


def test_a_device_bootstrapped_from_a_snapshot_replays_from_it(tmp_path):
    """The hub starts from the laptop's snapshot (its log holds only what came after), then writes and
    syncs: a replay --until each later moment, and of everything, gives the hub's digests then."""
    clock, rng = Clock(), random.Random(3)
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    mine: dict = {}
    for _ in range(30):
        clock.now += DAY // 10
        write_something(laptop, rng, mine)
    compaction.compact(laptop, now_ms=clock.now)
    mine = {}                                   # its decisions' events are gone: Preferences.correct needs them
    hub = device(tmp_path, "hub", clock.of(-2_000))
    devices.join(hub, devices.enroll(laptop, hub.device, "hub"))
    compaction.bootstrap(hub, compaction.base_bundle(laptop))
    sync(laptop, hub)
    moments, hub_mine = [], {}
    for _ in range(5):
        clock.now += 3_600_000
        write_something(hub, rng, hub_mine)
        write_something(laptop, rng, mine)
        sync(laptop, hub)
        sync(hub, laptop)
        moments.append((clock.now - 2_000, digests(hub)))
    final = digests(hub)
    laptop.close()
    hub.close()
    with LiveLog(tmp_path / "hub" / home.STORE_DIR) as live:
        log = live.read()
        assert log.base is not None and len(log.events) < 20
        for at, expected in moments:
            done, _ = replay(live, Point(until=at), log)
            assert {v: d["digest"] for v, d in done.views.items()} == expected, at
        done, _ = replay(live, Point(), log)
        assert {v: d["digest"] for v, d in done.views.items()} == final


def test_a_store_that_keeps_sealed_events_replays_and_explains_from_its_snapshot(tmp_path):
    """A reader's compacted store in a group with a sealed scope: a replay folds the kept sealed events on the
    snapshot's state and gives the live digests; the history of a sealed setting ends at the live answer."""
    f = health_family(tmp_path)
    write_days(f, 3)
    compaction.compact(f.laptop, now_ms=f.now, horizon_ms=DAY)
    views = {n: v["digest"] for n, v in f.laptop.views().items()}
    answer, key = f.laptop.prefs.get("diet").value, f.laptop.key
    close_health(f)
    with LiveLog(tmp_path / "laptop", keyring=Keyring(key)) as live:
        log = live.read()
        assert log.base is not None and log.base.kept
        done, _ = replay(live, Point(), log)
        assert {n: v["digest"] for n, v in done.views.items()} == views
        steps = setting_history(log, Point(), "diet", live.device)
        assert steps[0].start and steps[-1].state["value"] == answer
