"""A group with a relay: the founder keeps the relay in its peer book and creates the relay key before it enrols
a device, so the join token carries the relay and its key and the two devices need never meet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import nats
import nats.js.errors

from agentlog.relay import envelope
from agentlog.relay.bridge import Bridge
from agentlog.relay.config import RelayConfig
from agentlog.store import devices, home
from agentlog.store import relay as relay_keys
from agentlog.store.store import Store


def relay_group(root: Path, address: str, *names: str) -> list[Store]:
    """Stores for `names` (the first founds the group) that share the relay at `address` ("nats://HOST:PORT")."""
    first = home.create(root / names[0], names[0])
    first.create_group(names[0])
    first.peer_book.add_relay(RelayConfig.parse(address).address, {})
    relay_keys.create_scope(first)
    stores = [first]
    for name in names[1:]:
        store = home.create(root / name, name)
        devices.join(store, devices.enroll(first, store.device, name))
        stores.append(store)
    return stores


def config(store: Store) -> RelayConfig:
    """The relay the store's peer book holds (the only one)."""
    (address, doc), = store.peer_book.relays().items()
    return RelayConfig.from_doc(address, doc or {})


def relay_messages(url: str, group: bytes, timeout: float = 10.0) -> int:
    """How many messages the relay at `url` holds in the group's stream, asked as another client would."""
    bridge = Bridge(url, on_deliver=lambda batch: None, on_down=lambda r: None).start()
    try:
        bridge.connect().result(timeout)
        return bridge.stream_state(envelope.stream_name(group)).result(timeout).messages
    finally:
        bridge.close()


async def _bodies(url: str, stream: str, **auth) -> list[tuple[str, bytes]]:
    nc = await nats.connect(url, max_reconnect_attempts=0, **auth)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        out = []
        if not state.messages:
            return out      # an empty stream reports first_seq 0, a sequence the server refuses to look up
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            out.append((msg.subject, msg.data))
        return out
    finally:
        await nc.close()


def stream_messages(url: str, stream: str, **auth) -> list[tuple[str, bytes]]:
    """Every message of a stream, (subject, body), as any client of the relay reads them (`auth`: user, password)."""
    return asyncio.run(_bodies(url, stream, **auth))


def events_in(keys, group: bytes, messages: Iterable[tuple[str, bytes]]) -> list[tuple[bytes, int, int]]:
    """(author, epoch, seq) of every event the group's messages hold (a message may hold a run), one per copy;
    the snapshot message left out."""
    snapshot = envelope.snapshot_subject(group)
    return [(e.header.author, e.header.epoch, e.header.seq) for subject, body in messages if subject != snapshot
            for _, _, e in envelope.open_events(keys, group, subject, body)]


def relay_events(url: str, store: Store) -> list[tuple[bytes, int, int]]:
    """`events_in` the group's stream on the relay at `url`, opened with the store's relay keys."""
    return events_in(store.relay_keys(), store.group, stream_messages(url, envelope.stream_name(store.group)))
