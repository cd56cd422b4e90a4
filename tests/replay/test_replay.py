"""agentlog replay: a scratch replay at a point equals the view the device held then; histories name
the events that changed a setting or a memory; the live store is never written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agentlog.log import payloads
from agentlog.replay.history import memory_history, setting_history
from agentlog.replay.points import parse_time
from agentlog.store import devices, home
from agentlog.store.scratch import LiveLog, Point, replay
from tests.helpers.replay import (
    START,
    VALUES,
    Clock,
    agentlog,
    device,
    digests,
    files_digest,
    sync,
    write_something,
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Three devices write and sync for 14 steps of 10 s; the hub is revoked half way, after it sent the
    phone events past its revocation seq. Returns the homes, each device's skew and, per device, its
    own clock's time and its views' digests after every step (the stores are closed)."""
    tmp = tmp_path_factory.mktemp("replay")
    clock, rng = Clock(), random.Random(5)
    skews = {"laptop": 0, "phone": 4_000, "hub": -2_500}
    stores = {name: device(tmp, name, clock.of(skew)) for name, skew in skews.items()}
    laptop, phone, hub = stores["laptop"], stores["phone"], stores["hub"]
    laptop.create_group("laptop")
    for other in (phone, hub):
        devices.join(other, devices.enroll(laptop, other.device, other.name))
        sync(laptop, other)
    sync(phone, hub)
    mine = {name: {} for name in stores}
    moments: dict[str, list] = {name: [] for name in stores}
    active = ["laptop", "phone", "hub"]
    for step in range(14):
        clock.now += 10_000
        for name in active:
            for _ in range(rng.randrange(1, 4)):
                write_something(stores[name], rng, mine[name])
        if step == 6:
            devices.revoke(laptop, "hub")
            write_something(hub, rng, mine["hub"])
            sync(hub, phone)                      # the phone takes hub events past its revocation seq
            active.remove("hub")
        pairs = [(a, b) for a in active for b in active if a != b]
        for a, b in rng.sample(pairs, k=len(pairs) // 2 + 1):
            sync(stores[a], stores[b])
        for name, store in stores.items():
            moments[name].append((clock.now + skews[name], digests(store)))
    finals = {name: digests(store) for name, store in stores.items()}
    for store in stores.values():
        store.close()
    return {"tmp": tmp, "moments": moments, "finals": finals}


def store_path(scenario, name: str) -> Path:
    return scenario["tmp"] / name / home.STORE_DIR


@pytest.mark.parametrize("name", ["laptop", "phone", "hub"])
def test_replay_until_each_moment_equals_the_digests_the_device_had(scenario, name):
    with LiveLog(store_path(scenario, name)) as live:
        log = live.read()
        assert any(f.kind == "memory.update" and any(x.embedding for x in f.payload.fields) for f in log.events)
        for at, expected in scenario["moments"][name]:
            done, _ = replay(live, Point(until=at), log)
            assert {v: d["digest"] for v, d in done.views.items()} == expected, f"{name} at {at}"
        everything, _ = replay(live, Point(), log)
        assert {v: d["digest"] for v, d in everything.views.items()} == scenario["finals"][name]
        before_start, _ = replay(live, Point(until=START - 10_000), log)
        assert before_start.events == 0


def test_the_phone_held_the_revoked_hubs_late_events_for_a_while(scenario):
    """The point of replaying by arrival: at the revocation step the phone's view differed from the laptop's."""
    phone, laptop = scenario["moments"]["phone"], scenario["moments"]["laptop"]
    assert any(p[1]["pref"] != l_[1]["pref"] or p[1]["memory"] != l_[1]["memory"] for p, l_ in zip(phone, laptop))


def test_replay_at_an_event_equals_the_view_right_after_it(tmp_path):
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    after = {}
    for i in range(6):
        clock.now += 1000
        eid = laptop.prefs.observe("ui.theme", VALUES[i % 2])
        after[laptop.get(eid).header.seq] = digests(laptop)
    laptop.close()
    with LiveLog(tmp_path / "laptop" / home.STORE_DIR) as live:
        log = live.read()
        for seq, expected in after.items():
            done, _ = replay(live, Point(at=(live.device, seq), text=f"laptop:{seq}"), log)
            assert {v: d["digest"] for v, d in done.views.items()} == expected


def test_a_settings_history_names_the_event_behind_each_change(tmp_path):
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    phone = device(tmp_path, "phone", clock.of(0))
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)

    def at(ms, fn):
        clock.now += ms
        return fn()
    first = at(1000, lambda: laptop.prefs.observe("ui.theme", "dark"))
    at(1000, lambda: laptop.prefs.observe("ui.theme", "dark"))
    at(1000, lambda: laptop.prefs.observe("ui.font", "small"))
    decision = at(1000, lambda: phone.prefs.decide("ui.theme", "light", confidence=1.0))
    at(1000, lambda: sync(phone, laptop))
    correction = at(1000, lambda: phone.prefs.correct(decision, "sepia"))
    stated = at(1000, lambda: phone.prefs.set("ui.theme", "light"))
    at(1000, lambda: sync(phone, laptop))
    override = at(1000, lambda: laptop.prefs.override("ui.theme", "dark"))
    expected = laptop.prefs.get("ui.theme", now_ms=clock.now)
    laptop.close()
    phone.close()
    with LiveLog(tmp_path / "laptop" / home.STORE_DIR) as live:
        steps = setting_history(live.read(), Point(), "ui.theme", live.device)
    changes = [(s.event.eid, s.state["value"], s.state["source"]) for s in steps if s.changed]
    assert changes == [(first, "dark", "learned"), (correction, "sepia", "learned"), (stated, "light", "explicit"),
                       (override, "dark", "override")]
    assert len(steps) == 6                                   # two observations, the decision, correction, set, override
    assert (steps[-1].state["value"], steps[-1].state["source"]) == (expected.value, expected.source)
    assert steps[2].arrival == START + 5000                  # the decision counted from when the laptop received it


def test_a_settings_history_caps_a_fast_clock_as_the_view_does(tmp_path):
    """The phone's clock runs a year ahead: its one observation counts a day after what it had seen,
    so the laptop's three still win, in the history as in the live view (docs/preferences.md)."""
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    phone = device(tmp_path, "phone", clock.of(365 * 86_400_000))
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    for _ in range(3):
        clock.now += 1000
        laptop.prefs.observe("ui.theme", "dark")
    sync(laptop, phone)
    clock.now += 1000
    phone.prefs.observe("ui.theme", "light", weight=2.5)
    phone.prefs.observe("ui.font", "small")
    clock.now += 1000
    sync(phone, laptop)
    live = laptop.prefs.get("ui.theme", now_ms=clock.now)
    laptop.close()
    phone.close()
    with LiveLog(tmp_path / "laptop" / home.STORE_DIR) as log_:
        steps = setting_history(log_.read(), Point(), "ui.theme", log_.device)
    assert (live.value, live.source) == ("dark", "learned")
    assert (steps[-1].state["value"], steps[-1].state["confidence"]) == (live.value, round(live.confidence, 4))


def test_a_memorys_history_shows_each_write(tmp_path):
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    entry = laptop.memory.put("Anna's birthday is 3 May", type="fact", tags=["family"])
    clock.now += 1000
    laptop.memory.put("unrelated", type="fact")
    laptop.memory.update(entry, content="Anna's birthday is 4 May", add_tags=["dates"])
    clock.now += 1000
    laptop.memory.delete(entry)
    laptop.close()
    with LiveLog(tmp_path / "laptop" / home.STORE_DIR) as live:
        steps = memory_history(live.read(), Point(), entry)
    assert [s.event.kind for s in steps] == ["memory.put", "memory.update", "memory.delete"]
    assert [s.state["content"] for s in steps[:2]] == ["Anna's birthday is 3 May", "Anna's birthday is 4 May"]
    assert steps[1].state["tags"] == ["dates", "family"] and steps[2].state["deleted"]
    assert all(s.changed for s in steps)


@pytest.mark.parametrize("text,ms", [("1750000000000", 1_750_000_000_000), ("2025-06-15T15:06:40Z", 1_750_000_000_000),
                                     ("2025-06-15T15:06:40", 1_750_000_000_000),
                                     ("2025-06-15T17:06:40+02:00", 1_750_000_000_000)])
def test_times_are_epoch_ms_or_iso_8601_utc_unless_zoned(text, ms):
    assert parse_time(text) == ms


# -- the command ----------------------------------------------------------------------------------------------

def test_the_command_replays_without_touching_the_live_store(scenario):
    homes, path = scenario["tmp"], store_path(scenario, "phone")
    before = files_digest(path)
    done = agentlog("--home", str(homes / "phone"), "replay", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {v: bytes.fromhex(d["digest"]) for v, d in doc["views"].items()} == scenario["finals"]["phone"]
    assert doc["same_as_live"] is True
    at, expected = scenario["moments"]["phone"][5]
    done = agentlog("--home", str(homes / "phone"), "replay", "--until", str(at), "--json")
    assert {v: bytes.fromhex(d["digest"]) for v, d in json.loads(done.stdout)["views"].items()} == expected
    first, last = scenario["moments"]["phone"][0][0], scenario["moments"]["phone"][-1][0]
    done = agentlog("--home", str(homes / "phone"), "replay", "--diff", str(first), str(last), "--json")
    diff = json.loads(done.stdout)
    assert done.returncode == 0 and diff["memory"]["added"] and diff["events"][0] < diff["events"][1]
    done = agentlog("--home", str(homes / "phone"), "replay", "--setting", "ui.theme")
    assert done.returncode == 0 and "changed it" in done.stdout.splitlines()[0]
    assert files_digest(path) == before


@pytest.mark.parametrize("args,message,code", [
    (("--until", "yesterday"), "neither epoch milliseconds nor ISO 8601", 2),
    (("--at", "nobody:3"), "no device is named", 4),
    (("--at", "laptop:99999"), "holds no event laptop:99999", 4),
    (("--at", "laptop"), "must be AUTHOR:SEQ", 2),
    (("--setting", "no.such"), "names the setting 'no.such'", 4),
    (("--memory", "abcdef"), "no memory whose id starts with abcdef", 4),
    (("--rebuild", "--setting", "ui.theme"), "takes no point", 2),
])
def test_bad_input_is_one_line_and_exit_2_or_4(scenario, args, message, code):
    """Bad input exits 2, a device, event, setting or memory that is not found 4; one line, the store unchanged."""
    path = store_path(scenario, "laptop")
    before = files_digest(path)
    done = agentlog("--home", str(scenario["tmp"] / "laptop"), "replay", *args)
    assert done.returncode == code
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert files_digest(path) == before


def test_a_compacted_store_refuses_a_replay_naming_the_boundary(tmp_path):
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    laptop.append(payloads.Observation(setting="ui.theme", value="dark"))
    with laptop.raw_txn(write=True) as txn:              # what compaction will record
        head = laptop.heads()[laptop.device]
        txn.put(laptop.device, head.epoch.to_bytes(4, "big") + head.seq.to_bytes(8, "big") + head.id,
                db=laptop.db("truncated"))
    laptop.close()
    done = agentlog("--home", str(tmp_path / "laptop"), "replay", "--until", str(START))
    assert done.returncode == 2 and "compacted: events up to laptop:2 were dropped" in done.stderr


def test_a_device_holding_a_peers_snapshot_and_the_compacted_one_replay_to_their_live_views(tmp_path):
    from agentlog.store import compaction
    from tests.helpers.family import Family, observe_days

    f = Family(tmp_path)
    try:
        observe_days(f, 15)
        compaction.compact(f.laptop, now_ms=f.now)
        f.sync(f.laptop, f.phone)                      # the phone never compacted: it folds the snapshot event
        phone, laptop, compacted = digests(f.phone), f.laptop.path, digests(f.laptop)
        truncated, now = f.laptop.truncated(), f.now
        last = f.phone.prefs.get("s0", now_ms=now)
    finally:
        f.close()
    with LiveLog(tmp_path / "phone") as live:
        log = live.read()
        done, _ = replay(live, Point(), log)
        steps = setting_history(log, Point(), "s0", live.device)
    assert {v: d["digest"] for v, d in done.views.items()} == phone
    assert steps[-1].event.kind == "snapshot" and steps[-1].arrival == now
    assert (steps[-1].state["value"], steps[-1].state["confidence"]) == (last.value, round(last.confidence, 4))
    assert truncated
    with LiveLog(laptop) as live:                      # from its base snapshot (tests/replay/test_compacted.py)
        done, _ = replay(live, Point())
    assert done.base and {v: d["digest"] for v, d in done.views.items()} == compacted
