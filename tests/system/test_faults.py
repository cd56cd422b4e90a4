"""A misbehaving peer against real daemons: it is cut off with a logged reason, nothing of its bad
batch is stored, a fork's validly signed branches are both kept, and the honest devices keep syncing throughout.

The honest laptop listens and the honest phone dials it, both `agentlog serve` subprocesses on
127.0.0.1. Mallory is a properly enrolled device played by this test process with trio and
`net.open_channel`: it passes the handshake, exchanges hellos, then sends crafted batches and
frames. Each attack is checked three ways: what mallory sees (an `error` message, or the
connection closing), the laptop's JSON log line naming the check, and the laptop's store
(count, frontier, forks) before and after. After each, events written on either honest device
reach the other, over the one link that was never dropped.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from agentlog import crypto
from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.log.event import ClockEntry, Event, Header, seal
from agentlog.store import home
from agentlog.sync import net
from tests.helpers.daemons import (
    DEADLINE,
    Daemon,
    agentlog,
    end_all,
    observe,
    provision,
    snapshot,
    status,
    wait_converged,
    wait_until,
)
from tests.helpers.mallory import Attack, World, connect, outcome, send_batch


def _world(root: Path, registry: list) -> World:
    homes = provision(root, "laptop", "phone", "mallory")
    laptop = Daemon(homes["laptop"], registry=registry).start()
    phone = Daemon(homes["phone"], listen=False, peers=(laptop.address,), registry=registry).start()
    wait_converged(homes["laptop"], homes["phone"], count=3)
    return World(root, homes, laptop, phone, home.open_home(homes["mallory"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    registry: list[Daemon] = []
    w = _world(tmp_path_factory.mktemp("faults"), registry)
    try:
        yield w
    finally:
        w.mallory.close()
        end_all(registry)


@pytest.fixture
def fresh_world(tmp_path):
    """A world of its own, for an attack that leaves the honest stores changed."""
    registry: list[Daemon] = []
    w = _world(tmp_path, registry)
    try:
        yield w
    finally:
        w.mallory.close()
        end_all(registry)


# -- crafting events -------------------------------------------------------------------------

def craft(key: DeviceKey, w: World, seq: int, prev: bytes, value: str, *, clock=()) -> Event:
    """A validly signed observation by `key` at `seq` (epoch 0) of mallory's group."""
    anchor = w.mallory.anchor()[0].header
    body = payloads.encode(payloads.Observation(setting="mallory", value=value))
    header = Header(group=w.mallory.group, author=key.public, epoch=0, seq=seq, prev=prev,
                    lamport=anchor.lamport + seq, clock=clock, time_ms=time.time_ns() // 1_000_000, scope="user",
                    kind="observation", payload_hash=crypto.blake2b256(body), payload_len=len(body))
    return seal(header, key, body)


def chain(key: DeviceKey, w: World, n: int, tag: str, start: Event | None = None) -> list[Event]:
    """`n` linked events by `key`: from seq 1 (whose clock covers its enrolment), or after `start`."""
    anchor = w.mallory.anchor()[0].header
    out = [start] if start else []
    for _i in range(n):
        seq = out[-1].header.seq + 1 if out else 1
        prev = out[-1].id if out else crypto.ZERO_ID
        clock = (ClockEntry(anchor.author, anchor.epoch, anchor.seq),) if seq == 1 else ()
        out.append(craft(key, w, seq, prev, f"{tag} {seq}", clock=clock))
    return out[1:] if start else out


def flip_signature(e: Event) -> Event:
    sig = bytearray(e.signature)
    sig[7] ^= 0x01
    return replace(e, signature=bytes(sig))


# -- mallory's connection --------------------------------------------------------------------

def attack(w: World, *steps: Attack, until_ack: int | None = None) -> tuple[str, object]:
    """Connect as mallory, run each step (all but the last must be acked), return how the last ended (its
    batch `until_ack` acked, an error, or the connection closing)."""
    async def run():
        channel = await connect(w)
        try:
            for i, step in enumerate(steps, 1):
                await step(channel)
                if i < len(steps):
                    kind, msg = await outcome(channel, until_ack=i)
                    assert kind == "ack", (kind, msg)
            return await outcome(channel, until_ack)
        finally:
            await channel.aclose()
    return trio.run(run)


# -- the checks around every attack ------------------------------------------------------------

def closed_lines(w: World, peer: str) -> list[dict]:
    return [e for e in w.laptop.logs() if e["event"] == "connection closed" and e.get("peer") == peer]


def cut_off_reason(w: World, seen: int) -> dict:
    """The laptop's log line for mallory's connection closing after the `seen` earlier ones."""
    w.laptop.wait_log(lambda e: len(closed_lines(w, "mallory")) > seen, "mallory's connection closing")
    line = closed_lines(w, "mallory")[seen]
    assert line["level"] == "warning", line
    return line


def same_holdings(w: World) -> bool:
    """The laptop and phone hold as many events and equal views. Not their frontiers: which branch of a fork
    is a device's main chain depends on what reached it first."""
    laptop, phone = snapshot(w.homes["laptop"]), snapshot(w.homes["phone"])
    return laptop["count"] == phone["count"] and laptop["views"] == phone["views"]


def honest_pair_syncs(w: World, timeout: float = DEADLINE) -> None:
    """Events written on either honest device reach the other, and their link was never dropped."""
    for writer, reader in (("laptop", "phone"), ("phone", "laptop")):
        eid = bytes.fromhex(agentlog(w.homes[writer], "observe", "honest", f"from {writer} #{w.honest_writes}").stdout)
        w.honest_writes += 1

        def arrived(path=w.homes[reader], eid=eid):
            with home.open_home(path) as store:
                return store.get(eid) is not None
        wait_until(arrived, f"an event written on the {writer} reaches the {reader}", timeout)
    wait_until(lambda: same_holdings(w), "the honest pair holding the same events and views", timeout)
    assert not closed_lines(w, "phone"), "the laptop dropped its link to the phone"
    assert not [e for e in w.phone.logs() if e["event"] == "connection closed"], "the phone dropped its link"


def authors(snap: dict) -> set[bytes]:
    return set(snap["frontier"])


# -- the attacks -------------------------------------------------------------------------------

def forged_signature(w: World) -> tuple[Attack, ...]:
    """Two good events, then a third whose signature is not the author's (the run's last: it is verified)."""
    m1, m2, m3 = chain(w.mallory.key, w, 3, "forged")
    return (send_batch(1, m1, m2, flip_signature(m3)),)


def broken_chain(w: World) -> tuple[Attack, ...]:
    """A validly signed third event whose prev is not the second's id."""
    m1, m2, _ = chain(w.mallory.key, w, 3, "chain")
    m3 = craft(w.mallory.key, w, 3, os.urandom(32), "chain 3")
    return (send_batch(1, m1, m2, m3),)


def unenrolled_author(w: World) -> tuple[Attack, ...]:
    """A good event of mallory's, then one signed by a key nobody enrolled."""
    [m1] = chain(w.mallory.key, w, 1, "outsider")
    [o1] = chain(DeviceKey.generate(), w, 1, "outsider")
    return (send_batch(1, m1, o1),)


def garbage_message(w: World) -> tuple[Attack, ...]:
    """Bytes that decrypt (mallory holds the session keys) but are no message."""
    async def step(channel: net.Channel) -> None:
        await channel.send(b"\xffgarbage, not a Cap'n Proto message\x00\x01")
    return (step,)


def garbage_frame(w: World) -> tuple[Attack, ...]:
    """A frame of raw bytes where a ciphertext belongs."""
    async def step(channel: net.Channel) -> None:
        await channel._frames.write(b"garbage that is not a secretstream ciphertext")
    return (step,)


def oversized_frame(w: World) -> tuple[Attack, ...]:
    """A length prefix over MAX_FRAME on the socket itself (the body never follows)."""
    async def step(channel: net.Channel) -> None:
        await channel._frames.stream.send_all(struct.pack(">I", net.MAX_FRAME + 1) + b"\0" * 64)
    return (step,)


ATTACKS = {
    # name: (build, the error code mallory gets (docs/protocol.md section 4; None: the connection just closes),
    # words of the reason the laptop logs)
    "forged signature": (forged_signature, "signature", ("signature", "does not verify")),
    "broken chain": (broken_chain, "prev", ("does not link",)),
    "unenrolled author": (unenrolled_author, "enrolment", ("not enrolled",)),
    "garbage message": (garbage_message, "protocol", ("message",)),
    "garbage frame": (garbage_frame, None, ("decrypt",)),
    "oversized frame": (oversized_frame, "too-large", ("frame length", str(net.MAX_FRAME + 1))),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_bad_peer_is_cut_off_and_nothing_of_its_batch_is_stored(world, name):
    build, code, words = ATTACKS[name]
    steps = build(world)
    seen = len(closed_lines(world, "mallory"))
    before = snapshot(world.homes["laptop"])
    # An honest event in flight while the attack runs.
    observe(world.homes["laptop"], 1, tag=f"during {name}")

    kind, detail = attack(world, *steps)

    if code is None:
        assert kind == "closed", (kind, detail)
    else:
        assert (kind, detail.code) == ("error", code), (kind, detail)
    reason = cut_off_reason(world, seen)["reason"]
    assert all(word in reason for word in words), reason
    after = snapshot(world.homes["laptop"])
    assert after["count"] == before["count"] + 1, "something of the bad batch was stored"
    assert authors(after) == authors(before), "an author of the bad batch was stored"
    assert after["forks"] == before["forks"] == 0
    honest_pair_syncs(world)


@pytest.mark.slow
def test_a_fork_is_kept_whole_and_a_second_one_flags_a_copied_key(world):
    """Both validly signed branches of a fork are stored, folded and acked (never a silent batch); a fork claim
    whose branch event is not validly signed is refused whole; a second fork flags a copied key."""
    m, laptop = world.mallory, world.homes["laptop"]
    before = snapshot(laptop)
    one_a = chain(m.key, world, 1, "fork a")[0]
    one_b = chain(m.key, world, 1, "fork b")[0]
    assert one_a.header.seq == one_b.header.seq == 1 and one_a.id != one_b.id

    # Both sides of a fork in one batch: both kept, the batch acked.
    kind, detail = attack(world, send_batch(1, one_a, one_b), until_ack=1)
    assert kind == "ack", (kind, detail)
    after = snapshot(laptop)
    assert (after["count"], after["frontier"][m.device], after["forks"]) == (before["count"] + 2, 1, 1)
    assert after["views"] != before["views"], "the branches were not folded"
    honest_pair_syncs(world)

    # A third event at the fork's seq whose signature is not mallory's: refused whole, nothing stored.
    world.laptop.wait_log(lambda e: closed_lines(world, "mallory"), "mallory's first link closing")
    seen, before = len(closed_lines(world, "mallory")), snapshot(laptop)
    kind, detail = attack(world, send_batch(1, flip_signature(chain(m.key, world, 1, "fork c")[0])))
    assert (kind, detail.code) == ("error", "signature"), (kind, detail)
    assert "fork claim refused" in detail.message and "does not verify" in detail.message, detail
    assert "fork claim refused" in cut_off_reason(world, seen)["reason"]
    assert snapshot(laptop) == before
    honest_pair_syncs(world)

    # A second fork, across batches: seq 2 and 3 on one branch, another seq 2 in the same batch as seq 3.
    two_a, three = chain(m.key, world, 2, "fork a", start=one_a)
    two_b = chain(m.key, world, 1, "fork b", start=one_a)[0]
    before = snapshot(laptop)
    kind, detail = attack(world, send_batch(1, one_a, two_a), send_batch(2, three, two_b), until_ack=2)
    assert kind == "ack", (kind, detail)
    after = snapshot(laptop)
    assert (after["count"], after["frontier"][m.device], after["forks"]) == (before["count"] + 3, 3, 2)
    world.laptop.wait_log(lambda e: e["event"].startswith("a device forked again") and e["level"] == "warning",
                          "the laptop warning of a copied key")
    honest_pair_syncs(world)

    doc = status(laptop)
    assert [(f["author"], f["epoch"], f["seq"]) for f in doc["forks"]] == [(m.device.hex(), 0, 1),
                                                                           (m.device.hex(), 0, 2)], doc["forks"]
    assert [c["author"] for c in doc["copied_keys"]] == [m.device.hex()], doc["copied_keys"]
    assert "forked more than once" in agentlog(laptop, "status").stdout
    checked = agentlog(laptop, "verify", check=False)
    assert checked.returncode == 0, checked.stderr                  # the log itself is intact: forks are warnings
    warnings = [line for line in checked.stdout.splitlines() if line.startswith("warning: mallory")]
    assert len(warnings) == 2 and all("fork: 2 different signed events" in w for w in warnings), checked.stdout

    # The phone got every event of both branches from the laptop (honest_pair_syncs) and reports the fork.
    assert status(world.homes["phone"])["forks"], "the phone does not report the fork"


def test_garbled_signature_inside_a_run_does_not_stall_honest_devices(fresh_world):
    """A receiver checks each author run's last signature; the hash links prove the others' content
    (docs/protocol.md section 4), so a garbled signature inside the run is stored unchecked. When the
    laptop relays the run, no batch ends on that event (the phone would refuse it): the phone gets the
    whole run, the honest pair keeps syncing, and `agentlog verify` on either warns of the damaged signature
    bytes, naming the device it got them from (the content is proven), and exits 0."""
    w = fresh_world
    run = chain(w.mallory.key, w, 1500, "inside")
    run[999] = flip_signature(run[999])
    before = snapshot(w.homes["laptop"])
    kind, detail = attack(w, send_batch(1, *run))       # taken; mallory then goes silent and is timed out
    assert kind == "closed", (kind, detail)
    assert snapshot(w.homes["laptop"])["count"] == before["count"] + 1500
    mallory = w.mallory.device

    def phone_holds() -> int:
        with home.open_home(w.homes["phone"]) as store:
            return store.frontier().get(mallory, 0)
    wait_until(lambda: phone_holds() == 1500, "mallory's whole run reaches the phone")
    for writer, reader in (("laptop", "phone"), ("phone", "laptop")):
        eid = bytes.fromhex(agentlog(w.homes[writer], "observe", "honest", f"from {writer}").stdout)

        def arrived(path=w.homes[reader], eid=eid):
            with home.open_home(path) as store:
                return store.get(eid) is not None
        wait_until(arrived, f"an event written on the {writer} reaches the {reader}")
    assert not closed_lines(w, "phone"), "the laptop dropped its link to the phone"
    for name, sender in (("laptop", mallory), ("phone", w.laptop_device())):
        report = json.loads(agentlog(w.homes[name], "verify", "--json").stdout)
        assert report["ok"] and not report["problems"], report["problems"]
        assert [(d["seq"], d["last"], d["signed"], d["peer"]) for d in report["damaged_signatures"]] == \
            [(1000, 1000, 1001, sender.hex())], report["damaged_signatures"]
