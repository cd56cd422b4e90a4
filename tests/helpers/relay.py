"""A group with a relay: the founder keeps the relay in its peer book and creates the relay key before it enrols
a device, so the join token carries the relay and its key and the two devices need never meet."""

from __future__ import annotations

from pathlib import Path

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
