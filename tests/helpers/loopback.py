"""One `agentlog sync` round over a real trio socket on 127.0.0.1: a Replicator serving one store on an OS-chosen
port, and `sync_once` from another."""

from __future__ import annotations

import trio

from agentlog.store.store import Store
from agentlog.sync.replicator import Replicator, sync_once


def sync_over_socket(dialer: Store, server: Store, timeout: float = 20):
    """`dialer` dials a replicator serving `server` for one round; the round's SyncResult."""
    async def main():
        async with trio.open_nursery() as nursery:
            replicator = await nursery.start(Replicator(server, listen=("127.0.0.1", 0)).run)
            result = await sync_once(dialer, f"127.0.0.1:{replicator.port}", timeout=timeout)
            nursery.cancel_scope.cancel()
        return result
    return trio.run(main)
