"""Issue 16, item 4, with real `agentlog serve` daemons on 127.0.0.1: a speaker that carries only what it reads
(`serve --carry readable`) holds no byte of `health`'s payloads, which the laptop and the phone read; once
granted `health`, it reads the scope's past, fetched from its peers (docs/scopes.md, "Carrying only what a
device reads").
"""

from __future__ import annotations

import json
import secrets

from agentlog.log.kinds import is_sealed_scope
from agentlog.store import home
from tests.helpers.daemons import agentlog, provision, status, wait_until
from tests.helpers.scoped import head_seq, homes_holding, reads, verified, wait_holding


def test_a_readable_speaker_carries_no_health_payload_and_reads_the_past_once_granted(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone", "speaker")
    laptop, phone, speaker = homes["laptop"], homes["phone"], homes["speaker"]
    everyone = (laptop, phone, speaker)
    agentlog(laptop, "scopes", "create", "health")
    agentlog(laptop, "scopes", "grant", "health", "phone")

    hub = daemons(speaker, heartbeat=0.5, options=("--carry", "readable"))
    desk = daemons(laptop, peers=(hub.address,), heartbeat=0.5)
    daemons(phone, listen=False, peers=(hub.address, desk.address), heartbeat=0.5)
    wait_until(lambda: reads(phone, "health"), "the phone reading health", timeout=20)

    canary = f"canary-{secrets.token_hex(12)}"
    memory_id = json.loads(agentlog(phone, "memory", "put", f"pulse note {canary}", "--scope", "health",
                                    "--json").stdout)["id"]
    agentlog(phone, "observe", "health.pulse", canary, "--scope", "health")
    wait_holding(everyone, phone, head_seq(phone), "all three holding the phone's health events")
    with home.open_home(phone) as store:
        sealed = [e.payload for e in store.events(store.device) if is_sealed_scope(e.header.scope)]
    assert len(sealed) == 2

    # Not one byte of health's ciphertexts (nor the canary) under the speaker's home, its daemon running.
    assert hub.running()
    for needle in [canary, *sealed]:
        found = homes_holding(needle, *everyone)
        assert found["speaker"] == [], f"the speaker's files hold health's payload bytes: {found['speaker']}"
        assert found["phone"] and found["laptop"], f"the readers hold them, else the scan proves nothing: {found}"
    doc = status(speaker)
    assert (doc["carry"], doc["payloads_uncarried"], doc["payloads_missing"]) == ("readable", 2, 0)
    assert [(s["scope"], s["unread"], s["uncarried"]) for s in doc["scopes"]] == [("health", 0, 2)]
    text = agentlog(speaker, "status").stdout
    assert "carries only what it reads" in text and "2 held as headers only" in text
    assert status(laptop)["carry"] == "all"
    assert verified(everyone) == {"laptop": 0, "phone": 0, "speaker": 0}
    got = agentlog(speaker, "memory", "get", memory_id, check=False)
    assert got.returncode == 4 and "cannot read scope health" in got.stderr

    # A grant: the speaker wants health's past and takes it from its peers.
    agentlog(laptop, "scopes", "grant", "health", "speaker")
    wait_until(lambda: agentlog(speaker, "memory", "get", memory_id, check=False).returncode == 0,
               "the speaker reading the phone's health memory after the grant", timeout=20)
    assert canary in agentlog(speaker, "memory", "get", memory_id).stdout
    assert json.loads(agentlog(speaker, "pref", "get", "health.pulse", "--json").stdout)["value"] == canary
    doc = status(speaker)
    assert (doc["carry"], doc["payloads_uncarried"], doc["payloads_missing"]) == ("readable", 0, 0)
    assert all(homes_holding(p, speaker)["speaker"] for p in sealed)       # fetched, and carried now
    assert verified(everyone) == {"laptop": 0, "phone": 0, "speaker": 0}
