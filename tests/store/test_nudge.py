"""Writers wake a running replicator: a real store's commit sends the nudge over loopback UDP."""

from __future__ import annotations

import trio

from agentlog.log import payloads
from agentlog.store import nudge
from agentlog.sync import wakeups


async def test_an_append_nudges_the_published_port_and_unpublish_removes_it(laptop):
    sock = await wakeups.listen(laptop.path)
    try:
        assert (laptop.path / nudge.PORT_FILE).read_text() == str(sock.getsockname()[1])
        laptop.append(payloads.Observation(setting="ui.theme", value="dark"))
        with trio.fail_after(5):
            assert await sock.recv(64) == b"\x01"
    finally:
        wakeups.unpublish(laptop.path, sock)
        sock.close()
    assert not (laptop.path / nudge.PORT_FILE).exists()
    laptop.append(payloads.Observation(setting="ui.theme", value="light"))   # nobody listening: no error


async def test_a_refused_batch_sends_no_nudge(laptop, phone):
    sock = await wakeups.listen(phone.path)
    try:
        record = laptop.get(laptop.append(payloads.Observation(setting="ui.theme", value="dark")))
        assert phone.ingest([(record.record, record.payload)]).accepted == 1
        with trio.fail_after(5):
            await sock.recv(64)
        assert phone.ingest([(record.record, record.payload)]).accepted == 0     # a duplicate changes nothing
        with trio.move_on_after(0.3) as quiet:
            await sock.recv(64)
        assert quiet.cancelled_caught
    finally:
        wakeups.unpublish(phone.path, sock)
        sock.close()
