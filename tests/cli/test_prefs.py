"""The preference commands as an agent runs them: the real `agentlog` console script on real homes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentlog import crypto
from agentlog.errors import StoreError
from agentlog.log import roster
from agentlog.prefs import reducer as pr
from agentlog.prefs import view as pref_view
from agentlog.store import devices, home, pref_lookup
from agentlog.store import layout as store_module
from tests.helpers.cli import assert_one_line_error, stderr_on_a_terminal
from tests.helpers.sync import sync

SCRIPT = Path(sys.executable).with_name("agentlog")
AGENTLOG = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "agentlog"]
ENV = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}


def run(home_dir, *args, check=True):
    proc = subprocess.run(
        [*AGENTLOG, "--home", str(home_dir), *args], capture_output=True, text=True, env=ENV, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"agentlog {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def out(home_dir, *args) -> str:
    return run(home_dir, *args).stdout.strip()


def as_json(home_dir, *args):
    return json.loads(out(home_dir, *args, "--json"))


def fingerprint(home_dir) -> tuple:
    """What a refused command must leave alone: the event count and every view's digest."""
    status = as_json(home_dir, "status")
    return status["events"], {name: v["digest"] for name, v in status["views"].items()}


def assert_same_answer(fast: dict, full: dict) -> None:
    """Two answers read a moment apart: equal but for decay in the last digits of the weights."""
    assert fast.keys() <= full.keys()
    for key, value in fast.items():
        if key == "confidence":
            assert value == pytest.approx(full[key], abs=1e-3)
        elif key == "scores":
            assert value.keys() == full[key].keys()
            assert all(v == pytest.approx(full[key][k], abs=1e-3) for k, v in value.items())
        else:
            assert value == full[key], key


@pytest.fixture
def laptop(tmp_path):
    h = tmp_path / "laptop"
    run(h, "init", "--name", "laptop")
    return h


def test_learning_a_correction_and_explain(laptop):
    night = ("--context", "daypart=night")
    out(laptop, "observe", "theme", "dark", *night, "--weight", "1.5")
    out(laptop, "observe", "theme", "light", "--weight", "3")
    decision = out(laptop, "decide", "theme", "dark", "--confidence", "0.9", "--reason", "it is late")
    assert len(decision) == 64 and int(decision, 16) >= 0
    correction = out(laptop, "correct", decision, "light", "--reason", "user switched back")
    assert len(correction) == 64

    got = as_json(laptop, "pref", "get", "theme")
    assert set(got) >= {
        "setting",
        "value",
        "confidence",
        "source",
        "uncertain",
        "stale_override",
        "frontier",
        "context_bucket",
    }
    assert (got["setting"], got["value"], got["source"], got["context_bucket"]) == ("theme", "light", "learned", {})
    assert 0 < got["confidence"] <= 1 and got["frontier"] == {"laptop": 5}
    assert not got["uncertain"] and not got["stale_override"]
    at_night = as_json(laptop, "pref", "get", "theme", *night)
    assert (at_night["value"], at_night["context_bucket"]) == ("dark", {"daypart": "night"})
    assert out(laptop, "pref", "get", "theme").startswith("theme = light  (learned, confidence ")

    explained = as_json(laptop, "pref", "get", "theme", "--explain")
    assert_same_answer(got, explained)
    rows = explained["contributions"]
    assert [(r["kind"], r["value"]) for r in rows] == [
        ("correction", "light"),
        ("observation", "light"),
        ("correction", "dark"),
        ("observation", "dark"),
        ("decision", "dark"),
    ]
    weights = [abs(r["weight"]) for r in rows]
    assert weights == sorted(weights, reverse=True) and rows[2]["weight"] < 0
    assert {r["author"] for r in rows} == {"laptop"} and rows[0]["id"] == correction and rows[4]["id"] == decision
    assert rows[0]["author_id"] == as_json(laptop, "status")["device"]
    assert rows[0]["time"].endswith("Z") and rows[0]["effective_time"] == rows[0]["time"]
    assert len(as_json(laptop, "pref", "get", "theme", "--explain", "--limit", "1")["contributions"]) == 1
    table = out(laptop, "pref", "get", "theme", "--explain").splitlines()
    assert len(table) == 6 and "correction" in table[1] and "laptop" in table[1] and correction[:16] in table[1]


def test_statements_overrides_policies_and_configuration(laptop):
    out(laptop, "observe", "size", "m", "--weight", "5")
    out(laptop, "pref", "config", "size", "--type", "choice", "--choices", "s,m,l", "--half-life", "36h")
    stated = out(laptop, "pref", "set", "size", "l")
    explained = as_json(laptop, "pref", "get", "size", "--explain")
    assert (explained["value"], explained["source"], explained["confidence"]) == ("l", "explicit", 1.0)
    assert [(c["id"], c["kind"], c["weight"]) for c in explained["contributions"]] == [(stated, "pref.set", None)]

    override = out(laptop, "override", "set", "size", "s")
    got = as_json(laptop, "pref", "get", "size", "--explain")
    assert (got["value"], got["source"], got["stale_override"]) == ("s", "override", False)
    assert got["contributions"][0]["id"] == override and got["contributions"][0]["kind"] == "override.set"
    out(laptop, "pref", "policy", "size", "reconfirm")
    out(laptop, "pref", "set", "size", "m")
    stale = as_json(laptop, "pref", "get", "size")
    assert (stale["value"], stale["stale_override"], stale["uncertain"]) == ("s", True, True)
    assert "stale override" in out(laptop, "pref", "get", "size")
    out(laptop, "pref", "confirm", "size")
    assert as_json(laptop, "pref", "get", "size")["stale_override"] is False
    out(laptop, "override", "clear", "size")
    assert (as_json(laptop, "pref", "get", "size")["value"], as_json(laptop, "pref", "get", "size")["source"]) == (
        "m",
        "explicit",
    )
    out(laptop, "pref", "forget", "size")
    assert as_json(laptop, "pref", "get", "size")["source"] == "default"
    out(laptop, "pref", "config", "size", "--policy", "vote")

    out(laptop, "pref", "config", "notify", "--type", "bool")
    out(laptop, "observe", "notify", "yes", "--weight", "2")    # normalized to the bool's spelling
    listed = as_json(laptop, "pref", "list")
    assert [(a["setting"], a["value"], a["source"]) for a in listed] == [
        ("notify", "true", "learned"),
        ("size", None, "default"),
    ]
    assert all(a["frontier"] == {"laptop": 13} for a in listed)
    assert out(laptop, "pref", "list").splitlines()[0].split()[:3] == ["notify", "true", "learned"]
    kinds = [e["kind"] for e in as_json(laptop, "log")]
    assert kinds.count("pref.config") == 4 and kinds.count("override.set") == 1 and kinds.count("pref.confirm") == 1


def test_a_setting_never_seen_answers_default(laptop):
    expected = {"setting": "never", "value": None, "confidence": 0.0, "source": "default", "uncertain": False,
                "stale_override": False, "context_bucket": None, "frontier": {"laptop": 1}}
    assert as_json(laptop, "pref", "get", "never").items() >= expected.items()
    explained = as_json(laptop, "pref", "get", "never", "--explain", "--context", "a=b")
    assert explained.items() >= expected.items() and explained["contributions"] == []
    assert out(laptop, "pref", "get", "never") == "never: no value (default)"
    assert as_json(laptop, "pref", "list") == []


@pytest.fixture(scope="module")
def typed_home(tmp_path_factory):
    """One home for the refusals: a bool setting, a decision, and the status they must not change."""
    h = tmp_path_factory.mktemp("refusals") / "h"
    run(h, "init", "--name", "laptop")
    out(h, "pref", "config", "flag", "--type", "bool")
    decision = out(h, "decide", "flag", "true")
    return h, decision, fingerprint(h)


@pytest.mark.parametrize("args, words", [
    (("observe", "", "x"), ("empty",)),
    (("observe", "s" * 129, "x"), ("129", "128")),
    (("pref", "set", "a\x07b", "x"), ("control",)),
    (("decide", "a\tb", "x"), ("control",)),
    (("observe", "theme", "dark", "--context", "night"), ("key=value",)),
    (("observe", "theme", "dark", *[f"--context=k{i}=v" for i in range(5)]), ("5 keys",)),
    (("pref", "set", "theme", "dark", "--context", "a=1", "--context", "a=2"), ("twice",)),
    (("correct", "ab" * 32, "x"), ("names no decision",)),
    (("correct", "not-an-id", "x"), ("not an event id",)),
    (("correct", "abc", "x"), ("not an event id",)),
    (("observe", "flag", "maybe"), ("flag", "not a bool")),
    (("pref", "set", "flag", "7"), ("not a bool",)),
    (("decide", "theme", "dark", "--confidence", "2"), ("confidence",)),
    (("observe", "theme", "dark", "--weight", "-1"), ("weight",)),
    (("pref", "config", "theme", "--half-life", "fortnight"), ("--half-life", "14d")),
    (("pref", "config", "theme", "--half-life", "10m"), ("half-life", "1 hour")),
    (("pref", "config", "theme", "--type", "colour"), ("value type",)),
    (("pref", "policy", "theme", "always"), ("sticky",)),
    (("override", "clear", "theme"), ("no override",)),
    (("pref", "confirm", "theme"), ("no override",)),
    (("pref", "get", ""), ("empty",)),
    (("pref", "get", "theme", "--context", "a=1", "--context", "a=2"), ("twice",)),
    (("pref", "get", "theme", "--limit", "0"), ("--limit",)),
    (("replay", "--rebuild", "--until", "0"), ("--rebuild", "no point")),
    (("replay", "--setting", "theme", "--until", "soon"), ("soon", "ISO 8601")),
])
def test_bad_input_is_one_line_and_changes_nothing(typed_home, args, words):
    h, decision, before = typed_home
    proc = run(h, *args, check=False)
    assert proc.returncode == (4 if "names no decision" in words else 2) and proc.stdout == ""
    assert_one_line_error(proc, *words)
    assert fingerprint(h) == before


def test_a_bool_setting_takes_its_spellings(typed_home):
    h, decision, _ = typed_home
    assert as_json(h, "pref", "get", "flag")["value"] == "true"


def test_missing_home_and_open_key_file_give_the_same_errors_as_elsewhere(tmp_path):
    for command in (("pref", "get", "theme"), ("pref", "list")):
        assert_one_line_error(run(tmp_path / "none", *command, check=False), "agentlog init")
    h = tmp_path / "h"
    run(h, "init", "--name", "laptop")
    os.chmod(h / "device.key", 0o644)
    for command in (("pref", "get", "theme"), ("pref", "list"), ("log",)):
        assert_one_line_error(run(h, *command, check=False), "chmod 600")
    os.chmod(h / "device.key", 0o600)
    (h / "device.key").write_text("not a key\n")
    assert run(h, "log", check=False).stderr == run(h, "pref", "get", "theme", check=False).stderr


def test_replay_rebuild_folds_the_same_digests(laptop):
    out(laptop, "observe", "theme", "dark", "--weight", "2")
    out(laptop, "correct", out(laptop, "decide", "theme", "dark"), "light")
    out(laptop, "override", "set", "theme", "dark")
    before = fingerprint(laptop)
    report = as_json(laptop, "replay", "--rebuild")
    assert report["events"] == 5 and report["same"] is True and report["elapsed_s"] >= 0
    assert {name: v["after"] for name, v in report["views"].items()} == before[1]
    assert all(v["before"] == v["after"] and v["same"] for v in report["views"].values())
    assert fingerprint(laptop) == before
    lines = out(laptop, "replay", "--rebuild").splitlines()
    assert (
        lines[0].startswith("replayed 5 events in ") and lines[-1] == "every view folded to the same digest as before"
    )
    assert all(line.endswith("after: same") for line in lines[1:-1]) and len(lines) == 5
    assert b"replay: 5/5 (100%)" in stderr_on_a_terminal(laptop, "replay", "--rebuild")
    assert b"replay:" not in stderr_on_a_terminal(laptop, "replay", "--rebuild", "--json")


# -- the fast path (agentlog.store.pref_lookup) -----------------------------------------------------------

def test_lookup_mirrors_the_store_layout():
    assert pref_lookup.MAX_DBS == store_module.MAX_DBS >= len(store_module.DBS)
    assert pref_lookup.LAYOUT == store_module.LAYOUT_VERSION.to_bytes(4, "big")
    assert pref_lookup.ROSTER_VERSION == roster.VERSION.to_bytes(4, "big")
    assert pref_lookup.PREF_VERSION_KEY == pref_view.VERSION_KEY
    assert pref_lookup.SIG_LEN == crypto.SIG_LEN
    assert {"views.pref", "views.roster", "heads", "meta"} <= set(store_module.DBS)


def test_fast_path_answers_as_the_store_does(laptop):
    out(laptop, "observe", "theme", "dark", "--weight", "2", "--context", "daypart=night")
    out(laptop, "observe", "theme", "light", "--weight", "2")
    out(laptop, "pref", "set", "units", "metric", "--context", "country=fr")
    out(laptop, "pref", "config", "units", "--policy", "vote")
    out(laptop, "override", "set", "units", "imperial")
    for setting, context in [("theme", ()), ("theme", ("daypart=night",)), ("theme", ("daypart=day", "room=den")),
                             ("units", ()), ("units", ("country=fr",)), ("never", ())]:
        flags = [a for c in context for a in ("--context", c)]
        fast = as_json(laptop, "pref", "get", setting, *flags)
        full = as_json(laptop, "pref", "get", setting, *flags, "--explain")
        assert_same_answer(fast, full)
        assert fast["frontier"] == full["frontier"] == {"laptop": 6}


def test_fast_path_steps_aside_when_it_cannot_be_sure(tmp_path):
    """No store, a view of another version, a join anchor the roster has not folded: Store answers."""
    path = tmp_path / "laptop"
    laptop = home.create(path, "laptop")
    laptop.create_group("laptop")
    laptop.prefs.observe("theme", "dark", weight=2)
    laptop.close()
    assert pref_lookup.get(path, "theme")[0].value == "dark"

    with home.open_home(path) as store, store.raw_txn(write=True) as txn:
        txn.put(pref_view.VERSION_KEY, (pr.VERSION + 1).to_bytes(4, "big"), db=store.db("views.pref"))
    assert pref_lookup.get(path, "theme") is None
    assert as_json(path, "pref", "get", "theme")["value"] == "dark"      # Store rebuilt the view
    assert pref_lookup.get(path, "theme")[0].value == "dark"

    phone_path = tmp_path / "phone"
    with home.open_home(path) as laptop, home.create(phone_path, "phone") as phone:
        devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
        phone.prefs.observe("theme", "light", weight=3)
    assert pref_lookup.get(phone_path, "theme") is None and pref_lookup.list_all(phone_path) is None
    got = as_json(phone_path, "pref", "get", "theme")
    assert (got["value"], got["frontier"]) == ("light", {"phone": 1})
    with home.open_home(path) as laptop, home.open_home(phone_path) as phone:
        sync(laptop, phone)
    answer, frontier = pref_lookup.get(phone_path, "theme")
    assert frontier == {"laptop": 3, "phone": 1} and answer.value == "light"
    assert_same_answer(
        as_json(phone_path, "pref", "get", "theme"), as_json(phone_path, "pref", "get", "theme", "--explain")
    )

    (tmp_path / "bare").mkdir(mode=0o700)
    (tmp_path / "bare" / "device.key").write_text("11" * 32)
    os.chmod(tmp_path / "bare" / "device.key", 0o600)
    with pytest.raises(StoreError, match="missing"):               # a key file without its store is refused
        pref_lookup.get(tmp_path / "bare", "theme")


def test_pref_get_loads_no_event_codec(laptop):
    """cli.py and pref_lookup.py import neither the store nor pycapnp for `pref get` (package
    __init__ left out: it is measured separately below)."""
    out(laptop, "observe", "theme", "dark", "--weight", "2")
    package = Path(pref_lookup.__file__).parents[1]
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("agentlog")
        pkg.__path__ = [{str(package)!r}]
        sys.modules["agentlog"] = pkg
        from agentlog.cli.main import main
        assert main(["--home", {str(laptop)!r}, "pref", "get", "theme", "--json"]) == 0
        assert main(["--home", {str(laptop)!r}, "pref", "list"]) == 0
        print(sorted(m for m in sys.modules if m.startswith(("capnp", "nacl", "agentlog."))))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *answers, loaded = proc.stdout.strip().splitlines()
    assert json.loads("\n".join(answers[:-1]))["value"] == "dark"
    cli = [f"agentlog.cli.{name}" for name in ("audit", "backup", "common", "compact", "devices", "exits", "forget",
                                               "log", "main", "mcp", "memory", "pair", "peers", "prefs", "replay",
                                               "scopes", "scrub", "status", "sync", "watch")]
    assert loaded == str(sorted([
        "agentlog.cli", *cli, "agentlog.errors", "agentlog.limits", "agentlog.log", "agentlog.log.kinds",
        "agentlog.prefs", "agentlog.prefs.canonical", "agentlog.prefs.decay", "agentlog.prefs.reducer",
        "agentlog.store", "agentlog.store.env", "agentlog.store.home", "agentlog.store.pref_lookup", "agentlog.text",
    ]))


def test_pref_get_as_a_whole_process_loads_no_pycapnp(laptop):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentlog", "--home", str(laptop), "pref", "get", "x"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0 and "capnp" not in proc.stderr and "agentlog.store.store" not in proc.stderr
