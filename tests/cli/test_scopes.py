"""`agentlog scopes`, `devices add --scopes`, `--scope` on the writes and status's scopes section, as an agent
runs them: the CLI in a subprocess on real homes, synced by ingest."""

from __future__ import annotations

import pytest

from agentlog.store import home
from tests.helpers.cli import as_json, assert_one_line_error, out, run
from tests.helpers.sync import sync


def fingerprint(home_dir) -> tuple:
    """What a refused command must leave alone: the events, every view's digest, the scopes."""
    status = as_json(home_dir, "status")
    return status["events"], {name: v["digest"] for name, v in status["views"].items()}, status["scopes"]


def meet(*homes) -> None:
    """Every pair of homes syncs both ways, twice round, so all hold every event."""
    for _ in range(2):
        for a in homes:
            for b in homes:
                if a != b:
                    with home.open_home(a) as src, home.open_home(b) as dst:
                        sync(src, dst)


def enrol(laptop, path, name, *options) -> str:
    """A new device `name` at `path`, enrolled by the laptop (with `options` for devices add) and joined."""
    device = out(path, "init", "--name", name, "--join")
    token = out(laptop, "devices", "add", device, "--name", name, *options)
    out(path, "devices", "join", token)
    return device


def scope(home_dir, name) -> dict:
    [found] = [s for s in as_json(home_dir, "scopes", "list") if s["scope"] == name]
    return found


def readers(doc) -> list[str]:
    return [r["name"] for r in doc["readers"]]


@pytest.fixture
def laptop(tmp_path):
    h = tmp_path / "laptop"
    run(h, "init", "--name", "laptop")
    return h


@pytest.fixture
def phone(tmp_path, laptop):
    path = tmp_path / "phone"
    enrol(laptop, path, "phone")
    meet(laptop, path)
    return path


def test_create_grant_revoke_list(laptop, phone):
    assert as_json(laptop, "scopes", "list") == []
    created = out(laptop, "scopes", "create", "health")
    assert "health" in created and "laptop" in created
    laptop_id = as_json(laptop, "status")["device"]
    assert as_json(laptop, "scopes", "list") == [
        {"scope": "health", "readers": [{"name": "laptop", "id": laptop_id}], "epoch": 1, "can_read": True}]

    meet(laptop, phone)
    seen = scope(phone, "health")                     # a non-reader knows the scope, its readers and epoch
    assert (readers(seen), seen["epoch"], seen["can_read"]) == (["laptop"], 1, False)

    granted = out(laptop, "scopes", "grant", "health", "phone")
    assert "phone" in granted
    doc = scope(laptop, "health")
    assert (readers(doc), doc["epoch"]) == (["laptop", "phone"], 1)
    meet(laptop, phone)
    assert scope(phone, "health")["can_read"] is True

    revoked = out(laptop, "scopes", "revoke", "health", "phone")
    assert "phone" in revoked and "epoch 2" in revoked
    doc = scope(laptop, "health")
    assert (readers(doc), doc["epoch"], doc["can_read"]) == (["laptop"], 2, True)
    meet(laptop, phone)
    doc = scope(phone, "health")
    assert (readers(doc), doc["epoch"], doc["can_read"]) == (["laptop"], 2, False)

    listed = out(laptop, "scopes", "list").splitlines()
    assert len(listed) == 1 and "health" in listed[0] and "epoch 2" in listed[0] and "laptop" in listed[0]


def test_grant_takes_names_and_ids_and_several_devices(tmp_path, laptop, phone):
    speaker = tmp_path / "speaker"
    speaker_id = enrol(laptop, speaker, "speaker")
    out(laptop, "scopes", "create", "topic:home")
    out(laptop, "scopes", "grant", "topic:home", "phone", speaker_id)
    assert readers(scope(laptop, "topic:home")) == ["laptop", "phone", "speaker"]
    meet(laptop, phone, speaker)
    assert scope(speaker, "topic:home")["can_read"] and scope(phone, "topic:home")["can_read"]
    out(phone, "scopes", "revoke", "topic:home", speaker_id)      # any reader may revoke, not only the creator
    meet(laptop, phone, speaker)
    assert readers(scope(laptop, "topic:home")) == ["laptop", "phone"]
    assert scope(speaker, "topic:home")["can_read"] is False


def test_devices_add_grants_scopes_at_enrolment(tmp_path, laptop):
    out(laptop, "scopes", "create", "health")
    out(laptop, "scopes", "create", "topic:home")
    phone = tmp_path / "phone"
    enrol(laptop, phone, "phone", "--scopes", "health,topic:home")
    for name in ("health", "topic:home"):
        assert readers(scope(laptop, name)) == ["laptop", "phone"]
    kinds = [r["kind"] for r in as_json(laptop, "log")]
    assert kinds[-3:] == ["device.enroll", "scope.grant", "scope.grant"]     # the grants follow the enrolment
    meet(laptop, phone)
    assert all(s["can_read"] for s in as_json(phone, "scopes", "list"))
    event = out(phone, "observe", "mood", "calm", "--scope", "health")
    assert len(event) == 64


def test_devices_add_with_bad_scopes_changes_nothing(tmp_path, laptop, phone):
    out(phone, "scopes", "create", "diary")                   # the laptop will know of it but not read it
    meet(laptop, phone)
    out(laptop, "scopes", "create", "health")
    speaker = out(tmp_path / "speaker", "init", "--name", "speaker", "--join")
    before = fingerprint(laptop)
    for scopes, code, words in (("health,nosuch", 4, ("nosuch",)), ("health,,", 2, ("--scopes",)),
                                ("health,diary", 2, ("diary",))):
        proc = run(laptop, "devices", "add", speaker, "--name", "speaker", "--scopes", scopes, check=False)
        assert_one_line_error(proc, *words)
        assert proc.returncode == code, (scopes, proc.stderr)
        assert fingerprint(laptop) == before
    assert "speaker" not in [d["name"] for d in as_json(laptop, "devices", "list")]


def test_scope_on_each_write(laptop, phone):
    out(laptop, "scopes", "create", "health")
    events = {
        out(laptop, "observe", "diet", "vegetarian", "--scope", "health"),
        out(laptop, "pref", "set", "diet", "vegan", "--scope", "health"),
    }
    decision = out(laptop, "decide", "dose", "low", "--scope", "health")
    events |= {decision, out(laptop, "correct", decision, "none", "--scope", "health")}
    put = as_json(laptop, "memory", "put", "blood pressure 120/80", "--scope", "health")
    assert put["entry"]["scope"] == "health"
    plain = out(laptop, "observe", "theme", "dark")
    log = as_json(laptop, "log")
    scopes = {r["id"]: r["scope"] for r in log}
    assert {scopes[e] for e in events} == {"health"} and scopes[plain] == "user"
    assert [r["scope"] for r in log if r["kind"] == "memory.put"] == ["health"]
    assert as_json(laptop, "pref", "get", "diet")["value"] == "vegan"

    meet(laptop, phone)                                      # the phone carries them, sealed, and reads none
    assert as_json(phone, "pref", "get", "diet")["value"] is None
    assert as_json(phone, "pref", "get", "theme")["value"] == "dark"
    [section] = as_json(phone, "status")["scopes"]
    assert (section["scope"], section["can_read"], section["unread"]) == ("health", False, 5)
    [section] = as_json(laptop, "status")["scopes"]
    assert (section["scope"], readers(section), section["epoch"], section["can_read"], section["unread"]) == (
        "health", ["laptop"], 1, True, 0)
    status = out(phone, "status")
    assert "scope health" in status and "5 sealed events held unread" in status


def test_one_line_errors_and_exit_codes(tmp_path, laptop, phone):
    out(laptop, "scopes", "create", "health")
    meet(laptop, phone)
    cases = [
        (laptop, ("scopes", "grant", "health", "ghost"), 4, ("ghost",)),
        (laptop, ("scopes", "grant", "nosuch", "phone"), 4, ("nosuch",)),
        (laptop, ("scopes", "revoke", "nosuch", "phone"), 4, ("nosuch",)),
        (laptop, ("scopes", "revoke", "health", "ghost"), 4, ("ghost",)),
        (laptop, ("scopes", "create", "user"), 2, ("user",)),
        (laptop, ("scopes", "create", "device:ab"), 2, ("device:",)),
        (laptop, ("scopes", "create", ""), 2, ()),
        (phone, ("scopes", "grant", "health", "phone"), 2, ("health",)),     # not a reader: holds no keys to give
        (phone, ("scopes", "revoke", "health", "laptop"), 2, ("health",)),
        (phone, ("observe", "diet", "vegan", "--scope", "health"), 2, ("health",)),
        (phone, ("decide", "diet", "vegan", "--scope", "health"), 2, ("health",)),
        (phone, ("pref", "set", "diet", "vegan", "--scope", "health"), 2, ("health",)),
        (phone, ("memory", "put", "a note", "--scope", "health"), 2, ("health",)),
    ]
    for where, args, code, words in cases:
        before = fingerprint(where)
        proc = run(where, *args, check=False)
        assert_one_line_error(proc, *words)
        assert proc.returncode == code, (args, proc.stderr)
        assert fingerprint(where) == before, args

    lone = tmp_path / "lone"
    out(lone, "init", "--name", "lone", "--join")            # no group yet
    proc = run(lone, "scopes", "create", "health", check=False)
    assert_one_line_error(proc, "joined")
    assert proc.returncode == 2
