"""Issue 18's bars for the blind relay with real `agentlog serve` daemons and a real nats-server
(docs/relay.md): a laptop and a phone that never run at the same time converge through the relay, both ways;
the relay's store holds no canary payload, device key or group id; kill -9 of the server, a device or both
loses nothing acknowledged; a rogue client's garbage on the group's subjects is skipped; wrong credentials
leave the relay refused, the daemon running."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.helpers.daemons import agentlog, observe, snapshot, status, wait_until
from tests.helpers.nats import NatsServer
from tests.helpers.relay_server import (
    identities,
    publish,
    relay_events,
    relay_homes,
    relay_messages,
    stored_messages,
    streams,
)
from tests.helpers.scoped import files_holding

SLOW = 60.0      # seconds: a daemon's start, a connect and a catch-up through the relay on a busy machine


def canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


def relay_peer(home_dir) -> dict:
    """The relay's entry in `status --json`."""
    found = [p for p in status(home_dir)["peers"] if p.get("kind") == "relay"]
    assert len(found) == 1, status(home_dir)["peers"]
    return found[0]


def published_all(server: NatsServer, home_dir) -> bool:
    """The relay holds every event this home holds (a message holds one event or a run of them)."""
    return len(set(relay_events(server, home_dir))) >= snapshot(home_dir)["count"]


def holds(home_dir, frontier: dict) -> bool:
    """This home holds every event of `frontier` (author -> seq)."""
    mine = snapshot(home_dir)["frontier"]
    return all(mine.get(author, 0) >= seq for author, seq in frontier.items())


def up_alone(daemons, home_dir, server: NatsServer, then=None):
    """Start this home's daemon alone; wait until it published all it holds (and `then` holds); stop it."""
    daemon = daemons(home_dir, listen=False)
    wait_until(lambda: published_all(server, home_dir) and (then is None or then()),
               f"{home_dir.name} up alone, through the relay", timeout=SLOW)
    assert daemon.stop() == 0
    return daemon


def test_laptop_and_phone_never_up_at_once_converge_through_the_relay(tmp_path, nats_server, daemons):
    homes = relay_homes(tmp_path, nats_server, "laptop", "phone")
    laptop, phone = homes["laptop"], homes["phone"]

    # The phone writes while the laptop is stopped, publishes, stops.
    observe(phone, 20, tag="phone")
    up_alone(daemons, phone, nats_server)
    wanted = snapshot(phone)["frontier"]
    assert not holds(laptop, wanted)

    # The laptop starts alone and gets the phone's events from the relay; writes; stops.
    up_alone(daemons, laptop, nats_server, then=lambda: holds(laptop, wanted))
    observe(laptop, 30, tag="laptop")
    up_alone(daemons, laptop, nats_server)

    # And back: the phone, alone again, gets the laptop's.
    wanted = snapshot(laptop)["frontier"]
    up_alone(daemons, phone, nats_server, then=lambda: holds(phone, wanted))
    assert snapshot(phone)["frontier"] == snapshot(laptop)["frontier"]
    assert snapshot(phone)["views"] == snapshot(laptop)["views"]
    assert snapshot(phone)["count"] == len(relay_events(nats_server, phone))      # each event once on the relay


def test_the_relay_stores_no_payload_device_key_or_group_id(tmp_path, nats_server, daemons):
    homes = relay_homes(tmp_path, nats_server, "laptop", "phone")
    laptop, phone = homes["laptop"], homes["phone"]
    secret = canary()
    agentlog(phone, "observe", "health.note", secret)
    agentlog(phone, "memory", "put", f"the door code is {secret}")
    d_phone = daemons(phone, listen=False)
    d_laptop = daemons(laptop, listen=False)
    wanted = snapshot(phone)["frontier"]
    wait_until(lambda: holds(laptop, wanted), "the laptop holding the phone's canary through the relay", SLOW)
    assert d_phone.running() and d_laptop.running() and nats_server.running

    phone_key, group = identities(phone)
    laptop_key, _ = identities(laptop)
    needles = {"canary": secret.encode(), "group id": group, "group id hex": group.hex().encode(),
               "group id HEX": group.hex().upper().encode()}
    for name, key in (("phone", phone_key), ("laptop", laptop_key)):
        needles |= {f"{name} key": key, f"{name} key hex": key.hex().encode(),
                    f"{name} key HEX": key.hex().upper().encode()}
    files = [p for p in nats_server.store_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".blk" for p in files), "the relay stored no message: the scan proves nothing"
    (stream, info), = streams(nats_server).items()
    tag = info["subjects"][0].split(".")[1]
    assert files_holding(nats_server.store_dir, tag), "the scan finds not even the group's keyed tag"
    leaks = {name: files_holding(nats_server.store_dir, needle) for name, needle in needles.items()}
    assert not any(leaks.values()), f"the relay's store holds: {leaks}"
    assert files_holding(laptop, secret), "the laptop should hold the canary, else the scan proves nothing"

    # What any client of the relay reads: subjects and bodies hold none of it either.
    for subject, body in stored_messages(nats_server, stream):
        for name, needle in needles.items():
            assert needle not in body and needle not in subject.encode(), f"{name} in a message on {subject}"


@pytest.mark.slow
@pytest.mark.parametrize("victims", ["server", "device", "both"])
def test_kill_9_loses_nothing_acknowledged(tmp_path, nats_server, daemons, victims):
    homes = relay_homes(tmp_path, nats_server, "laptop", "phone")
    laptop, phone = homes["laptop"], homes["phone"]
    d_phone = daemons(phone, listen=False)
    observe(phone, 200, tag="before")
    wait_until(lambda: published_all(nats_server, phone), "the phone publishing its first events", SLOW)
    acknowledged = relay_messages(nats_server)

    # More events commit on the phone while the victims die mid-publish.
    observe(phone, 300, tag="during")
    if victims in ("server", "both"):
        nats_server.kill()
    if victims in ("device", "both"):
        d_phone.kill()
    if victims in ("server", "both"):
        nats_server.start()
        assert relay_messages(nats_server) >= acknowledged, "the relay lost messages it had acknowledged"
    observe(phone, 100, tag="after")
    if not d_phone.running():
        d_phone = daemons(phone, listen=False)
    wait_until(lambda: published_all(nats_server, phone), "the phone publishing all, after the kill", SLOW)
    d_phone.stop()

    wanted = snapshot(phone)["frontier"]
    up_alone(daemons, laptop, nats_server, then=lambda: holds(laptop, wanted))
    assert snapshot(laptop)["frontier"] == wanted
    assert snapshot(laptop)["views"] == snapshot(phone)["views"]


def test_garbage_on_the_groups_subjects_is_skipped(tmp_path, nats_server, daemons):
    homes = relay_homes(tmp_path, nats_server, "laptop", "phone")
    laptop, phone = homes["laptop"], homes["phone"]
    d_laptop = daemons(laptop, listen=False)
    d_phone = daemons(phone, listen=False)
    observe(phone, 5, tag="first")
    wanted = snapshot(phone)["frontier"]
    wait_until(lambda: holds(laptop, wanted), "the first events through the relay", SLOW)

    # The rogue sees what the relay sees: the group's stream, its subjects and sealed bodies.
    (stream, info), = streams(nats_server).items()
    prefix = info["subjects"][0].removesuffix(">")
    stored = stored_messages(nats_server, stream)
    real_subject, real_body = stored[0]
    other = next((s for s, _ in stored if s != real_subject), prefix + "e" * 32)
    flipped = bytearray(real_body)
    flipped[-1] ^= 1
    garbage = [(real_subject, os.urandom(200), None), (real_subject, b"", None),
               (real_subject, bytes(flipped), None), (real_subject, real_body[:40], None),
               (other, real_body, None),                       # a real body moved to another subject
               (prefix + "snapshot", os.urandom(500), None), (prefix + "f" * 32, os.urandom(64), None),
               (real_subject, real_body, {"Nats-Msg-Id": "rogue"})]   # a replay: a duplicate, ingested once
    before = snapshot(laptop)
    publish(nats_server, garbage)
    observe(phone, 5, tag="after")
    wanted = snapshot(phone)["frontier"]
    wait_until(lambda: holds(laptop, wanted), "the phone's next events through the relay, past the garbage", SLOW)
    assert d_laptop.running() and d_phone.running()
    after = snapshot(laptop)
    assert after["count"] == before["count"] + 5 and after["forks"] == 0
    skipped = [e for e in d_laptop.logs() + d_phone.logs() if "skip" in str(e.get("event", ""))]
    assert skipped, "the garbage was not logged as skipped"
    assert not d_laptop.stray_lines() and not d_phone.stray_lines()


def test_wrong_credentials_leave_the_relay_refused_and_the_daemon_running(tmp_path, daemons):
    server = NatsServer(tmp_path / "relay", user="agentlog", password="right").start()
    try:
        homes = relay_homes(tmp_path, server, "laptop", options=("--user", "agentlog", "--password", "wrong"))
        laptop = homes["laptop"]
        daemon = daemons(laptop, listen=False)
        wait_until(lambda: relay_peer(laptop).get("state") == "refused", "the relay in state refused", SLOW)
        assert daemon.running()
        assert relay_peer(laptop)["error"]
        assert relay_messages(server) == 0
    finally:
        server.kill()
