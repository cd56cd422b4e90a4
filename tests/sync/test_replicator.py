"""The replicator over real TCP on 127.0.0.1: how it dials."""

from __future__ import annotations

import random

import trio

from agentlog.sync import replicator
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


async def _synced_pair(nursery, laptop, phone) -> Replicator:
    """The laptop's replicator listening and the phone's dialing it, connected and in sync: the phone's."""
    port = closed_port()
    await nursery.start(Replicator(laptop, listen=("127.0.0.1", port), heartbeat=0.5).run)
    phone_side = await nursery.start(Replicator(phone, peers=[f"127.0.0.1:{port}"], heartbeat=0.5).run)
    with trio.fail_after(10):
        while laptop.device not in phone_side.links or phone.frontier() != laptop.frontier():
            await trio.sleep(0.01)
    return phone_side


async def _ten_pushes(laptop, phone) -> None:
    """Ten writes on the laptop, each waited for until the phone holds it, then a moment for any echo."""
    for i in range(10):
        laptop.prefs.observe("ui.theme", "dark" if i % 2 else "light")
        with trio.fail_after(10):
            while phone.frontier() != laptop.frontier():
                await trio.sleep(0.002)
    await trio.sleep(0.2)


async def test_events_a_peer_pushed_are_not_pushed_back_to_it(laptop, phone):
    """The phone's look at LMDB (wakeups.Watch) may see its own store of the laptop's pushes; the push it then asks
    of the laptop's connection waits for that store's result, so the laptop's events do not go back to it."""
    async with trio.open_nursery() as nursery:
        phone_side = await _synced_pair(nursery, laptop, phone)
        link = phone_side.links[laptop.device]
        sent_before = link.result.sent
        await _ten_pushes(laptop, phone)
        sent = link.result.sent - sent_before
        nursery.cancel_scope.cancel()
    assert sent == 0, f"the phone pushed {sent} of the laptop's own events back to it"


async def test_a_peers_pushes_stored_here_are_not_taken_for_local_writes(laptop, phone, monkeypatch):
    """The phone's store of each event the laptop pushed is its replicator's own commit (wakeups.Watch.settle): its
    watcher does not take it for a local write to push (a look at every link, for nothing, per push), while a
    write of another process's still is, and reaches the laptop. Peer states are not saved meanwhile: on a slow
    machine those commits of the phone's, once a second, would be counted too."""
    monkeypatch.setattr(replicator, "SAVE_EVERY_S", 600.0)
    async with trio.open_nursery() as nursery:
        phone_side = await _synced_pair(nursery, laptop, phone)
        noticed, changed = [], phone_side.watcher.changed
        phone_side.watcher.changed = lambda: (noticed.append(phone.last_txnid()), changed())
        await _ten_pushes(laptop, phone)
        of_pushes = len(noticed)
        phone.prefs.observe("ui.font", "mono")
        with trio.fail_after(10):
            while laptop.frontier() != phone.frontier():
                await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    assert of_pushes <= 2, f"the phone's watcher took {of_pushes} of its stores of 10 pushes for local writes"
    assert len(noticed) > of_pushes


async def test_a_push_of_local_writes_is_not_taken_for_news_of_the_peer(laptop, phone, monkeypatch):
    """A link's step for a local change notes nothing of the peer (its last-seen time, what it holds): the push
    leaves without that bookkeeping, and the peer's acks of it are still noted."""
    kinds, current = [], [""]
    step = replicator.Link._step

    async def spied(self, item):
        current[0] = item[0]
        await step(self, item)
    monkeypatch.setattr(replicator.Link, "_step", spied)
    async with trio.open_nursery() as nursery:
        phone_side = await _synced_pair(nursery, laptop, phone)
        note = phone_side.note
        phone_side.note = lambda link: (kinds.append(current[0]), note(link))
        for i in range(5):
            phone.prefs.observe("ui.font", f"size {i}")
            with trio.fail_after(10):
                while laptop.frontier() != phone.frontier():
                    await trio.sleep(0.002)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert "msg" in kinds
    assert "local" not in kinds
