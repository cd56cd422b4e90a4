"""Catch-up over a real socket: batches that arrive while one is being stored are stored together (one commit,
Store.ingest_batches), and every event arrives and is acked."""

from __future__ import annotations

import trio

from agentlog.log import payloads
from agentlog.sync.protocol import BATCH_EVENTS
from tests.helpers.loopback import sync_over_socket

STORE_PAUSE_S = 0.3            # each store waits this long first: the sender's window fills meanwhile


def test_batches_queued_while_one_is_stored_go_in_one_commit(laptop, phone, monkeypatch):
    phone.append_many([payloads.Observation(setting="test.catch_up", value=f"v{i}")
                       for i in range(3 * BATCH_EVENTS + 10)])
    groups: list[int] = []
    run_sync = trio.to_thread.run_sync

    async def slow_store(fn, *args, **options):
        if getattr(fn, "__name__", "") == "ingest_batches":
            groups.append(len(args[0]))
            await trio.sleep(STORE_PAUSE_S)
        return await run_sync(fn, *args, **options)

    monkeypatch.setattr(trio.to_thread, "run_sync", slow_store)
    before = laptop.last_txnid()
    result = sync_over_socket(laptop, phone)
    assert result.synced and not result.error
    assert laptop.frontier() == phone.frontier()
    assert sum(groups) >= 4 and max(groups) >= 2
    assert laptop.last_txnid() - before < sum(groups)
