"""`agentlog sync` with no address: one round with every peer in the peer book (devices and relays) and with every
device of the group found announced on the local network within a short browse window, all at once. Each peer's
outcome is a result (what moved, or why it was not reached), never an exception: one unreachable peer is one line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio

from agentlog.errors import AgentlogError, PeerError, describe
from agentlog.relay.config import RelayConfig
from agentlog.store.peers import address
from agentlog.store.store import Store
from agentlog.sync import relay_peer, replicator

BROWSE_S = 1.5              # how long `sync` looks for the group's devices on the network


@dataclass
class Outcome:
    """One peer's round: `kind` device (from the peer book), relay, or discovered (or discovery itself, when it
    failed); its result, or the error line."""

    address: str
    kind: str
    result: replicator.SyncResult | relay_peer.RelayResult | None = None
    error: str = ""


async def sync_all(store: Store, relays: list[RelayConfig], *, timeout: float = 60.0, discovery: bool = True,
                   browse_s: float = BROWSE_S) -> list[Outcome]:
    """Sync once with every stored device and relay, and every device discovered within `browse_s` seconds
    (unless not `discovery`), concurrently; the outcomes in the order the peers were started."""
    outcomes: list[Outcome] = []

    async with trio.open_nursery() as nursery:
        def start(addr: str, kind: str, round_: Callable[[], Awaitable]) -> None:
            if all(o.address != addr for o in outcomes):
                outcomes.append(outcome := Outcome(addr, kind))
                nursery.start_soon(_run, outcome, round_)

        for addr in store.peer_book.addresses():
            start(addr, "device", partial(replicator.sync_once, store, addr, timeout=timeout))
        for config in relays:
            start(config.address, "relay", partial(relay_peer.sync_once, store, config, timeout=timeout))
        if discovery:
            from agentlog.sync import mdns  # zeroconf is loaded only when discovering

            def found(record) -> None:
                addr = address(record.host, record.port)
                start(addr, "discovered", partial(replicator.sync_once, store, addr, timeout=timeout))
            with trio.move_on_after(browse_s):
                try:
                    await mdns.run(store.meta("group_key"), None, None, found=found, lost=lambda record: None)
                except Exception as exc:            # zeroconf failed (no multicast here): the stored peers go on
                    outcomes.append(Outcome("mDNS", "discovery", error=f"discovery failed: {describe(exc)}"))
    return outcomes


async def _run(outcome: Outcome, round_: Callable[[], Awaitable]) -> None:
    try:
        outcome.result = await round_()
    except PeerError as exc:
        outcome.error = exc.reason
    except AgentlogError as exc:                # the peer's snapshot did not hold; this store failed it
        outcome.error = str(exc)


def sync_all_blocking(store: Store, relays: list[RelayConfig], **options) -> list[Outcome]:
    """`sync_all` as a blocking call, for a caller that runs no trio of its own (the CLI)."""
    return trio.run(partial(sync_all, store, relays, **options))
