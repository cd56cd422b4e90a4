"""The NATS bridge against a real nats-server: publish with ids (dedup), consume from a sequence in batches with
acks (one acks every delivery before it), redelivery of what was not acked, refused credentials, a server that
is down or dies."""

from __future__ import annotations

import queue
import time

import pytest

from agentlog.errors import RelayUnavailable
from agentlog.relay.bridge import Bridge, Credentials
from tests.helpers.nats import NatsServer, free_port

STREAM, SUBJECTS = "AGENTLOG_t", ["agentlog.t.>"]
WAIT_S = 10.0


class Client:
    """A bridge whose deliveries and losses land in queues a test reads."""

    def __init__(self, url: str, credentials: Credentials | None = None, **options):
        self.delivered: queue.Queue = queue.Queue()
        self.downs: queue.Queue = queue.Queue()
        self.batches: list[int] = []
        self.bridge = Bridge(url, credentials, on_deliver=self._deliver, on_down=self.downs.put, **options).start()

    def _deliver(self, batch: list) -> None:
        self.batches.append(len(batch))
        for d in batch:
            self.delivered.put(d)

    def __enter__(self) -> Bridge:
        return self.bridge

    def __exit__(self, *exc) -> None:
        self.bridge.close()

    def take(self, n: int) -> list:
        return [self.delivered.get(timeout=WAIT_S) for _ in range(n)]

    def nothing_more(self, wait: float = 0.5) -> bool:
        try:
            self.delivered.get(timeout=wait)
        except queue.Empty:
            return True
        return False


def ready(client: Client) -> Bridge:
    b = client.bridge
    b.connect().result(WAIT_S)
    b.ensure_stream(STREAM, SUBJECTS, max_age_s=3600, max_bytes=1 << 24).result(WAIT_S)
    return b


def items(n: int, prefix: str = "m") -> list[tuple[str, str, bytes]]:
    return [(f"agentlog.t.a{i % 3}", f"{prefix}{i}", f"body {prefix}{i}".encode()) for i in range(n)]


def test_published_messages_are_consumed_in_order_and_a_repeated_id_is_stored_once(nats_server):
    c = Client(nats_server.url)
    with c as b:
        ready(c)
        seqs = b.publish(STREAM, items(50)).result(WAIT_S)
        assert seqs == list(range(1, 51))
        again = b.publish(STREAM, items(50)[10:20]).result(WAIT_S)       # a retried publish: acked, not stored
        assert again == list(range(11, 21))
        assert b.stream_state(STREAM).result(WAIT_S).messages == 50
        assert b.consume(STREAM, "agentlog.t.>", 1).result(WAIT_S) == 50
        got = c.take(50)
        assert [d.body for d in got] == [body for _, _, body in items(50)]
        assert [d.stream_seq for d in got] == seqs
        assert got[-1].pending == 0 and got[0].pending == 49
        assert len(c.batches) < 50                     # handed over as read, not one call per message
        b.ack(got[-1].handle)                          # acks all 50
        assert c.nothing_more(1.5)


def test_consuming_starts_at_the_sequence_asked_and_an_ack_covers_the_deliveries_before_it_only(nats_server):
    c = Client(nats_server.url, ack_wait_s=1.0)
    with c as b:
        ready(c)
        b.publish(STREAM, items(10)).result(WAIT_S)
        b.consume(STREAM, "agentlog.t.>", 7).result(WAIT_S)
        got = c.take(4)
        assert [d.stream_seq for d in got] == [7, 8, 9, 10]
        b.ack(got[1].handle)                           # 7 and 8; 9 and 10 come again
        again = c.take(2)
        assert [d.stream_seq for d in again] == [9, 10] and again[0].body == got[2].body
        assert all(d.delivered == 2 for d in again)
        b.ack(again[-1].handle)
        assert c.nothing_more(1.5)


def test_the_stream_takes_new_limits_when_it_exists(nats_server):
    c = Client(nats_server.url)
    with c as b:
        ready(c)
        b.publish(STREAM, items(3)).result(WAIT_S)
        state = b.ensure_stream(STREAM, SUBJECTS, max_age_s=60, max_bytes=1 << 20).result(WAIT_S)
        assert state.messages == 3


def test_a_rollup_keeps_only_the_last_message_of_its_subject(nats_server):
    c = Client(nats_server.url)
    with c as b:
        ready(c)
        b.publish(STREAM, [("agentlog.t.snapshot", "s1", b"one")], rollup=True).result(WAIT_S)
        b.publish(STREAM, items(2)).result(WAIT_S)
        b.publish(STREAM, [("agentlog.t.snapshot", "s2", b"two")], rollup=True).result(WAIT_S)
        assert b.stream_state(STREAM).result(WAIT_S).messages == 3
        b.consume(STREAM, "agentlog.t.snapshot", 1).result(WAIT_S)
        assert [d.body for d in c.take(1)] == [b"two"]


def test_wrong_credentials_are_refused_and_right_ones_accepted(tmp_path):
    server = NatsServer(tmp_path, user="alice", password="right").start()
    try:
        with Client(server.url, Credentials(user="alice", password="wrong")) as b:
            with pytest.raises(RelayUnavailable) as caught:
                b.connect().result(WAIT_S)
            assert caught.value.refused and "refused" in str(caught.value)
        c = Client(server.url, Credentials(user="alice", password="right"))
        with c:
            assert ready(c)
    finally:
        server.kill()


def test_a_relay_that_is_not_there_is_unreachable_at_once():
    with Client(f"nats://127.0.0.1:{free_port()}") as b:
        started = time.monotonic()
        with pytest.raises(RelayUnavailable) as caught:
            b.connect().result(WAIT_S)
        assert not caught.value.refused and "unreachable" in str(caught.value)
        assert time.monotonic() - started < 2.0


def test_a_server_killed_is_reported_down_and_keeps_what_it_acknowledged(nats_server):
    c = Client(nats_server.url)
    with c as b:
        ready(c)
        b.publish(STREAM, items(100)).result(WAIT_S)
        nats_server.kill()
        assert "lost" in c.downs.get(timeout=WAIT_S)
        with pytest.raises(RelayUnavailable):
            b.publish(STREAM, items(1, "late")).result(WAIT_S)
    nats_server.start()
    c = Client(nats_server.url)
    with c as b:
        assert ready(c).stream_state(STREAM).result(WAIT_S).messages == 100
