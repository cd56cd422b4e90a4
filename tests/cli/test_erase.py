"""The erasing commands as a user runs them (`agentlog memory forget`, `pref forget --erase`, `forget`) and
where an erased event shows up as erased: `log`, `log show`, `status`."""

from __future__ import annotations

import pytest

from agentlog.store import home
from tests.helpers.cli import as_json, assert_one_line_error, out, run

CANARY = "canary-7f3a kept in the vault"
HEX = set("0123456789abcdef")


def fingerprint(home_dir) -> tuple:
    """What a refused command must leave alone: the events, every view's digest, the erasure state."""
    with home.open_home(home_dir) as store:
        return store.count(), {n: v["digest"] for n, v in store.views().items()}, store.erasure_status()


def _ids(text: str) -> list[str]:
    lines = text.split()
    assert all(len(line) == 64 and set(line) <= HEX for line in lines), text
    return lines


def _log(home_dir) -> dict[str, dict]:
    return {row["id"]: row for row in as_json(home_dir, "log")}


@pytest.fixture
def laptop(tmp_path):
    h = tmp_path / "laptop"
    run(h, "init", "--name", "laptop")
    return h


def test_memory_forget_prints_the_request_and_every_write_shows_as_erased(laptop):
    entry = out(laptop, "memory", "put", CANARY, "--tag", "vault")
    update = out(laptop, "memory", "update", entry, "--content", CANARY + " v2")
    other = out(laptop, "memory", "put", "the user likes tea")
    [request] = _ids(out(laptop, "memory", "forget", entry[:8], "--reason", "the user asked"))
    rows = _log(laptop)
    erased = {eid: row for eid, row in rows.items() if row["erased"]}
    assert {rows[eid]["kind"] for eid in erased} == {"memory.put", "memory.update"} and update in erased
    assert all(row["erased"] == {"by": request, "device": "laptop", "device_id": row["author_id"],
                                 "time": rows[request]["time"], "reason": "the user asked"} for row in erased.values())
    assert rows[request]["kind"] == "erase" and rows[request]["erased"] is None

    shown = out(laptop, "log", "show", update)
    assert f"erased by {request} (device laptop, {rows[request]['time']}): the user asked" in shown
    assert CANARY not in shown and "canary" not in run(laptop, "log").stdout
    doc = as_json(laptop, "log", "show", update)
    assert doc["content"] is None and not doc["withheld"] and doc["erased"]["by"] == request
    asked = as_json(laptop, "log", "show", request)
    assert asked["content"]["entry"] == entry and asked["content"]["reason"] == "the user asked"
    assert CANARY not in str(asked)
    assert [e["id"] for e in as_json(laptop, "memory", "list")] == [other]
    gone = run(laptop, "memory", "get", entry, check=False)
    assert gone.returncode == 4
    assert_one_line_error(gone, f"memory {entry} was erased by {request} (device laptop, ", "): the user asked")

    again = as_json(laptop, "memory", "forget", entry)           # forgotten already: the same request, nothing new
    assert again == {"id": entry, "requests": [request]} and len(_log(laptop)) == len(rows)
    status = as_json(laptop, "status")["erasure"]
    assert (status["erased"], status["pending"], status["requests"]) == (2, 0, 1)
    assert "erased: 2 events held header-only, by 1 erase request" in out(laptop, "status")


def test_forget_erases_given_events_and_says_so_in_json(laptop):
    ids = [out(laptop, "observe", "ui.theme", value) for value in ("dark", "light", "dark")]
    doc = as_json(laptop, "forget", ids[0], ids[2].upper(), "--reason", "wrong")
    [request] = doc["requests"]
    assert doc["events"] == [ids[0], ids[2]] and len(request) == 64
    rows = _log(laptop)
    assert [bool(rows[i]["erased"]) for i in ids] == [True, False, True]
    assert "[erased]" in next(line for line in out(laptop, "log").splitlines() if ids[0][:16] in line)
    assert as_json(laptop, "pref", "get", "ui.theme")["value"] == "light"
    done = run(laptop, "forget", ids[0])                        # erased already: a no-op, not an error
    assert done.stdout == "" and "erased already" in done.stderr and len(_log(laptop)) == len(rows)


def test_pref_forget_erase_prints_the_forget_then_the_request(laptop):
    observed = [out(laptop, "observe", "ui.font", "mono") for _ in range(2)]
    decision = out(laptop, "decide", "ui.font", "serif", "--reason", CANARY)
    kept = out(laptop, "observe", "ui.theme", "dark")
    forget, request = _ids(out(laptop, "pref", "forget", "ui.font", "--erase", "--reason", "start over"))
    rows = _log(laptop)
    assert rows[forget]["kind"] == "pref.forget" and rows[request]["kind"] == "erase"
    assert all(rows[i]["erased"]["by"] == request for i in [*observed, decision])
    assert rows[kept]["erased"] is None and rows[forget]["erased"] is None
    assert as_json(laptop, "pref", "get", "ui.font")["source"] == "default"
    assert as_json(laptop, "pref", "get", "ui.theme")["value"] == "dark"
    assert CANARY not in out(laptop, "log", "show", decision)
    plain = as_json(laptop, "pref", "forget", "ui.theme")        # without --erase: a forget, nothing erased
    assert plain["requests"] == [] and rows.keys() < _log(laptop).keys()
    assert _log(laptop)[kept]["erased"] is None


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    h = tmp_path_factory.mktemp("erase-refusals") / "h"
    run(h, "init", "--name", "laptop")
    names = {"{O}": out(h, "observe", "ui.theme", "dark"), "{M}": out(h, "memory", "put", CANARY),
             "{G}": as_json(h, "log")[0]["id"], "{U}": "ab" * 32}
    return h, names, fingerprint(h)


@pytest.mark.parametrize("args, words, code", [
    (("forget", "xyz"), ("event id 'xyz'", "64 hex digits"), 2),
    (("forget", "{O}", "abcd"), ("event id 'abcd'",), 2),
    (("forget", "{U}"), ("{U}",), 4),
    (("forget", "{G}"), ("device.enroll",), 2),
    (("forget", "{O}", "--reason", "r" * 1025), ("reason",), 2),
    (("forget",), ("EVENT_ID",), 2),
    (("memory", "forget", "ffff0000"), ("no memory",), 4),
    (("memory", "forget", "xy"), ("hex digits",), 2),
    (("memory", "forget", "{M}", "--reason", "r" * 1025), ("reason",), 2),
    (("pref", "forget", "bad setting", "--erase"), ("setting",), 2),
    (("pref", "forget", "ui.theme", "--reason", "why"), ("--reason goes with --erase",), 2),
    (("log", "show", "{U}"), ("holds no event", "{U}"), 4),
    (("log", "show", "12"), ("event id '12'",), 2),
])
def test_bad_input_is_one_line_and_changes_nothing(refusals, args, words, code):
    h, names, before = refusals

    def filled(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text
    proc = run(h, *map(filled, args), check=False)
    assert proc.returncode == code and proc.stdout == "", proc.stderr
    assert_one_line_error(proc, *map(filled, words))
    assert fingerprint(h) == before


def test_status_names_a_pending_scrub_and_erased_events_a_snapshot_covers():
    from agentlog.cli.status import _erasure_lines

    base = {"erased": 3, "pending": 1, "requests": 2, "covered": 1}
    pending = _erasure_lines({**base, "scrub": {"pending": True, "pinned": 2, "pages": 9, "rounds": 3,
                                                "found": [{"file": "data.mdb", "offset": 8192}]}})
    assert pending == [
        "erased: 3 events held header-only, by 2 erase requests",
        "erase pending: 1 named event not held here yet (erased as they arrive, never stored)",
        "erased but covered by the base snapshot: 1 event, whose content may remain in the snapshot's view states",
        "scrub pending: erased bytes still found 1 time under the home, 2 readers older than the erasure still "
        "open; `agentlog serve` scrubs again"]
    done = _erasure_lines({**base, "covered": 0, "scrub": {"pending": False, "pages": 9, "rounds": 1, "found": []}})
    assert done[-1] == "scrub: done, 9 free pages overwritten in 1 round; no erased bytes found under the home"
    assert _erasure_lines({"erased": 0, "pending": 0, "requests": 0, "covered": 0, "scrub": {}}) == []


def test_an_event_of_a_sealed_scope_this_device_cannot_read_is_refused(tmp_path):
    from agentlog.store import devices
    from tests.helpers.sync import sync

    laptop = home.create(tmp_path / "laptop", "laptop")
    laptop.create_group("laptop")
    phone = home.create(tmp_path / "phone", "phone")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)
    phone.scopes.create("diary")
    sealed = phone.prefs.observe("mood", "calm", scope="diary").hex()
    sync(phone, laptop)
    laptop.close()
    phone.close()
    before = fingerprint(tmp_path / "laptop")
    proc = run(tmp_path / "laptop", "forget", sealed, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line_error(proc, sealed[:16], "scope 'diary'", "cannot read")
    assert fingerprint(tmp_path / "laptop") == before
    [request] = _ids(out(tmp_path / "phone", "forget", sealed, "--reason", "private"))    # a reader may
    assert _log(tmp_path / "phone")[sealed]["erased"]["by"] == request
