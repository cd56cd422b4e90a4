"""Issue 17's bar for erasure, with real `agentlog serve` daemons on 127.0.0.1 (docs/erasure.md).

Three devices sync through their daemons (the phone and the tablet dial the laptop). A memory and two
observations hold canary strings, new each run. The tablet's daemon is stopped before the requests and
started after them. After `memory forget` on the laptop and `pref forget --erase` on the phone, and
syncing, no file under any of the three homes holds a canary, read byte for byte while every daemon still
runs; `verify` passes on all three; their view digests are equal; each one's `audit export` holds no
canary and `audit verify` passes on it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from agentlog.store.scrub import find
from tests.helpers.daemons import agentlog, provision, wait_converged, wait_until

SETTING = "clinic.name"


def canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


def holding(needles: list[str], *home_dirs: Path) -> dict[str, list[str]]:
    """For each home, the files under it holding a needle, as (file name @ offset)."""
    raw = [n.encode() for n in needles]
    return {h.name: [f"{p.name}@{at}" for p, at in find(h, raw)] for h in home_dirs}


def verified(home_dir: Path) -> dict:
    proc = agentlog(home_dir, "verify", "--json", check=False)
    assert proc.returncode == 0, (home_dir.name, proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)
    assert doc["ok"] and not doc["problems"], (home_dir.name, doc)
    return doc


def test_forget_and_erase_leave_no_canary_under_any_home_with_the_daemons_running(tmp_path, daemons):
    homes = provision(tmp_path / "homes", "laptop", "phone", "tablet")
    laptop, phone, tablet = homes["laptop"], homes["phone"], homes["tablet"]
    everyone = (laptop, phone, tablet)
    hub = daemons(laptop, heartbeat=0.5)
    daemons(phone, listen=False, peers=(hub.address,), heartbeat=0.5)
    tablet_daemon = daemons(tablet, listen=False, peers=(hub.address,), heartbeat=0.5)

    memo, seen, heard = canary(), canary(), canary()
    put = json.loads(agentlog(laptop, "memory", "put", f"the clinic is {memo}, room 4", "--tag", "health",
                              "--json").stdout)
    agentlog(phone, "observe", SETTING, seen)
    agentlog(tablet, "observe", SETTING, heard)
    agentlog(phone, "observe", "ui.theme", "dark")
    kept = json.loads(agentlog(phone, "memory", "put", "the build needs make install first", "--json").stdout)
    wait_converged(*everyone, timeout=60)
    before = holding([memo, seen, heard], *everyone)
    assert all(before.values()), f"every home should hold the canaries, else the scan proves nothing: {before}"

    tablet_daemon.stop()                                           # offline when the requests are made
    memory_request = agentlog(laptop, "memory", "forget", put["id"], "--reason", "the user asked").stdout.split()
    pref_out = agentlog(phone, "pref", "forget", SETTING, "--erase", "--reason", "no longer relevant").stdout.split()
    assert len(memory_request) == 1 and len(pref_out) == 2
    wait_converged(laptop, phone, timeout=60)
    wait_until(lambda: not any(holding([memo, seen, heard], laptop, phone).values()) or None,
               "no canary under the laptop's and phone's homes (a scrub ends after the commit it follows)",
               timeout=45)
    assert holding([memo, seen, heard], tablet)["tablet"], "the tablet was offline: it still holds them"

    tablet_daemon.start()
    wait_converged(*everyone, timeout=60)
    for daemon in (hub, tablet_daemon):
        assert daemon.running()
    found = wait_until(lambda: not any(holding([memo, seen, heard], *everyone).values()) or None,
                       "no canary under any home (a pending scrub is run again by serve)", timeout=45)
    assert found
    assert holding([memo, seen, heard], *everyone) == {"laptop": [], "phone": [], "tablet": []}

    digests = set()
    for home_dir in everyone:
        verified(home_dir)
        doc = json.loads(agentlog(home_dir, "status", "--json").stdout)
        assert doc["erasure"]["erased"] >= 3 and doc["erasure"]["scrub"]["pending"] is False, doc["erasure"]
        digests.add(json.dumps({n: v["digest"] for n, v in doc["views"].items()}, sort_keys=True))
        theme = json.loads(agentlog(home_dir, "pref", "get", "ui.theme", "--json").stdout)["value"]
        assert theme == "dark"                                     # other evidence keeps its state
        got = json.loads(agentlog(home_dir, "memory", "get", kept["id"], "--json").stdout)
        assert got["content"] == "the build needs make install first"
        gone = agentlog(home_dir, "memory", "get", put["id"], check=False)
        assert gone.returncode == 4 and memo not in gone.stdout + gone.stderr

        export = tmp_path / "exports" / f"{home_dir.name}.jsonl"
        export.parent.mkdir(exist_ok=True)
        agentlog(home_dir, "audit", "export", "--out", str(export))
        files = [export, export.with_suffix(".html")]
        assert all(f.is_file() for f in files)
        for f in files:
            text = f.read_bytes()
            assert not [c for c in (memo, seen, heard) if c.encode() in text], f"{f.name} holds a canary"
        lines = [json.loads(line) for line in export.read_text().splitlines()]
        assert sum(1 for e in lines if e.get("erased")) >= 3
        checked = agentlog(home_dir, "audit", "verify", str(export), check=False)
        assert checked.returncode == 0, (home_dir.name, checked.stdout, checked.stderr)
    assert len(digests) == 1, digests
