"""`serve`'s replicator with a relay beside a LAN peer (real sockets, a real nats-server): events arriving both
ways are stored once, carried events go to the relay, and in sync nothing more is published."""

from __future__ import annotations

import trio

from agentlog.log import payloads
from agentlog.relay.config import RelayConfig
from agentlog.store import devices, home
from agentlog.store import relay as relay_keys
from agentlog.store.ledger import Ledger
from agentlog.store.peers import address
from agentlog.sync.relay_log import peer_id
from agentlog.sync.replicator import Replicator
from tests.helpers.relay import config, relay_events, relay_group, relay_messages
from tests.helpers.sync import sync

WAIT_S = 15.0


def config_address(url: str) -> str:
    return RelayConfig.parse(url).address


async def until(predicate, what: str) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.05)


async def test_events_arriving_by_lan_and_relay_are_stored_once_and_idle_publishes_nothing(tmp_path, nats_server):
    laptop, phone, tablet = relay_group(tmp_path, nats_server.url, "laptop", "phone", "tablet")
    try:
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(Replicator(laptop, listen=("127.0.0.1", 0), heartbeat=0.5).run)
            lan = address("127.0.0.1", hub.port)
            mobile = await nursery.start(Replicator(phone, peers=[lan], heartbeat=0.5).run)
            away = await nursery.start(Replicator(tablet, heartbeat=0.5).run)   # the relay alone
            assert [r.address for r in mobile.relays] == [config(phone).address] and not away.dialers.wanted()

            phone.append_many([payloads.Observation(setting="test.phone", value=f"p{i}") for i in range(25)])
            tablet.append_many([payloads.Observation(setting="test.tablet", value=f"t{i}") for i in range(15)])
            await until(lambda: laptop.frontier() == phone.frontier() == tablet.frontier(), "all equal")

            relay = peer_id(config(laptop).address)
            for store in (laptop, phone, tablet):        # each event stored once: one received range per author
                for author, top in store.frontier().items():
                    got = sorted((r.lo, r.hi) for r in Ledger(store).received() if r.author == author)
                    covered = sum(hi - lo + 1 for lo, hi in got)
                    assert author == store.device or covered == top, (store.name, got)
            # the tablet reaches the others through the relay alone (which of laptop and phone takes its events
            # from the relay first, and which from the other over the LAN, is a race)
            assert any(r.author == tablet.device for s in (laptop, phone) for r in Ledger(s).received(relay))

            await trio.sleep(2.0)                        # let the last acks, states and echoes settle
            held = await trio.to_thread.run_sync(relay_messages, nats_server.url, laptop.group)
            sent = [r.result.sent for r in (*hub.relays, *mobile.relays, *away.relays)]
            await trio.sleep(3.0)
            assert await trio.to_thread.run_sync(relay_messages, nats_server.url, laptop.group) == held
            assert [r.result.sent for r in (*hub.relays, *mobile.relays, *away.relays)] == sent
            on_relay = await trio.to_thread.run_sync(relay_events, nats_server.url, laptop)
            assert len(on_relay) == len(set(on_relay)) == laptop.count()    # every event once on the relay, none twice
            assert {r.state for r in (*hub.relays, *mobile.relays, *away.relays)} == {"live"}
            nursery.cancel_scope.cancel()
    finally:
        for store in (laptop, phone, tablet):
            store.close()


async def test_serve_grants_the_relay_key_to_an_enrolled_device_that_lacks_it(tmp_path, nats_server):
    laptop = home.create(tmp_path / "laptop", "laptop")
    laptop.create_group("laptop")
    phone = home.create(tmp_path / "phone", "phone")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)
    laptop.peer_book.add_relay(config_address(nats_server.url), {})
    relay_keys.create_scope(laptop)                       # the phone has not heard of it yet
    tablet = home.create(tmp_path / "tablet", "tablet")
    devices.join(tablet, devices.enroll(phone, tablet.device, "tablet"))
    sync(phone, laptop)
    try:
        readers = {d for d, _ in laptop.scopes.get("relay").readers}
        assert tablet.device not in readers and phone.device in readers
        async with trio.open_nursery() as nursery:
            await nursery.start(Replicator(laptop, heartbeat=0.5).run)
            await until(lambda: tablet.device in {d for d, _ in laptop.scopes.get("relay").readers}, "granted")
            nursery.cancel_scope.cancel()
    finally:
        for store in (laptop, phone, tablet):
            store.close()
