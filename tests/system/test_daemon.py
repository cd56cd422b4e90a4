"""`agentlog serve` as real daemons: subprocesses replicating over 127.0.0.1, started and stopped by PID.

Convergence of three devices, live push, a partition that heals, kill -9 in the middle of a
transfer, per-peer status, `agentlog sync`, and refusals of devices that are not (or no
longer) members. Every wait polls against a generous deadline; nothing asserts on timing.
"""

from __future__ import annotations

import json

from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.peers import Peers
from tests.helpers.daemons import (
    DEADLINE,
    Daemon,
    agentlog,
    closed_port,
    observe,
    provision,
    snapshot,
    status,
    wait_converged,
    wait_until,
)

GENESIS_AND_ENROLMENTS = {2: 2, 3: 3}        # devices in the group -> events before anyone writes


def one_line_error(proc, *words: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentlog: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def holds(home_dir, eid_hex: str) -> bool:
    with home.open_home(home_dir) as store:
        return store.get(bytes.fromhex(eid_hex)) is not None


def peer_states(home_dir) -> dict[str, dict]:
    """`agentlog status --json`'s peers, by name (or by address for a peer never reached)."""
    return {p["name"] or p["address"]: p for p in status(home_dir)["peers"]}


def peer_state(home_dir, name: str) -> str | None:
    """One peer's state in `agentlog status --json` (None until the daemon has saved one)."""
    return peer_states(home_dir).get(name, {}).get("state")


def test_three_devices_converge(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone", "hub")
    laptop = daemons(homes["laptop"])
    daemons(homes["phone"], listen=False, peers=(laptop.address,))
    daemons(homes["hub"], listen=False, peers=(laptop.address,))
    # Every device writes while the daemons run: from another process on its home, and with the CLI.
    for name, path in homes.items():
        observe(path, 20, tag=name)
    agentlog(homes["phone"], "memory", "put", "the user takes tea without sugar", "--tag", "drinks")
    agentlog(homes["hub"], "observe", "theme", "dark")
    agentlog(homes["laptop"], "memory", "put", "standup moved to 10:00", "--type", "context")
    total = GENESIS_AND_ENROLMENTS[3] + 3 * 20 + 3
    wait_converged(*homes.values(), count=total)

    docs = {name: status(path) for name, path in homes.items()}
    digests = {name: {v: d["views"][v]["digest"] for v in d["views"]} for name, d in docs.items()}
    assert digests["laptop"] == digests["phone"] == digests["hub"]
    assert {name: d["events"] for name, d in docs.items()} == {"laptop": total, "phone": total, "hub": total}
    assert docs["laptop"]["heads"] == docs["phone"]["heads"] == docs["hub"]["heads"]
    assert {d["heads"]["phone"]["seq"] for d in docs.values()} == {21}
    assert all(d["forks"] == [] for d in docs.values())
    # The hub only talks to the laptop: the phone's memory reached it through the laptop.
    listed = json.loads(agentlog(homes["hub"], "memory", "list", "--json").stdout)
    assert {e["content"] for e in listed} == {"the user takes tea without sugar", "standup moved to 10:00"}
    for path in homes.values():
        assert json.loads(agentlog(path, "verify", "--json").stdout)["ok"]


def test_live_push_reaches_every_device(tmp_path, daemons):
    """With heartbeats 60 s apart, only the live push can move an event within the deadline."""
    homes = provision(tmp_path, "laptop", "phone", "hub")
    laptop = daemons(homes["laptop"], heartbeat=60)
    daemons(homes["phone"], listen=False, peers=(laptop.address,), heartbeat=60)
    daemons(homes["hub"], listen=False, peers=(laptop.address,), heartbeat=60)
    wait_converged(*homes.values(), count=GENESIS_AND_ENROLMENTS[3])
    for writer in ("phone", "laptop", "hub"):
        eid = agentlog(homes[writer], "observe", "theme", f"set on {writer}").stdout.strip()
        for reader in homes:
            wait_until(lambda path=homes[reader], eid=eid: holds(path, eid), f"{writer}'s event reaches {reader}",
                       timeout=10)
    wait_converged(*homes.values(), count=GENESIS_AND_ENROLMENTS[3] + 3)


def test_partition_heals_after_a_restart(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone", "hub")
    laptop = daemons(homes["laptop"])
    daemons(homes["phone"], listen=False, peers=(laptop.address,))
    hub = daemons(homes["hub"], listen=False, peers=(laptop.address,))
    observe(homes["hub"], 5, tag="before")
    wait_converged(*homes.values(), count=3 + 5)

    assert hub.stop() == 0
    events = [e["event"] for e in hub.logs()]
    assert "stopping" in events and events[-1] == "stopped", events
    assert next(e for e in hub.logs() if e["event"] == "stopping")["signal"] == "SIGTERM"
    laptop.wait_log(lambda e: e["event"] == "connection closed" and e["peer"] == "hub", "the hub's link closing")

    # Both sides of the partition write; the phone keeps up with the laptop meanwhile.
    observe(homes["hub"], 7, tag="offline")
    agentlog(homes["hub"], "memory", "put", "written while partitioned")
    observe(homes["laptop"], 4, tag="meanwhile")
    wait_converged(homes["laptop"], homes["phone"], count=3 + 5 + 4)
    assert snapshot(homes["hub"])["count"] == 3 + 5 + 8
    wait_until(lambda: peer_state(homes["laptop"], "hub") == "partitioned", "laptop sees the hub partitioned")

    hub.start()
    snap = wait_converged(*homes.values(), count=3 + 5 + 8 + 4)
    assert snap["forks"] == 0
    wait_until(lambda: peer_state(homes["laptop"], "hub") == "connected", "laptop sees the hub again")


def test_kill_9_mid_transfer_loses_nothing_acked_and_resumes(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    n = 30_000
    with home.open_home(homes["laptop"]) as store:
        store.append_many([payloads.Observation(setting=f"bulk.{i % 97}", value=f"value {i}") for i in range(n)])
        laptop_id = store.device
    total = GENESIS_AND_ENROLMENTS[2] + n
    laptop = daemons(homes["laptop"])
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address,))

    with home.open_home(homes["phone"]) as watcher:
        def some():
            held = watcher.count()
            return held if held >= n // 10 else None
        got = wait_until(some, "the phone holds a tenth of the laptop's events", interval=0.005)
        assert got < total - n // 10, f"the transfer finished ({got} events) before the kill: nothing was interrupted"
        assert phone.kill() == -9
    # What the laptop recorded as acked by the phone, once it saw the connection end.
    def acked_by_phone():
        with home.open_home(homes["laptop"]) as store:
            states = {s.name: s for s in Peers(store).states().values()}
        s = states.get("phone")
        return s if s is not None and s.state == "partitioned" else None
    acked = wait_until(acked_by_phone, "the laptop records the phone's link as ended").frontier.get(laptop_id.hex(), 0)

    # The killed daemon's home opens and verifies, and holds a whole prefix of the laptop's chain.
    with home.open_home(homes["phone"]) as store:
        heads, count = store.heads(), store.count()
        seqs = [e.header.seq for e in store.events(laptop_id)]
    assert 0 < heads[laptop_id].seq < total
    assert seqs == list(range(1, heads[laptop_id].seq + 1))
    assert count == sum(h.seq for h in heads.values())
    assert heads[laptop_id].seq >= acked, f"the laptop saw seq {acked} acked, the phone holds {heads[laptop_id].seq}"
    report = json.loads(agentlog(homes["phone"], "verify", "--json").stdout)
    assert report["ok"] and report["checked"] == count and not report["problems"], report

    phone.start()
    wait_converged(homes["laptop"], homes["phone"], count=total, timeout=2 * DEADLINE)
    assert json.loads(agentlog(homes["phone"], "verify", "--json").stdout)["ok"]


def test_status_shows_each_peer_connected_partitioned_or_never(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    silent = f"127.0.0.1:{closed_port()}"
    assert "added peer" in agentlog(homes["phone"], "peers", "add", silent).stdout
    laptop = daemons(homes["laptop"])
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address,))
    observe(homes["laptop"], 3)
    wait_converged(homes["laptop"], homes["phone"], count=2 + 3)

    def states():
        return {k: p["state"] for k, p in peer_states(homes["phone"]).items()}

    def connected():
        peers = peer_states(homes["phone"])
        return peers if peers.get("laptop", {}).get("state") == "connected" else None
    peers = wait_until(connected, "the phone's status shows the laptop connected")
    assert peers[silent]["state"] == "never" and peers[silent]["last_seen_ms"] == 0
    assert peers["laptop"]["address"] == laptop.address and peers["laptop"]["last_seen_ms"] > 0
    text = agentlog(homes["phone"], "status").stdout
    assert "connected" in text and "never" in text

    # A real partition: the laptop's daemon stops answering (SIGSTOP); heartbeats go unanswered.
    laptop.pause()
    try:
        wait_until(lambda: states().get("laptop") == "partitioned", "the phone's status shows the laptop partitioned")
        closed = phone.wait_log(lambda e: e["event"] == "connection closed" and "partitioned" in e["reason"],
                                "the phone closing the silent link")
        assert closed["peer"] == "laptop", closed       # named from the roster that arrived after connecting
        assert states()[silent] == "never"
    finally:
        laptop.resume()
    wait_until(lambda: states().get("laptop") == "connected", "the phone reconnects once the laptop answers again")
    eid = agentlog(homes["laptop"], "observe", "theme", "after the partition").stdout.strip()
    wait_until(lambda: holds(homes["phone"], eid), "an event written after the partition reaches the phone")


def test_sync_command(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    other = tmp_path / "other"
    agentlog(other, "init", "--name", "stranger")
    laptop = daemons(homes["laptop"])
    observe(homes["phone"], 3, tag="phone")

    done = agentlog(homes["phone"], "sync", laptop.address)
    assert done.stdout.strip() == (f"synced with laptop at {laptop.address}: received 2 events, sent 3; "
                                   f"this device now holds 5")
    wait_converged(homes["laptop"], homes["phone"], count=5)
    observe(homes["laptop"], 2, tag="laptop")
    doc = json.loads(agentlog(homes["phone"], "sync", laptop.address, "--json").stdout)
    assert (doc["peer"], doc["received"], doc["sent"], doc["events"], doc["new"]) == ("laptop", 2, 0, 7, 2)

    nobody = f"127.0.0.1:{closed_port()}"
    one_line_error(agentlog(homes["phone"], "sync", nobody, check=False), nobody, "cannot connect")
    one_line_error(agentlog(other, "sync", laptop.address, check=False), "refused", "group")
    refusal = laptop.wait_log(lambda e: e["event"] == "handshake refused", "the other group's refusal")
    assert "group" in refusal["reason"]
    assert snapshot(homes["laptop"])["count"] == 7 and snapshot(other)["count"] == 1


def test_unenrolled_and_revoked_devices_are_refused(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    # A device that holds the group's secret (a leaked token, say) but was never enrolled.
    stranger_home = tmp_path / "stranger"
    with home.open_home(homes["laptop"]) as laptop_store:
        secrets = {name: laptop_store.meta(name) for name in ("group", "group_key", "founder", "genesis")}
    with home.create(stranger_home, "stranger") as stranger:
        stranger.set_meta(secrets)
        stranger_id = stranger.device.hex()
    laptop = daemons(homes["laptop"])
    before = snapshot(homes["laptop"])

    line = one_line_error(agentlog(stranger_home, "sync", laptop.address, check=False), "refused", "not enrolled")
    assert stranger_id[:16] in line
    refusal = laptop.wait_log(lambda e: e["event"] == "handshake refused", "the stranger's refusal")
    assert "not enrolled" in refusal["reason"] and stranger_id[:16] in refusal["reason"]

    # The phone syncs, is revoked on the laptop, and is refused from then on: by `sync` and its daemon.
    agentlog(homes["phone"], "sync", laptop.address)
    agentlog(homes["laptop"], "devices", "revoke", "phone", "--reason", "lost")
    line = one_line_error(agentlog(homes["phone"], "sync", laptop.address, check=False), "refused", "revoked")
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address,))
    failed = phone.wait_log(lambda e: e["event"] == "connect failed", "the phone's daemon being refused")
    assert "revoked" in failed["reason"] and "refused" in failed["reason"]
    refusals = [e for e in laptop.logs() if e["event"] == "handshake refused"]
    assert any("revoked" in e["reason"] for e in refusals), refusals
    after = snapshot(homes["laptop"])
    assert after["count"] == before["count"] + 1 and after["forks"] == 0        # + the revocation


def test_revoking_a_connected_device_cuts_its_link(tmp_path, daemons):
    """A revocation written while the device is connected ends that link at once: nothing more is sent to it."""
    homes = provision(tmp_path, "laptop", "phone")
    laptop = daemons(homes["laptop"], heartbeat=60)
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address,), heartbeat=60)
    wait_converged(*homes.values(), count=GENESIS_AND_ENROLMENTS[2])
    agentlog(homes["laptop"], "devices", "revoke", "phone", "--reason", "stolen")
    closed = laptop.wait_log(lambda e: e["event"] == "connection closed" and "revoked" in e.get("reason", ""),
                             "the laptop closing the revoked phone's link")
    assert closed["peer"] == "phone"
    eid = agentlog(homes["laptop"], "observe", "theme", "after the revocation").stdout.strip()
    phone.wait_log(lambda e: e["event"] == "connect failed" and "revoked" in e.get("reason", ""),
                   "the phone's redial being refused")
    assert not holds(homes["phone"], eid)


def test_a_peer_refusing_after_the_handshake_does_not_stop_the_daemon(tmp_path, daemons):
    """The phone holds the group's history but not the hub's enrolment (written after the phone synced), so
    it refuses the hub after the hub's side of the handshake ended: the hub closes that link and keeps serving."""
    from agentlog.store import devices
    homes = provision(tmp_path, "laptop", "phone")
    laptop = daemons(homes["laptop"])
    agentlog(homes["phone"], "sync", laptop.address)
    homes["hub"] = tmp_path / "hub"
    with home.create(homes["hub"], "hub") as hub_store, home.open_home(homes["laptop"]) as laptop_store:
        devices.join(hub_store, devices.enroll(laptop_store, hub_store.device, "hub"))
    hub = daemons(homes["hub"], peers=(laptop.address,))
    wait_converged(homes["laptop"], homes["hub"], count=GENESIS_AND_ENROLMENTS[3])
    phone = daemons(homes["phone"], listen=False, peers=(hub.address,))
    phone.wait_log(lambda e: e["event"] == "connect failed" and "not enrolled" in e.get("reason", ""),
                   "the phone refusing the hub it does not know")
    hub.wait_log(
        lambda e: "refused" in e.get("reason", "") and e["event"] in ("connection closed", "connection failed"),
        "the hub logging the phone's refusal",
    )
    assert hub.proc.poll() is None, "the hub's daemon died"
    observe(homes["laptop"], 1, tag="after")
    wait_converged(homes["laptop"], homes["hub"], count=GENESIS_AND_ENROLMENTS[3] + 1)


def test_serve_starts_without_the_code_a_start_does_not_need(tmp_path, monkeypatch):
    """SPAKE2 (and the cryptography package it loads) waits for a pairing, the relay's modules for a relay, and
    rich (structlog's console tracebacks) is never loaded: each cost every daemon's start tens of milliseconds.
    (Python's import timings go to the daemon's log, so no `daemons` fixture: it refuses lines that are not JSON.)"""
    homes = provision(tmp_path, "laptop", "phone")
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    laptop = Daemon(homes["laptop"])
    try:
        laptop.start()
        loaded = {line.rpartition("|")[2].strip() for line in laptop.lines() if line.startswith("import time:")}
    finally:
        laptop.cleanup()
    assert {"agentlog.sync.replicator", "agentlog.sync.pair_net", "structlog"} <= loaded
    unwanted = ("spake2", "cryptography", "rich.", "agentlog.relay.envelope", "agentlog.sync.relay_peer")
    assert sorted(m for m in loaded if m.startswith(unwanted)) == []
