"""Replay of a home that carried out erase requests: at a point before the request, the erased events are
listed as erased (by which request, whose, when, why) and folded without their content; a memory's or a
setting's history shows each erased write as erased; no replay output holds the erased content."""

from __future__ import annotations

import json

import pytest

from agentlog.replay.history import memory_history, setting_history
from agentlog.store import home
from agentlog.store.scratch import LiveLog, Point, replay
from tests.helpers.replay import Clock, agentlog, device

CANARY = "canary-0b7d the user's old address"


@pytest.fixture
def forgotten(tmp_path):
    """At START+1s the laptop puts a memory and observes a setting (both with the canary), and writes things
    kept; at +2s it updates the memory; at +10s it forgets both. Returns the home, ids and times."""
    clock = Clock()
    laptop = device(tmp_path, "laptop", clock.of(0))
    laptop.create_group("laptop")
    clock.now += 1000
    entry = laptop.memory.put(CANARY, type="fact")
    observed = laptop.prefs.observe("home.address", CANARY)
    kept = laptop.memory.put("the user likes tea", type="preference")
    laptop.prefs.observe("ui.theme", "dark")
    clock.now += 1000
    update = laptop.memory.update(entry, content=CANARY + ", flat 2")
    before = clock.now
    clock.now += 8000
    memory_request = laptop.memory.forget(entry, "moved house")
    _, [pref_request] = laptop.prefs.forget("home.address", erase=True, reason="moved house")
    laptop.close()
    return {"home": tmp_path / "laptop", "entry": entry, "kept": kept, "erased": {observed, update},
            "memory_request": memory_request, "pref_request": pref_request, "before": before}


def test_a_point_before_the_request_lists_the_erased_events_and_folds_without_them(forgotten):
    done = agentlog("--home", str(forgotten["home"]), "replay", "--until", str(forgotten["before"]), "--json")
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout
    doc = json.loads(done.stdout)
    assert [m["id"] for m in doc["memory"]] == [forgotten["kept"].hex()]
    assert [(p["setting"], p["value"]) for p in doc["prefs"]] == [("ui.theme", "dark")]
    rows = {r["event"]: r for r in doc["erased"]}
    assert len(rows) == 3 and {e.hex() for e in forgotten["erased"]} <= set(rows)
    by = {r["kind"]: r["erased"]["by"] for r in rows.values()}
    assert by == {"memory.put": forgotten["memory_request"].hex(), "memory.update": forgotten["memory_request"].hex(),
                  "observation": forgotten["pref_request"].hex()}
    assert all((r["erased"]["device"], r["erased"]["reason"]) == ("laptop", "moved house") for r in rows.values())

    people = agentlog("--home", str(forgotten["home"]), "replay", "--until", str(forgotten["before"]))
    assert people.returncode == 0 and CANARY not in people.stdout
    assert "3 of the events held at this point were erased since" in people.stdout
    assert f"erased by {forgotten['memory_request'].hex()} (device laptop," in people.stdout


def test_the_views_at_any_point_are_those_of_a_log_without_the_erased_payloads(forgotten):
    with LiveLog(forgotten["home"] / home.STORE_DIR) as live:
        log = live.read()
        done, _ = replay(live, Point(until=forgotten["before"]), log)
        now, _ = replay(live, Point(), log)
        assert now.views == live.views()
    assert done.events == now.events - 3              # the pref.forget and the two erase requests came after
    for point in ("--until", str(forgotten["before"])), ():
        shown = agentlog("--home", str(forgotten["home"]), "replay", *point, "--json")
        assert CANARY not in shown.stdout and "canary" not in shown.stdout


def test_histories_show_each_erased_write_as_erased(forgotten):
    with LiveLog(forgotten["home"] / home.STORE_DIR) as live:
        log = live.read()
        steps = memory_history(log, Point(), forgotten["entry"])
        assert [(s.event.kind, s.erased.request) for s in steps] == [
            ("memory.put", forgotten["memory_request"]), ("memory.update", forgotten["memory_request"])]
        steps = setting_history(log, Point(), "home.address", live.device)
        assert [(s.event.kind, s.erased and s.erased.request) for s in steps] == [
            ("observation", forgotten["pref_request"]), ("pref.forget", None)]
    done = agentlog("--home", str(forgotten["home"]), "replay", "--memory", forgotten["entry"].hex()[:8])
    assert done.returncode == 0 and CANARY not in done.stdout, done.stderr
    assert done.stdout.count("ERASED: erased by") == 2 and "2 events touched it" in done.stdout
    doc = json.loads(agentlog("--home", str(forgotten["home"]), "replay", "--setting", "home.address",
                              "--json").stdout)
    assert [s["erased"] and s["erased"]["by"] for s in doc["steps"]] == [forgotten["pref_request"].hex(), None]
    assert CANARY not in json.dumps(doc)
