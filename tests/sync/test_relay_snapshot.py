"""Snapshots through the relay: a device that compacted publishes its snapshot on the snapshot subject (the relay
keeps the last one); a device new to the relay, which lacks what the snapshot covers (truncated before the relay
ever held it), starts from that snapshot and takes what follows, ending equal. Once there, it is not sent again."""

from __future__ import annotations

import time

import trio

from agentlog.relay.config import RelayConfig
from agentlog.store import compaction
from agentlog.store import relay as relay_keys
from agentlog.store.verify import verify_store
from agentlog.sync.relay_peer import sync_once
from tests.helpers.bootstrap import compacted, digests, newcomer, write
from tests.helpers.family import Family
from tests.helpers.relay import relay_group, relay_messages
from tests.helpers.scoped import files_holding

WAIT_S = 20.0
RETENTION_S = 1.5
CANARY = "canary-relay-lentils-41b8"


async def test_a_new_device_starts_from_the_relays_snapshot_and_takes_what_follows(tmp_path, nats_server):
    f = Family(tmp_path)
    try:
        held = compacted(f)                                     # compaction before the relay (a sealed scope)
        dropped = held - f.laptop.count()

        config = RelayConfig.parse(nats_server.url)
        f.laptop.peer_book.add_relay(config.address, {})
        relay_keys.create_scope(f.laptop)
        write(f, f.laptop, 3, "l")
        first = await sync_once(f.laptop, config, timeout=WAIT_S)   # what it retained, and the snapshot
        assert 0 < first.sent < dropped

        hub = newcomer(f)                                           # its enrolment: two more laptop events
        assert (await sync_once(f.laptop, config, timeout=WAIT_S)).sent == 2
        got = await sync_once(hub, config, timeout=WAIT_S)
        assert got.bootstrapped and got.held == 0
        assert hub.frontier() == f.laptop.frontier() and digests(hub) == digests(f.laptop)
        assert hub.count() < held
        messages = relay_messages(nats_server.url, f.laptop.group)
        again = await sync_once(f.laptop, config, timeout=WAIT_S)
        assert (again.sent, again.received) == (0, 0)
        assert relay_messages(nats_server.url, f.laptop.group) == messages   # the snapshot is there: not again
    finally:
        f.close()


async def test_past_the_streams_retention_a_new_device_starts_from_the_snapshot_of_a_group_with_sealed_scopes(
        tmp_path, nats_server):
    """The bar of issue 18 item 3: a stream whose messages live RETENTION_S; the laptop and the phone write (in
    `user` and in the sealed `health`) and sync through it, the stream drops all of it, the laptop compacts; a
    tablet that never met either (it joined by token) starts from the relay's snapshot plus what follows and ends
    with the laptop's view digests, reading `health`; a speaker that does not read it starts the same way and
    holds no byte of its content."""
    laptop, phone, tablet, speaker = stores = relay_group(tmp_path, nats_server.url, "laptop", "phone", "tablet",
                                                          "speaker")
    try:
        cfg = RelayConfig.parse(nats_server.url, stream_max_age_days=RETENTION_S / 86_400)
        laptop.scopes.create("health")
        laptop.scopes.grant("health", ["phone", "tablet"])
        for store, tag in ((laptop, "l"), (phone, "p")):
            await sync_once(store, cfg, timeout=WAIT_S)
            for i in range(6):
                store.prefs.observe(f"s{i % 2}", f"{tag}{i}")
                store.prefs.observe("diet", f"{CANARY}-{tag}{i}", scope="health")
            store.memory.put(f"{CANARY} from {tag}", scope="health")
            await sync_once(store, cfg, timeout=WAIT_S)
        await sync_once(laptop, cfg, timeout=WAIT_S)                # both hold everything
        assert laptop.frontier() == phone.frontier()
        deadline = time.monotonic() + 10 * RETENTION_S
        while relay_messages(nats_server.url, laptop.group) and time.monotonic() < deadline:
            await trio.sleep(0.1)
        assert relay_messages(nats_server.url, laptop.group) == 0     # the stream dropped every event

        report = compaction.compact(laptop, horizon_ms=1)          # the tablet never wrote: left out as silent
        assert report.snapshot is not None and report.dropped > 0 and laptop.truncated()
        laptop.prefs.observe("s0", "after")
        assert (await sync_once(laptop, cfg, timeout=WAIT_S)).sent == 2     # the snapshot event and this one
        got = await sync_once(tablet, cfg, timeout=WAIT_S)
        assert got.bootstrapped and got.held == 0
        assert tablet.frontier() == laptop.frontier() and digests(tablet) == digests(laptop)
        assert any(CANARY in e.content for e in tablet.memory.list())
        assert verify_store(tablet, jobs=1).ok
        await sync_once(phone, cfg, timeout=WAIT_S)
        assert digests(phone) == digests(laptop)
        assert (await sync_once(speaker, cfg, timeout=WAIT_S)).bootstrapped     # reads no `health`
        assert speaker.frontier() == laptop.frontier() and verify_store(speaker, jobs=1).ok
        assert files_holding(tmp_path / "speaker", CANARY) == [] and files_holding(tmp_path / "tablet", CANARY)
    finally:
        for s in stores:
            s.close()
