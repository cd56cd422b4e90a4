"""Pairing with a short code as a user does it (docs/pairing.md): `agentlog devices invite` as a subprocess on
one fresh home, `agentlog join CODE --to 127.0.0.1:PORT` on another; without a running `serve` (the invite
listens itself) and with one (serve answers on its own port). A wrong code enrols nothing on either side;
a used or expired code is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentlog.store import home, invites
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.daemons import DEADLINE, _env, observe, snapshot
from tests.helpers.multicast import loopback_multicast


def founder(tmp_path):
    """A fresh group of one device holding a few events of its own."""
    path = tmp_path / "laptop"
    with home.create(path, "laptop") as store:
        store.create_group("laptop")
    observe(path, 3, "pair")
    return path


def invite(path, *args: str, discovery: bool = False) -> tuple[subprocess.Popen, dict]:
    """`devices invite --json` running (announced on the network only with `discovery`); its first line (the
    code and where to join)."""
    quiet = () if discovery else ("--no-discovery",)
    proc = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(path), "devices", "invite", "--json",
                             *quiet, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=DEADLINE)
    ready = json.loads(line)
    assert ready["event"] == "ready", ready
    return proc, ready


def ended(proc: subprocess.Popen) -> tuple[int, list[dict], str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def roster_names(path) -> list[str]:
    with home.open_home(path) as store:
        return sorted(m.name for m in store.roster().enrolled_members())


def wrong(code: str) -> str:
    slot, *words = code.split("-")
    return "-".join([slot, *words[:-1], "acorn" if words[-1] != "acorn" else "adapt"])


def test_without_serve_the_invite_listens_a_wrong_code_enrols_nothing_and_the_right_one_joins_and_syncs(tmp_path):
    laptop, phone = founder(tmp_path), tmp_path / "phone"
    before = snapshot(laptop)
    proc, ready = invite(laptop, "--name", "phone", "--listen", "127.0.0.1:0", "--ttl", "60")
    try:
        bad = run(phone, "join", wrong(ready["code"]), "--to", ready["address"], check=False)
        assert_one_line_error(bad, "wrong code")
        assert not phone.exists()                               # nothing stored on the joiner
        assert roster_names(laptop) == ["laptop"] and snapshot(laptop) == before

        joined = run(phone, "join", ready["code"], "--to", ready["address"])
        assert "joined group" in joined.stdout and "synced with laptop" in joined.stdout
    finally:
        code, lines, err = ended(proc)
    assert code == 0, err
    assert [e["event"] for e in lines] == ["failed", "joined"] and lines[0]["tries_left"] == 2
    assert roster_names(laptop) == roster_names(phone) == ["laptop", "phone"]
    held = snapshot(phone)
    assert held["count"] == snapshot(laptop)["count"] and held["views"] == snapshot(laptop)["views"]
    with home.open_home(phone) as store:
        assert store.peer_book.addresses() == []                # the invite's own port dies with it
    secret = ready["code"].split("-", 1)[1].encode()
    assert not [f for f in phone.rglob("*") if f.is_file() and secret in f.read_bytes()]    # the joiner keeps no code


def test_serve_answers_on_its_port_and_a_used_or_expired_code_is_one_clear_line(tmp_path, daemons):
    laptop = founder(tmp_path)
    serve = daemons(laptop)
    proc, ready = invite(laptop, "--name", "phone", "--ttl", "60")
    assert ready["address"] == serve.address
    try:
        run(tmp_path / "phone", "join", ready["code"], "--to", serve.address)
    finally:
        code, lines, err = ended(proc)
    assert code == 0 and lines[-1]["event"] == "joined", err
    with home.open_home(tmp_path / "phone") as store:
        assert store.peer_book.addresses() == [serve.address]

    again = run(tmp_path / "tablet", "join", ready["code"], "--to", serve.address, check=False)
    assert_one_line_error(again, f"no pending invite {ready['code'].split('-')[0]}")
    assert not (tmp_path / "tablet").exists()

    with home.open_home(laptop) as store:           # an invite whose command was killed: its record outlives it
        _, code = invites.create(store, "tablet", [], ttl_s=0.01)
    late = run(tmp_path / "tablet", "join", code, "--to", serve.address, check=False)
    assert_one_line_error(late, "expired")
    assert not (tmp_path / "tablet").exists() and roster_names(laptop) == ["laptop", "phone"]


@pytest.mark.skipif(not loopback_multicast(), reason="this machine does not deliver multicast on loopback (mDNS)")
def test_join_without_an_address_finds_the_invite_announced_on_the_local_network(tmp_path):
    laptop = founder(tmp_path)
    proc, ready = invite(laptop, "--name", "phone", "--listen", "127.0.0.1:0", "--ttl", "60", discovery=True)
    try:
        joined = run(tmp_path / "phone", "join", ready["code"])
    finally:
        code, lines, err = ended(proc)
    assert code == 0 and lines[-1]["event"] == "joined", err
    assert "synced with laptop" in joined.stdout
    assert roster_names(tmp_path / "phone") == ["laptop", "phone"]
