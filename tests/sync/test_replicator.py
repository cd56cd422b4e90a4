"""The replicator over real TCP on 127.0.0.1: how it dials."""

from __future__ import annotations

import random

import trio

from agentlog.sync.replicator import Replicator
from tests.helpers.daemons import closed_port

LISTENS_AFTER_S = 3.5
"""When the dialed device starts listening: its dialer, drawing jitter from random.Random(2), was refused at 0,
0.24, 0.71, 1.37 and 2.7 s; with a backoff that doubles on every failure it would dial next at 6.33 s."""


async def test_a_refused_dial_is_retried_within_a_second_or_so_once_the_peer_listens(laptop, phone):
    port = closed_port()
    async with trio.open_nursery() as nursery:
        dialer = await nursery.start(Replicator(phone, peers=[f"127.0.0.1:{port}"], heartbeat=0.5,
                                                rng=random.Random(2)).run)
        await trio.sleep(LISTENS_AFTER_S)
        assert not dialer.links
        await nursery.start(Replicator(laptop, listen=("127.0.0.1", port), heartbeat=0.5).run)
        listening = trio.current_time()
        with trio.fail_after(10):
            while laptop.device not in dialer.links:
                await trio.sleep(0.01)
        waited = trio.current_time() - listening
        nursery.cancel_scope.cancel()
    assert waited < 1.8, f"connected {waited:.2f} s after the peer listened"


async def test_events_a_peer_pushed_are_not_pushed_back_to_it(laptop, phone):
    """The phone's look at LMDB (wakeups.watch) sees its own store of the laptop's pushes; the push it then asks
    of the laptop's connection waits for that store's result, so the laptop's events do not go back to it."""
    port = closed_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(Replicator(laptop, listen=("127.0.0.1", port), heartbeat=0.5).run)
        phone_side = await nursery.start(Replicator(phone, peers=[f"127.0.0.1:{port}"], heartbeat=0.5).run)
        with trio.fail_after(10):
            while laptop.device not in phone_side.links or phone.frontier() != laptop.frontier():
                await trio.sleep(0.01)
        link = phone_side.links[laptop.device]
        sent_before = link.result.sent
        for i in range(10):
            laptop.prefs.observe("ui.theme", "dark" if i % 2 else "light")
            with trio.fail_after(10):
                while phone.frontier() != laptop.frontier():
                    await trio.sleep(0.002)
        await trio.sleep(0.2)
        sent = link.result.sent - sent_before
        nursery.cancel_scope.cancel()
    assert sent == 0, f"the phone pushed {sent} of the laptop's own events back to it"
