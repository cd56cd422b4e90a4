"""Devices of one group that share a blind relay (a real nats-server), and what the relay's tests read of it
from outside, as anyone with access to the server could: its streams, their subjects and messages.

The devices are enrolled in one room (the founder adds the relay, enrols the others and syncs with them in
process), so every one holds the relay key; afterwards they meet only through the relay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from agentlog.store import devices, home
from tests.helpers.daemons import agentlog
from tests.helpers.nats import NatsServer
from tests.helpers.relay import events_in, stream_messages
from tests.helpers.sync import sync


def relay_homes(root: Path, server: NatsServer, *names: str, options: tuple[str, ...] = ()) -> dict[str, Path]:
    """Homes under `root`: the first name founds the group and adds the relay (`agentlog peers add nats://...
    OPTIONS`), then enrols the others, who join by token, hold its log, and add the relay too."""
    homes = {name: root / name for name in names}
    with home.create(homes[names[0]], names[0]) as founder:
        founder.create_group(names[0])
    agentlog(homes[names[0]], "peers", "add", server.url, *options)
    with home.open_home(homes[names[0]]) as founder:
        for name in names[1:]:
            with home.create(homes[name], name) as store:
                devices.join(store, devices.enroll(founder, store.device, name))
                sync(founder, store)
    for name in names[1:]:
        agentlog(homes[name], "peers", "add", server.url, *options)
    return homes


def identities(home_dir: Path) -> tuple[bytes, bytes]:
    """(this device's public key, its group id)."""
    with home.open_home(home_dir) as store:
        return store.device, store.group


async def _connect(server: NatsServer):
    """A client of the relay with the server's own credentials (an operator's view)."""
    return await nats.connect(server.url, user=server.user, password=server.password, max_reconnect_attempts=0)


async def _streams(server: NatsServer) -> list:
    nc = await _connect(server)
    try:
        return await nc.jetstream().streams_info()
    finally:
        await nc.close()


def streams(server: NatsServer) -> dict[str, dict]:
    """Every stream on the relay: name -> {"subjects", "messages", "last_seq"}."""
    return {s.config.name: {"subjects": list(s.config.subjects or ()), "messages": s.state.messages,
                            "last_seq": s.state.last_seq} for s in asyncio.run(_streams(server))}


def relay_messages(server: NatsServer) -> int:
    """Messages the relay holds, over all its streams."""
    return sum(s["messages"] for s in streams(server).values())


async def _subjects(server: NatsServer, stream: str) -> dict[str, int]:
    nc = await _connect(server)
    try:
        info = await nc.jetstream().stream_info(stream, subjects_filter=">")
        return dict(info.state.subjects or {})
    finally:
        await nc.close()


def stream_subjects(server: NatsServer, stream: str) -> dict[str, int]:
    """The subjects of a stream that hold messages, with their counts."""
    return asyncio.run(_subjects(server, stream))


async def _publish(server: NatsServer, messages: list[tuple[str, bytes, dict | None]]) -> None:
    nc = await _connect(server)
    try:
        js = nc.jetstream()
        for subject, body, headers in messages:
            await js.publish(subject, body, headers=headers)
    finally:
        await nc.close()


def publish(server: NatsServer, messages: list[tuple[str, bytes, dict | None]]) -> None:
    """Publish (subject, body, headers) on the relay as any client with access to it could."""
    asyncio.run(_publish(server, messages))


def stored_messages(server: NatsServer, stream: str) -> list[tuple[str, bytes]]:
    """Every message of a stream, (subject, body), as the relay's operator could read them."""
    return stream_messages(server.url, stream, user=server.user, password=server.password)


def relay_events(server: NatsServer, home_dir: Path) -> list[tuple[bytes, int, int]]:
    """(author, epoch, seq) of every event copy the relay's streams hold, opened with the home's relay keys."""
    with home.open_home(home_dir) as store:
        keys, group = store.relay_keys(), store.group
    return [e for stream in streams(server) for e in events_in(keys, group, stored_messages(server, stream))]
