"""`store.watch(...)` on real stores: what a change says, filters, resuming from a position, and waiting in a
thread, in asyncio and in trio for a write by another thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
import trio

from agentlog.errors import InvalidValueError
from agentlog.prefs import canonical
from agentlog.prefs import reducer as pr
from agentlog.watch import changelog
from agentlog.watch.changes import change_of
from tests.helpers.sync import sync


def test_a_change_names_the_setting_values_events_and_device(laptop, phone):
    watcher = laptop.watch()
    laptop.prefs.observe("editor.theme", "dark")
    eid = phone.prefs.set("editor.theme", "light")
    sync(phone, laptop)
    mine, theirs = watcher.poll()
    assert (mine.setting, mine.old["value"], mine.value, mine.devices) == ("editor.theme", None, "dark", ("laptop",))
    assert (theirs.old["value"], theirs.value, theirs.new["confidence"], theirs.new["uncertain"]) == \
        ("dark", "light", 1.0, False)
    assert theirs.events == ({"event": eid.hex(), "kind": "pref.set", "device": "phone", "author": phone.device.hex(),
                              "seq": theirs.events[0]["seq"], "scope": "user"},)
    assert theirs.position == mine.position + 1 == watcher.position
    doc = theirs.to_json()
    assert doc["time"].endswith("Z") and doc["old_value"] == "dark" and doc["devices"] == ["phone"]
    assert watcher.poll() == []
    sync(phone, laptop)                                  # nothing new: a duplicate records no change
    assert watcher.poll() == []
    watcher.close()


def test_a_preference_row_keeps_only_what_its_answer_reads(laptop):
    db, states = laptop.dbs["watch.changes"], []
    for n, value in enumerate(("dark", "light", "dark", "dark")):
        laptop.prefs.observe("editor.theme", value, context={"project": f"p{n % 2}", "host": "h"})
        with laptop.raw_txn() as txn:
            states.append(bytes(laptop.pref_view.raw_setting(txn, "editor.theme")))
    with laptop.raw_txn() as txn:
        _, last = changelog.bounds(txn, db)
        row = next(changelog.rows_after(txn, db, last - 1, 1))
    raw = states[-1]
    full = pr.Setting.from_bytes("editor.theme", raw)
    kept = pr.Setting.from_bytes("editor.theme", bytes(row.new))
    assert len(full.sums) > 1 and set(kept.sums) == {""} and kept.sums[""] == full.sums[""]
    assert row.old == canonical.only(states[-2], changelog.ANSWERED) != row.new
    device = laptop.device.hex()
    assert change_of(row, device, {}).new == pr.answer(full, device, (), row.time_ms).to_json()
    old_format = row._replace(new=raw)                  # rows written before: the whole state, read the same
    assert change_of(old_format, device, {}) == change_of(row, device, {})
    assert canonical.only(b'{"json": 1}', changelog.ANSWERED) == b'{"json": 1}'


def test_memory_conflict_opened_and_resolved(laptop, phone):
    entry = laptop.memory.put("Anna's birthday is 3 May", tags=["family"])
    sync(laptop, phone)
    with laptop.watch(memory=True) as watcher:
        laptop.memory.update(entry, content="Anna's birthday is 4 May")
        phone.memory.update(entry, content="Anna's birthday is 5 May")
        sync(phone, laptop)
        changes = watcher.poll()
        assert [c.conflict for c in changes] == [None, "opened"]
        assert changes[1].devices == ("phone",) and changes[1].new["conflicts"]["content"]
        laptop.memory.resolve(entry, "content", "Anna's birthday is 4 May")
        [settled] = watcher.poll()
        assert settled.conflict == "resolved" and settled.value == "Anna's birthday is 4 May"
        assert settled.old["content"] in {"Anna's birthday is 4 May", "Anna's birthday is 5 May"}


def test_a_merge_changes_both_entries(laptop):
    a = laptop.memory.put("Prefers aisle seats", tags=["travel"])
    b = laptop.memory.put("Books the corridor seat on trains", tags=["trains"])
    with laptop.watch(memory=True) as watcher:
        laptop.memory.merge(a, b)
        changes = {c.entry: c for c in watcher.poll()}
    assert set(changes) == {a, b}
    assert changes[a].new["tags"] == ["trains", "travel"] and changes[b].new["deleted"]


def test_filters(laptop):
    watchers = {"editor": laptop.watch(settings=["editor."]), "memory": laptop.watch(memory=True),
                "family": laptop.watch(tags=["family"]), "finding": laptop.watch(types="finding"),
                "both": laptop.watch(), "health": laptop.watch(scope="health")}
    laptop.prefs.observe("editor.theme", "dark")
    laptop.prefs.observe("units.temperature", "celsius")
    laptop.memory.put("Anna's birthday is 3 May", tags=["family"])
    laptop.memory.put("the build needs two cores", type="finding")
    got = {name: [c.setting or c.value for c in w.poll()] for name, w in watchers.items()}
    assert got == {"editor": ["editor.theme"], "memory": ["Anna's birthday is 3 May", "the build needs two cores"],
                   "family": ["Anna's birthday is 3 May"], "finding": ["the build needs two cores"],
                   "both": ["editor.theme", "units.temperature", "Anna's birthday is 3 May",
                            "the build needs two cores"], "health": []}
    for w in watchers.values():
        w.close()
    with pytest.raises(InvalidValueError, match="memory type 'nonsense'"):
        laptop.watch(types=["nonsense"])


def test_resume_from_a_position_neither_misses_nor_repeats(laptop, monkeypatch):
    for value in ("a", "b", "c"):
        laptop.prefs.set("t", value)
    with laptop.watch(position=0) as first:
        seen = first.poll()
    assert [c.value for c in seen] == ["a", "b", "c"]
    laptop.prefs.set("t", "d")
    with laptop.watch(position=seen[1].position) as again:         # restarted after handling "b"
        assert [c.value for c in again.poll()] == ["c", "d"]
    with pytest.raises(InvalidValueError, match="past the last change"):
        laptop.watch(position=99)
    monkeypatch.setattr(changelog, "RETAIN", 2)
    monkeypatch.setattr(changelog, "TRIM_EVERY", 1)
    laptop.prefs.set("t", "e")                                      # trims to the last two changes
    with laptop.watch(position=0) as behind:
        gap, *rest = behind.poll()
    assert gap.view == "gap" and gap.position == 3 and [c.value for c in rest] == ["d", "e"]


def test_refold_is_a_change(laptop):
    laptop.prefs.set("t", "a")
    with laptop.watch() as watcher:
        laptop.rebuild_views()
        assert [c.view for c in watcher.poll()] == ["refold"]


def _write_soon(store, value: str) -> threading.Thread:
    writer = threading.Timer(0.05, lambda: store.prefs.set("t", value))
    writer.start()
    return writer


def test_a_thread_waits_for_a_write(laptop):
    with laptop.watch() as watcher:
        assert watcher.wait(timeout=0.05) is None
        writer = _write_soon(laptop, "thread")
        change = watcher.wait(timeout=30)
        writer.join()
    assert change.value == "thread"


def test_asyncio_waits_for_a_write(laptop):
    async def main():
        with laptop.watch() as watcher:
            writer = _write_soon(laptop, "asyncio")
            change = await asyncio.wait_for(watcher.__anext__(), 30)
            writer.join()
            return change
    assert asyncio.run(main()).value == "asyncio"


async def test_trio_waits_for_a_write(laptop):
    with laptop.watch() as watcher:
        writer = _write_soon(laptop, "trio")
        with trio.fail_after(30):
            change = await watcher.__anext__()
        writer.join()
    assert change.value == "trio"


def test_an_erased_entry_leaves_no_content_in_the_change_log(laptop, phone):
    canary = "canary-20e1-watched-then-erased"
    with laptop.watch() as watcher:
        entry = laptop.memory.put(canary)
        laptop.memory.update(entry, content=canary + " updated")
        sync(laptop, phone)                                     # the phone records one change of both events
        assert [(c.old or {}).get("content") for c in watcher.poll()] == [None, canary]
        laptop.memory.forget(entry)
        sync(laptop, phone)
        assert [c.view for c in watcher.poll()] == ["refold"]
    for store in (laptop, phone):
        with store.raw_txn() as txn, txn.cursor(db=store.dbs["watch.changes"]) as cur:
            assert not any(canary.encode() in bytes(v) for v in cur.iternext(keys=False))
        assert canary.encode() not in (store.path / "data.mdb").read_bytes()


def test_a_killed_watchers_registration_is_pruned(laptop):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = laptop.path / "watchers"
    folder.mkdir(exist_ok=True)
    (folder / "9").write_text(gone.stdout.strip())                 # its process exited without unregistering
    with laptop.watch() as watcher:
        assert sorted(p.name for p in folder.iterdir()) == [str(watcher._sock.getsockname()[1])]
    assert list(folder.iterdir()) == []


def test_a_batch_of_many_events_on_one_setting_is_one_change_naming_the_last_ones(laptop):
    from agentlog.log import payloads

    with laptop.watch() as watcher:
        ids = laptop.append_many([payloads.Observation(setting="busy", value=f"v{i % 3}") for i in range(300)])
        [change] = watcher.poll()
    assert change.events_total == 300 and [e["event"] for e in change.events] == [i.hex() for i in ids[-16:]]
    assert change.to_json()["events_total"] == 300
