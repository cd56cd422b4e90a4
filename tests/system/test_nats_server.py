"""The relay the tests run is a real nats-server with JetStream: what it acknowledged survives kill -9 and a
restart on the same address, which the relay's durability tests build on."""

from __future__ import annotations

import asyncio

import nats

from tests.helpers.nats import NatsServer


async def _publish(url: str, n: int) -> list[int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="T", subjects=["t.>"])
        acks = [await js.publish(f"t.{i % 3}", f"m{i}".encode(), headers={"Nats-Msg-Id": f"id{i}"}) for i in range(n)]
        again = await js.publish("t.0", b"m0", headers={"Nats-Msg-Id": "id0"})
        assert again.duplicate, "a message id published twice is stored twice"
        return [a.seq for a in acks]
    finally:
        await nc.close()


async def _read_all(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("T")
        sub = await js.subscribe("t.>", ordered_consumer=True)
        return [(await sub.next_msg(timeout=5)).data for _ in range(info.state.messages)]
    finally:
        await nc.close()


def test_acknowledged_messages_survive_kill_9_and_restart_on_the_same_port(nats_server: NatsServer):
    seqs = asyncio.run(_publish(nats_server.url, 50))
    assert seqs == list(range(1, 51))
    url = nats_server.url
    nats_server.kill()
    nats_server.start()
    assert nats_server.url == url
    assert asyncio.run(_read_all(url)) == [f"m{i}".encode() for i in range(50)]
    assert any(p.name.endswith(".blk") for p in nats_server.store_dir.rglob("*"))
