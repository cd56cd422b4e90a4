"""`agentlog peers add|list|remove nats://...` and status's relay row, as a user runs them: the CLI in a
subprocess on real homes; every refusal one line with its exit code, the home unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentlog.cli.exits import EXIT_ERROR
from agentlog.store import home
from tests.helpers.cli import as_json, assert_one_line_error, out, run

RELAY = "nats://127.0.0.1:4222"
PASSWORD = "pw-CANARY-81c2e7"


@pytest.fixture
def laptop(tmp_path):
    h = tmp_path / "laptop"
    run(h, "init", "--name", "laptop")
    return h


def fingerprint(home_dir) -> tuple:
    """What a refused command must leave alone: the events, the peers, the scopes."""
    status = as_json(home_dir, "status")
    return status["events"], status["peers"], status["scopes"], as_json(home_dir, "peers", "list")


def relay_row(home_dir) -> dict:
    [row] = [p for p in as_json(home_dir, "status")["peers"] if p["kind"] == "relay"]
    return row


def test_add_a_relay_creates_the_relay_key_and_lists_it(laptop, tmp_path):
    added = out(laptop, "peers", "add", "NATS://127.0.0.1:4222", "--user", "alice", "--password", PASSWORD,
                "--stream-max-age", "7", "--stream-max-mb", "64")
    assert added.splitlines() == [f"added relay {RELAY} (auth user alice)",
                                  "created the group's relay key (scope relay), sealed to its 1 enrolled device"]
    assert as_json(laptop, "peers", "list") == [RELAY]
    listed = out(laptop, "peers", "list")
    assert listed == f"{RELAY}  relay, auth user alice, stream 7 days / 64 MB"
    scopes = {s["scope"]: s for s in as_json(laptop, "scopes", "list")}
    assert scopes["relay"]["can_read"] and [r["name"] for r in scopes["relay"]["readers"]] == ["laptop"]
    assert relay_row(laptop) == {"kind": "relay", "device": None, "name": "relay", "address": RELAY,
                                 "state": "never", "last_seen_ms": 0, "we_lack": None, "they_lack": None, "error": "",
                                 "discovered": False}
    again = out(laptop, "peers", "add", RELAY)                   # new options replace the old; one key only
    assert again == f"updated relay {RELAY} (auth none)"
    assert len([s for s in as_json(laptop, "scopes", "list") if s["scope"] == "relay"]) == 1
    status_text = out(laptop, "status")
    assert f"peer relay        {RELAY}" in status_text and PASSWORD not in status_text + added + listed


def test_status_shows_what_serve_recorded_of_the_relay(laptop):
    out(laptop, "peers", "add", RELAY)
    with home.open_home(laptop) as store:
        assert store.peer_book.set_relay_state(RELAY, state="live", we_lack=3, they_lack=0)
        assert not store.peer_book.set_relay_state("nats://elsewhere:4222", state="live")
    row = relay_row(laptop)
    assert (row["state"], row["we_lack"], row["they_lack"], row["error"]) == ("live", 3, 0, "")
    assert row["last_seen_ms"] > 0
    [line] = [x for x in out(laptop, "status").splitlines() if x.startswith("peer relay")]
    assert f"{RELAY}  live" in line and " s ago" in line and line.endswith("we lack 3, they lack 0")
    with home.open_home(laptop) as store:
        store.peer_book.set_relay_state(RELAY, state="refused", error="Authorization Violation")
    row = relay_row(laptop)
    assert (row["state"], row["we_lack"], row["error"]) == ("refused", None, "Authorization Violation")
    assert row["last_seen_ms"] > 0                                  # kept from when it was live
    assert "(Authorization Violation)" in out(laptop, "status")
    assert out(laptop, "peers", "remove", "nats://127.0.0.1") == f"removed relay {RELAY}"
    assert [p for p in as_json(laptop, "status")["peers"] if p["kind"] == "relay"] == []
    with home.open_home(laptop) as store:
        assert not store.peer_book.set_relay_state(RELAY, state="live")      # removed: serve cannot bring it back


def test_a_password_from_standard_input_stays_out_of_the_command_line(laptop):
    env = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(laptop), "peers", "add", RELAY,
                           "--user", "alice", "--password", "-"], input=PASSWORD + "\n", capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    assert PASSWORD not in proc.stdout
    with home.open_home(laptop) as store:
        assert store.peer_book.relays()[RELAY]["password"] == PASSWORD


REFUSED = [
    (["127.0.0.1:4222x"], ["is not HOST:PORT"]),
    (["tls://127.0.0.1:4222"], ["is not HOST:PORT", "a relay is nats://HOST:PORT"]),
    (["nats://127.0.0.1:99999"], ["port '99999'"]),
    (["nats://alice:secret@127.0.0.1:4222"], ["holds credentials", "--creds"]),
    (["nats://127.0.0.1:4222/x"], ["nothing after the port"]),
    ([RELAY, "--user", "alice"], ["--user and --password go together"]),
    ([RELAY, "--creds", "/nonexistent/x.creds"], ["--creds /nonexistent/x.creds: no readable file there"]),
    ([RELAY, "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], ["--tls-cert"]),
    ([RELAY, "--stream-max-mb", "lots"], ["--stream-max-mb", "invalid int value"]),
    ([RELAY, "--stream-max-age", "0"], ["--stream-max-age must be a number of days above 0"]),
    (["127.0.0.1:4711", "--user", "alice"], ["--user is a relay option"]),
]


def test_refusals_are_one_line_and_change_nothing(laptop):
    before = fingerprint(laptop)
    for args, words in REFUSED:
        proc = run(laptop, "peers", "add", *args, check=False)
        assert_one_line_error(proc, *words)
        assert proc.returncode == EXIT_ERROR, args
        assert "secret" not in proc.stderr
    assert fingerprint(laptop) == before


def test_creds_and_user_together_are_refused(laptop, tmp_path):
    creds = tmp_path / "relay.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    proc = run(laptop, "peers", "add", RELAY, "--creds", str(creds), "--user", "a", "--password", "b", check=False)
    assert_one_line_error(proc, "either --creds FILE or --user U --password P")
    out(laptop, "peers", "add", RELAY, "--creds", str(creds))
    with home.open_home(laptop) as store:
        assert store.peer_book.relays()[RELAY]["creds"] == str(creds.resolve())


def test_a_device_not_in_a_group_yet_cannot_add_a_relay(tmp_path):
    path = tmp_path / "phone"
    run(path, "init", "--name", "phone", "--join")
    proc = run(path, "peers", "add", RELAY, check=False)
    assert_one_line_error(proc, "has not joined a group yet")
    assert proc.returncode == EXIT_ERROR


def test_the_relay_scope_is_reserved(laptop):
    out(laptop, "peers", "add", RELAY)
    before = fingerprint(laptop)
    for args, words in ((["scopes", "create", "relay"], ["reserved for the group's relay key"]),
                        (["memory", "put", "a secret", "--scope", "relay"], ["holds only the group's relay key"]),
                        (["scopes", "revoke", "relay", "laptop"], ["revoke the device from the group"])):
        proc = run(laptop, *args, check=False)
        assert_one_line_error(proc, *words)
        assert proc.returncode == EXIT_ERROR
    assert fingerprint(laptop) == before


def test_devices_add_grants_the_relay_and_the_token_carries_it(laptop, tmp_path):
    out(laptop, "peers", "add", RELAY)
    phone = tmp_path / "phone"
    device = out(phone, "init", "--name", "phone", "--join")
    token = out(laptop, "devices", "add", device, "--name", "phone")
    out(phone, "devices", "join", token)
    assert as_json(phone, "peers", "list") == [RELAY]
    with home.open_home(laptop) as a, home.open_home(phone) as b:
        assert a.relay_keys().current == b.relay_keys().current is not None
        assert "phone" in [name for _, name in a.scopes.get("relay").readers]
