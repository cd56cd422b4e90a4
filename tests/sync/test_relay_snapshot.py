"""Snapshots through the relay: a device that compacted publishes its snapshot on the snapshot subject (the relay
keeps the last one); a device new to the relay, which lacks what the snapshot covers (truncated before the relay
ever held it), starts from that snapshot and takes what follows, ending equal. Once there, it is not sent again."""

from __future__ import annotations

from agentlog.relay.config import RelayConfig
from agentlog.store import relay as relay_keys
from agentlog.sync.relay_peer import sync_once
from tests.helpers.bootstrap import compacted, digests, newcomer, write
from tests.helpers.family import Family
from tests.helpers.relay import relay_messages

WAIT_S = 20.0


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
