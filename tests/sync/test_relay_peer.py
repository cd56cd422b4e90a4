"""The replicator's relay peer against a real nats-server: two stores that never meet converge through
`sync nats://` rounds; events delivered out of order and twice are stored once; bad messages are skipped,
logged once and acked; a relay down is unreachable then recovers; wrong credentials are refused."""

from __future__ import annotations

import dataclasses
import os

import pytest
import structlog
import trio

from agentlog.errors import RelayUnavailable
from agentlog.log import payloads
from agentlog.relay import envelope
from agentlog.relay.bridge import Bridge
from agentlog.relay.config import RelayConfig
from agentlog.store import devices, home
from agentlog.store import relay as relay_keys
from agentlog.store.ledger import Ledger
from agentlog.sync.relay_log import peer_id
from agentlog.sync.relay_peer import RelayPeer, sync_once
from tests.helpers.nats import NatsServer
from tests.helpers.relay import config, relay_events, relay_group, relay_messages
from tests.helpers.sync import sync

WAIT_S = 10.0


def write(store, n: int, tag: str) -> None:
    store.append_many([payloads.Observation(setting=f"test.{tag}", value=f"{tag}{i}") for i in range(n)])


def publish_raw(server: NatsServer, group: bytes, items: list[tuple[str, str, bytes]]) -> None:
    """Publish as another client would (a rogue one, or a device's copy with its own message ids)."""
    bridge = Bridge(server.url, on_deliver=lambda batch: None, on_down=lambda r: None).start()
    try:
        bridge.connect().result(WAIT_S)
        bridge.publish(envelope.stream_name(group), items).result(WAIT_S)
    finally:
        bridge.close()


@pytest.fixture
def pair(tmp_path, nats_server):
    stores = relay_group(tmp_path, nats_server.url, "laptop", "phone")
    yield stores
    for s in stores:
        s.close()


async def test_two_stores_that_never_meet_converge_through_relay_rounds(pair, nats_server):
    laptop, phone = pair
    write(laptop, 30, "laptop")
    first = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert first.sent == laptop.count() and first.received == 0
    got = await sync_once(phone, config(phone), timeout=WAIT_S)
    assert got.received == laptop.count() and phone.frontier() == laptop.frontier()
    write(phone, 20, "phone")
    assert (await sync_once(phone, config(phone), timeout=WAIT_S)).sent == 20
    back = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert back.received == 20 and back.sent == 0
    assert laptop.frontier() == phone.frontier() and laptop.count() == phone.count()

    held = relay_messages(nats_server.url, laptop.group)
    for store in (laptop, phone, laptop):                       # in sync: rounds publish nothing
        again = await sync_once(store, config(store), timeout=WAIT_S)
        assert (again.sent, again.received) == (0, 0)
    assert relay_messages(nats_server.url, laptop.group) == held

    relay = peer_id(config(laptop).address)
    sent = {(r.author, r.lo, r.hi) for r in Ledger(laptop).sent(relay)}
    assert (laptop.device, 1, laptop.frontier()[laptop.device]) in sent
    received = {(r.author, r.lo, r.hi) for r in Ledger(laptop).received(relay)}
    assert received == {(phone.device, 1, 20)}
    state = laptop.peer_book.relay_states()[config(laptop).address]
    assert (state.we_lack, state.they_lack, state.error) == (0, 0, "")


async def phone_wrote(laptop, phone, n: int) -> list:
    """Both in sync through the relay, then the phone writes `n` events (returned) that only it holds."""
    await sync_once(laptop, config(laptop), timeout=WAIT_S)
    await sync_once(phone, config(phone), timeout=WAIT_S)
    write(phone, n, "phone")
    return list(phone.events(phone.device))[-n:]


async def test_events_out_of_order_and_twice_are_stored_once(pair, nats_server):
    laptop, phone = pair
    events = await phone_wrote(laptop, phone, 12)
    keys = phone.relay_keys()
    sealed = [envelope.seal(keys, phone.group, e.record, e.payload) for e in events]
    shuffled = sealed[6:][::-1] + sealed[:6][::-1]
    copies = [(s.subject, s.msg_id + "-copy", s.body) for s in sealed[3:9]]   # ids the relay does not dedup
    publish_raw(nats_server, phone.group, [tuple(s) for s in shuffled] + copies)
    got = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert got.received == 12 and got.held == 0 and got.skipped == 0
    assert laptop.frontier() == phone.frontier()
    assert [r.lo for r in Ledger(laptop).received(peer_id(config(laptop).address))] == [1]


def run_of(store, events, payloads=None) -> tuple[str, str, bytes]:
    """`events` (consecutive, of this store's device) sealed in one message, with these payloads if given."""
    keys = store.relay_keys()
    items = [(e.record, p) for e, p in zip(events, payloads or [e.payload for e in events], strict=True)]
    return tuple(envelope.seal_run(keys, store.group, store.device, [e.id for e in events], items, keys.current))


async def test_runs_out_of_order_and_overlapping_are_stored_once(pair, nats_server):
    laptop, phone = pair
    events = await phone_wrote(laptop, phone, 12)
    publish_raw(nats_server, phone.group, [run_of(phone, events[6:]), run_of(phone, events[:6]),
                                           run_of(phone, events[3:9])])
    got = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert got.received == 12 and got.held == 0 and got.skipped == 0
    assert laptop.frontier() == phone.frontier()


async def test_a_run_holding_an_invalid_event_stays_unacked_until_the_events_behind_it_are_stored(pair, nats_server):
    """The events before the invalid one are stored, it is skipped, those after it wait: the run's delivery is not
    acked, so the next round has it again and stores them once the good copy has come."""
    laptop, phone = pair
    events = await phone_wrote(laptop, phone, 6)
    forged = [e.payload for e in events]
    forged[2] = b"tampered"
    publish_raw(nats_server, phone.group, [run_of(phone, events, forged)])
    before = laptop.frontier().get(phone.device, 0)
    with structlog.testing.capture_logs() as logs:
        first = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert (first.received, first.skipped, first.held) == (2, 1, 3)
    assert [e["check"] for e in logs if e["event"] == "relay: message skipped"] == ["payload"]
    assert laptop.frontier()[phone.device] == before + 2
    publish_raw(nats_server, phone.group, [tuple(envelope.seal(phone.relay_keys(), phone.group, events[2].record,
                                                               events[2].payload))])
    second = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert second.received == 4 and second.held == 0 and laptop.frontier() == phone.frontier()
    third = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert (third.received, third.skipped) == (0, 0)                  # all acked now


async def test_bad_messages_are_skipped_logged_once_acked_and_the_consumer_goes_on(pair, nats_server):
    laptop, phone = pair
    good = await phone_wrote(laptop, phone, 3)
    keys, group = phone.relay_keys(), phone.group
    subject = envelope.subject(group, phone.device)
    forged = envelope.seal(keys, group, good[1].record, b"tampered")             # the payload hash does not match
    moved = envelope.seal(keys, group, good[0].record, good[0].payload)
    publish_raw(nats_server, group, [
        (subject, "garbage", keys.current + os.urandom(200)),                    # does not open
        (subject, "short", b"x"),                                                # too short
        (envelope.subject(group, laptop.device), "moved", moved.body),          # sealed for another subject
        (subject, "unknown-key", os.urandom(132)),                               # a key no device holds
        (forged.subject, "forged", forged.body),                                 # opens, invalid event
        *[tuple(envelope.seal(keys, group, e.record, e.payload)) for e in good],
    ])
    with structlog.testing.capture_logs() as logs:
        got = await sync_once(laptop, config(laptop), timeout=WAIT_S)
        again = await sync_once(laptop, config(laptop), timeout=WAIT_S)
    assert laptop.frontier()[phone.device] == phone.frontier()[phone.device]
    assert got.received == 3
    skipped = [entry for entry in logs if entry["event"] == "relay: message skipped"]
    assert sorted(entry["check"] for entry in skipped) == ["open", "open", "payload", "short"]
    assert got.skipped == 4 and again.skipped == 0                   # acked: not delivered again
    assert laptop.get(good[1].id).payload == good[1].payload

    # A relay key no device holds may still be on its way: the message waits for KEY_TRIES deliveries.
    peer = RelayPeer(laptop, config(laptop), ack_wait_s=0.3)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            with trio.fail_after(WAIT_S):
                while peer.result.skipped < 1:
                    await trio.sleep(0.05)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
    assert [e["check"] for e in logs if e["event"] == "relay: message skipped"] == ["key"]
    assert peer.result.skipped == 1
    assert laptop.count() == phone.count()


async def test_a_relay_down_is_unreachable_with_backoff_then_recovers(pair, nats_server):
    laptop, phone = pair
    write(laptop, 5, "laptop")
    nats_server.stop()
    peer = RelayPeer(laptop, config(laptop))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run)
        with trio.fail_after(WAIT_S):
            while peer.state != "unreachable":
                await trio.sleep(0.05)
        await trio.sleep(1.0)
        address = config(laptop).address
        with trio.fail_after(WAIT_S):
            while laptop.peer_book.relay_states()[address].state != "unreachable":
                await trio.sleep(0.05)
        assert "unreachable" in laptop.peer_book.relay_states()[address].error
        await trio.to_thread.run_sync(nats_server.start)
        with trio.fail_after(40):                                   # the backoff is at most 30 s
            while peer.state != "live" or peer.they_lack != 0:
                await trio.sleep(0.05)
        write(laptop, 3, "live")
        peer.poke()
        with trio.fail_after(WAIT_S):
            while peer.result.sent != laptop.count():
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    got = await sync_once(phone, config(phone), timeout=WAIT_S)
    assert got.received == laptop.count() and phone.frontier() == laptop.frontier()


async def test_wrong_credentials_are_refused_without_a_crash(tmp_path):
    server = NatsServer(tmp_path, user="alice", password="right").start()
    try:
        laptop, phone = relay_group(tmp_path, server.url, "laptop", "phone")
        wrong = dataclasses.replace(config(laptop), user="alice", password="wrong")
        with pytest.raises(RelayUnavailable) as caught:
            await sync_once(laptop, wrong, timeout=WAIT_S)
        assert caught.value.refused
        assert laptop.peer_book.relay_states()[wrong.address].state == "refused"
        peer = RelayPeer(laptop, wrong)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            with trio.fail_after(WAIT_S):
                while peer.state != "refused":
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        right = dataclasses.replace(config(laptop), user="alice", password="right")
        assert (await sync_once(laptop, right, timeout=WAIT_S)).sent == laptop.count()
        laptop.close()
        phone.close()
    finally:
        server.kill()


async def test_a_server_killed_mid_publish_loses_nothing_acknowledged_and_publishes_the_rest(pair, nats_server):
    laptop, phone = pair
    for i in range(6):
        write(laptop, 2000, f"batch{i}")
    peer = RelayPeer(laptop, config(laptop))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run)
        with trio.fail_after(60):
            while peer.result.sent == 0:
                await trio.sleep(0.001)
        await trio.to_thread.run_sync(nats_server.kill)
        acknowledged = peer.result.sent
        assert acknowledged < laptop.count()
        with trio.fail_after(WAIT_S):
            while peer.state == "live":
                await trio.sleep(0.05)
        await trio.to_thread.run_sync(nats_server.start)
        with trio.fail_after(60):
            while peer.they_lack != 0 or peer.state != "live":
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert len(relay_events(nats_server.url, laptop)) == laptop.count()     # each event once: retries deduplicated
    got = await sync_once(phone, config(phone), timeout=60)
    assert got.received == laptop.count() and phone.frontier() == laptop.frontier()


async def test_a_device_without_a_relay_key_skips_nothing_and_reads_on_once_it_holds_one(tmp_path, nats_server):
    laptop = home.create(tmp_path / "laptop", "laptop")
    laptop.create_group("laptop")
    phone = home.create(tmp_path / "phone", "phone")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))     # before the group had a relay
    sync(laptop, phone)
    try:
        address = RelayConfig.parse(nats_server.url).address
        laptop.peer_book.add_relay(address, {})
        phone.peer_book.add_relay(address, {})
        relay_keys.create_scope(laptop)
        write(laptop, 5, "early")
        await sync_once(laptop, config(laptop), timeout=WAIT_S)
        assert not phone.relay_keys()
        waiting = RelayPeer(phone, config(phone), ack_wait_s=0.2)     # delivered again and again meanwhile
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting.run)
            await trio.sleep(2.0)
            nursery.cancel_scope.cancel()
        assert waiting.state == "live"
        assert (waiting.result.received, waiting.result.skipped, waiting.result.sent) == (0, 0, 0)
        sync(laptop, phone)                                  # the relay key reaches it another way
        write(laptop, 4, "late")
        await sync_once(laptop, config(laptop), timeout=WAIT_S)
        got = await sync_once(phone, config(phone), timeout=WAIT_S)
        assert got.received == 4 and got.skipped == 0 and phone.frontier() == laptop.frontier()
    finally:
        laptop.close()
        phone.close()
