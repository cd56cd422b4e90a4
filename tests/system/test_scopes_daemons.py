"""Issue 16's bars for sealed scopes, with real `agentlog serve` daemons on 127.0.0.1 (docs/scopes.md).

Three devices: the laptop founds the group and creates `health`, readable by the laptop and the phone;
the speaker reads `user` only. The laptop and the phone each dial only the speaker (neither listens), so
whatever the laptop gets from the phone went through a device that cannot read it. Canary strings, new
each run, are written in `health`; every file under a home that must not read them is read, byte for
byte, while its daemon still runs.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.helpers.daemons import agentlog, provision, status, wait_until
from tests.helpers.scoped import head_seq, homes_holding, reads, same_events, verified, wait_holding

SETTING = "health.note"


def canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


def peer_names(home_dir: Path) -> set[str]:
    return {p["name"] or p["address"] for p in status(home_dir)["peers"]}


def pref(home_dir: Path) -> str | None:
    return json.loads(agentlog(home_dir, "pref", "get", SETTING, "--json").stdout)["value"]


def one_line(proc, *words: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentlog: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_health_is_sealed_from_the_speaker_that_relays_it(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone", "speaker")
    laptop, phone, speaker = homes["laptop"], homes["phone"], homes["speaker"]
    everyone = (laptop, phone, speaker)
    agentlog(laptop, "scopes", "create", "health")
    agentlog(laptop, "scopes", "grant", "health", "phone")

    hub = daemons(speaker, heartbeat=0.5)
    daemons(laptop, listen=False, peers=(hub.address,), heartbeat=0.5)
    daemons(phone, listen=False, peers=(hub.address,), heartbeat=0.5)
    wait_until(lambda: reads(phone, "health"), "the phone reading health, granted through the speaker", timeout=45)
    assert not reads(speaker, "health")

    # The phone writes in health while every daemon runs.
    first = canary()
    put = json.loads(agentlog(phone, "memory", "put", f"blood pressure note {first}", "--scope", "health",
                              "--tag", "vitals", "--json").stdout)
    memory_id = put["id"]
    agentlog(phone, "observe", SETTING, first, "--scope", "health")
    common = wait_holding(everyone, phone, head_seq(phone), "all three holding the phone's health events")

    # Bar 1: not one byte of the canary under the speaker's home, with its daemon still running.
    assert hub.running()
    found = homes_holding(first, *everyone)
    assert found["speaker"] == [], f"the speaker's files hold the canary: {found['speaker']}"
    assert found["phone"] and found["laptop"], f"the readers should hold it, else the scan proves nothing: {found}"

    # Bar 2: the laptop got it only through the speaker, and reads it.
    for home_dir in (laptop, phone):
        wait_until(lambda h=home_dir: peer_names(h) == {"speaker"}, f"{home_dir.name}'s only peer the speaker")
    hits = json.loads(agentlog(laptop, "memory", "search", first, "--lexical", "--json").stdout)["hits"]
    assert [h["entry"]["id"] for h in hits] == [memory_id]
    assert first in hits[0]["entry"]["content"]
    hits = json.loads(agentlog(laptop, "memory", "search", f"blood pressure note {first}", "--json").stdout)["hits"]
    assert memory_id in [h["entry"]["id"] for h in hits]
    assert pref(laptop) == first

    got = agentlog(speaker, "memory", "get", memory_id, check=False)
    assert got.returncode == 4, (got.returncode, got.stdout, got.stderr)
    assert first not in got.stdout + got.stderr
    one_line(got, "cannot read scope health")
    assert pref(speaker) is None

    assert verified(everyone) == {"laptop": 0, "phone": 0, "speaker": 2}
    assert same_events(*everyone)["frontier"] == common["frontier"]

    # Bar 3: the laptop revokes the phone; what it writes in health next never reaches the phone readable.
    agentlog(laptop, "scopes", "revoke", "health", "phone")
    second = canary()
    agentlog(laptop, "memory", "put", f"after revocation {second}", "--scope", "health")
    agentlog(laptop, "pref", "set", SETTING, second, "--scope", "health")
    wait_holding(everyone, laptop, head_seq(laptop), "all three holding the laptop's events after the revocation")
    assert not reads(phone, "health")
    found = homes_holding(second, *everyone)
    assert found["phone"] == [], f"the revoked phone's files hold the second canary: {found['phone']}"
    assert found["speaker"] == [], f"the speaker's files hold the second canary: {found['speaker']}"
    assert found["laptop"], "the laptop's files should hold the second canary"
    assert pref(laptop) == second
    assert pref(phone) == first
    # What the phone held before the revocation stays readable to it (docs/scopes.md, "Revoking").
    assert first in agentlog(phone, "memory", "get", memory_id).stdout
    assert verified(everyone) == {"laptop": 0, "phone": 2, "speaker": 4}
