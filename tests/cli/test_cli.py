"""The agentlog command as a user runs it: real subprocesses on real homes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.helpers.cli import assert_one_line_error, run, stderr_on_a_terminal


@pytest.fixture
def two_devices(tmp_path):
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    run(laptop, "init", "--name", "laptop")
    device_id = run(phone, "init", "--name", "phone", "--join").stdout.strip()
    token = run(laptop, "devices", "add", device_id, "--name", "phone").stdout.strip()
    assert token.startswith("agentlog-join:")
    assert "joined group" in run(phone, "devices", "join", token).stdout
    return laptop, phone, device_id


def test_init_creates_a_private_key_and_a_genesis_event(tmp_path):
    home = tmp_path / "h"
    assert "created group" in run(home, "init", "--name", "laptop").stdout
    assert stat.S_IMODE((home / "device.key").stat().st_mode) == 0o600
    [event] = json.loads(run(home, "log", "--json").stdout)
    assert (event["author"], event["seq"], event["kind"]) == ("laptop", 1, "device.enroll")
    assert_one_line_error(run(home, "init", "--name", "again", check=False), "already")


def test_home_from_environment(tmp_path):
    env = dict(os.environ, AGENTLOG_HOME=str(tmp_path / "envhome"))
    subprocess.run([sys.executable, "-m", "agentlog", "init", "--name", "x"], check=True, env=env, capture_output=True)
    assert (tmp_path / "envhome" / "device.key").is_file()


def test_observe_log_verify(tmp_path):
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    eid = run(home, "observe", "theme", "dark", "--context", "daypart=night", "--weight", "2").stdout.strip()
    assert len(eid) == 64
    events = json.loads(run(home, "log", "--json").stdout)
    assert [e["kind"] for e in events] == ["device.enroll", "observation"]
    assert events[1]["id"] == eid and set(events[1]) >= {"author", "seq", "kind", "scope", "time", "id"}
    report = json.loads(run(home, "verify", "--json").stdout)
    assert report == {"ok": True, "checked": 2, "problems": [], "forks": [], "after_revocation": [], "withheld": [],
                      "uncarried": 0, "damaged_signatures": [], "damage": [], "notes": []}


def test_join_flow_and_device_listing(two_devices):
    laptop, phone, device_id = two_devices
    run(phone, "observe", "theme", "light")
    listed = {d["name"]: d for d in json.loads(run(laptop, "devices", "list", "--json").stdout)}
    assert listed["phone"]["id"] == device_id and listed["phone"]["status"] == "active"
    assert listed["laptop"]["founder"] and listed["laptop"]["this_device"]
    assert run(phone, "verify").returncode == 0
    assert (
        json.loads(run(phone, "status", "--json").stdout)["group"]
        == json.loads(run(laptop, "status", "--json").stdout)["group"]
    )


def test_revoke_by_name(two_devices):
    laptop, phone, _ = two_devices
    assert "revoked 'phone'" in run(laptop, "devices", "revoke", "phone").stdout
    listed = {d["name"]: d for d in json.loads(run(laptop, "devices", "list", "--json").stdout)}
    assert listed["phone"]["status"] == "revoked"
    assert_one_line_error(run(laptop, "devices", "revoke", "phone", check=False), "already revoked")
    assert_one_line_error(run(laptop, "devices", "revoke", "laptop", check=False), "cannot revoke itself")


@pytest.mark.parametrize("args, words", [
    (("observe", "theme", "dark", "--context", "nokey"), ("key=value",)),
    (("log", "--author", "nobody"), ("nobody",)),
    (("devices", "add", "zz", "--name", "x"), ("not hexadecimal",)),
    (("devices", "add", "ab" * 31, "--name", "x"), ("Ed25519",)),
    (("devices", "join", "agentlog-join:AAAA"), ("already belongs",)),
    (("devices", "revoke", "ghost"), ("ghost",)),
])
def test_user_mistakes_get_one_line(tmp_path, args, words):
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    assert_one_line_error(run(home, *args, check=False), *words)


@pytest.mark.parametrize("token, words", [
    ("agentlog-join:AAAA", ("join token",)),
    ("agentlog-join:!!!", ("base64",)),
    ("agentlog-join:AA+/", ("base64url",)),
    ("agentlog-join:" + "A" * 100_000, ("over the limit",)),
    ("hello", ("agentlog-join:",)),
])
def test_bad_tokens_get_one_line(tmp_path, token, words):
    home = tmp_path / "h"
    run(home, "init", "--name", "phone", "--join")
    assert_one_line_error(run(home, "devices", "join", token, check=False), *words)
    assert_one_line_error(run(home, "observe", "a", "b", check=False), "devices join")


def test_home_option_after_the_command_and_usage_errors_in_one_line(tmp_path):
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    proc = subprocess.run([sys.executable, "-m", "agentlog", "observe", "theme", "dark", "--home", str(home)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 64
    assert_one_line_error(run(home, "init", check=False), "--name")
    assert_one_line_error(run(home, "observe", "--weight", "x", "a", "b", check=False), "--weight")


def test_missing_home_and_open_key_file(tmp_path):
    assert_one_line_error(run(tmp_path / "none", "log", check=False), "agentlog init")
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    os.chmod(home / "device.key", 0o644)
    assert_one_line_error(run(home, "log", check=False), "chmod 600")


def test_token_for_another_device_is_refused(tmp_path):
    laptop, phone, other = tmp_path / "laptop", tmp_path / "phone", tmp_path / "other"
    run(laptop, "init", "--name", "laptop")
    device_id = run(phone, "init", "--name", "phone", "--join").stdout.strip()
    run(other, "init", "--name", "other", "--join")
    token = run(laptop, "devices", "add", device_id, "--name", "phone").stdout.strip()
    assert_one_line_error(run(other, "devices", "join", token, check=False), "not this one")


def test_device_names_of_every_length_give_working_tokens(tmp_path):
    laptop = tmp_path / "laptop"
    run(laptop, "init", "--name", "laptop")
    for n in range(1, 6):
        phone = tmp_path / f"phone{n}"
        name = "p" * (15 + n)
        device_id = run(phone, "init", "--name", name, "--join").stdout.strip()
        token = run(laptop, "devices", "add", device_id, "--name", name).stdout.strip()
        run(phone, "devices", "join", token)


def test_verify_names_a_tampered_event(tmp_path):
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    run(home, "observe", "theme", "dark-and-unique-value")
    data = home / "store" / "data.mdb"
    raw = bytearray(data.read_bytes())
    at = raw.find(b"dark-and-unique-value")
    while at >= 0:
        raw[at] ^= 0x20
        at = raw.find(b"dark-and-unique-value", at + 1)
    data.write_bytes(bytes(raw))
    proc = run(home, "verify", check=False)
    assert proc.returncode == 1
    device = json.loads(run(home, 'status', '--json').stdout)['device']
    assert proc.stdout.strip().splitlines() == [
        f"laptop ({device[:16]}) seq 2: payload does not match the header's payload hash"
    ]


def test_verify_reports_a_record_cut_short_and_views_it_cannot_fold(tmp_path):
    """Damage that stops the views' fold as well as naming an event: a report and exit 1, no traceback (the
    lines naming events used to need a roster the damaged-views case never read)."""
    from agentlog.store.layout import event_key
    from agentlog.store.store import Store

    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    for value in ("dark", "light", "sepia"):
        run(home, "observe", "theme", value)
    device = bytes.fromhex(json.loads(run(home, "status", "--json").stdout)["device"])
    store = Store(home / "store", None)
    try:
        with store.raw_txn(write=True) as txn:
            key = event_key(device, 0, 3)
            txn.put(key, bytes(txn.get(key, db=store.db("events"))[:40]), db=store.db("events"))
    finally:
        store.close()
    proc = run(home, "verify", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("views not checked: the log does not fold (")
    assert f"laptop ({device.hex()[:16]}) seq 3: header does not decode: event record is 40 bytes, too short " \
           "to hold a signature" in lines


def test_status_reports_heads_and_each_view_with_its_frontier(two_devices):
    laptop, phone, _ = two_devices
    status = json.loads(run(laptop, "status", "--json").stdout)
    assert status["heads"]["laptop"]["seq"] == 2 and status["events"] == 2
    assert status["views"]["roster"]["frontier"] == {"laptop": 2}
    assert len(status["views"]["roster"]["digest"]) == 64


def test_verify_shows_progress_on_a_terminal_only(tmp_path):
    home = tmp_path / "h"
    run(home, "init", "--name", "laptop")
    assert b"verify: 1/1 (100%)" in stderr_on_a_terminal(home, "verify")
    assert b"verify:" not in stderr_on_a_terminal(home, "verify", "--json")
    assert "verify:" not in run(home, "verify").stderr


def test_lost_token_can_be_printed_again_until_the_device_writes(tmp_path):
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    run(laptop, "init", "--name", "laptop")
    device_id = run(phone, "init", "--name", "phone", "--join").stdout.strip()
    run(laptop, "devices", "add", device_id, "--name", "phone")
    again = run(laptop, "devices", "add", device_id, "--name", "phone").stdout.strip()
    assert again.startswith("agentlog-join:") and len(json.loads(run(laptop, "log", "--json").stdout)) == 2
    run(phone, "devices", "join", again)
    assert_one_line_error(run(laptop, "devices", "add", device_id, "--name", "other", check=False), "already known")


def test_version_prints_the_installed_distributions_version():
    from importlib.metadata import version
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"agentlog {version('agentlog')}"
