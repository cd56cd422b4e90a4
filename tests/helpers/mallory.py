"""Mallory, an enrolled device played by the test process against real daemons: its world, link and batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from agentlog.errors import ConnectionLost, PeerClosed
from agentlog.log.event import Event
from agentlog.store import home
from agentlog.store.store import Store
from agentlog.sync import messages, net
from agentlog.sync.admission import check_peer
from agentlog.sync.messages import Ack, Error, Events, Hello, WireEvent
from tests.helpers.daemons import DEADLINE, Daemon

Attack = Callable[[net.Channel], Awaitable[None]]


@dataclass
class World:
    root: Path
    homes: dict[str, Path]
    laptop: Daemon
    phone: Daemon
    mallory: Store                   # mallory's own home, open in this process (it runs no daemon)
    honest_writes: int = 0

    def laptop_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.laptop.port

    def laptop_device(self) -> bytes:
        with home.open_home(self.homes["laptop"]) as store:
            return store.device


def wire(*events: Event) -> tuple[WireEvent, ...]:
    return tuple(WireEvent(e.record, e.payload) for e in events)


# -- mallory's connection --------------------------------------------------------------------

async def connect(w: World) -> net.Channel:
    m = w.mallory
    channel = await net.open_channel(*w.laptop_address(), m.key, m.meta("group_key"), check_peer(m))
    await channel.send(messages.encode(Hello(messages.VERSION, m.group, m.device, {})))
    with trio.fail_after(DEADLINE):
        hello = messages.decode(await channel.receive())
    assert isinstance(hello, Hello) and hello.device != m.device
    return channel


async def outcome(channel: net.Channel, until_ack: int | None = None):
    """Read until the laptop answers: ("ack", Ack) for batch `until_ack`, ("error", Error), or ("closed", reason)."""
    with trio.fail_after(DEADLINE):
        while True:
            try:
                msg = messages.decode(await channel.receive())
            except (PeerClosed, ConnectionLost) as exc:
                return "closed", exc.reason
            if isinstance(msg, Error):
                return "error", msg
            if isinstance(msg, Ack) and msg.batch == until_ack:
                return "ack", msg


def send_batch(batch: int, *events: Event) -> Attack:
    async def step(channel: net.Channel) -> None:
        await channel.send(messages.encode(Events(batch, wire(*events))))
    return step
