"""A link makes a large batch's checks that read no store ahead, in a worker thread, while the batch before it is
stored (StoreLog.prepare); over real trio sockets on 127.0.0.1 the store ends equal to its peer's."""

from __future__ import annotations

from agentlog.log import payloads
from agentlog.sync.peer_log import StoreLog
from agentlog.sync.replicator import PREPARE_MIN
from tests.helpers.loopback import sync_over_socket
from tests.helpers.sync import sync


def test_large_batches_are_prepared_ahead_and_stored_whole(laptop, phone, monkeypatch):
    sync(laptop, phone)
    phone.append_many([payloads.Observation(setting=f"s{i % 9}", value=f"v{i % 4}") for i in range(2500)])
    prepared = []
    real = StoreLog.prepare

    def counted(self, events):
        prepared.append(len(events))
        return real(self, events)

    monkeypatch.setattr(StoreLog, "prepare", counted)

    sync_over_socket(laptop, phone, timeout=30)

    assert laptop.frontier() == phone.frontier()
    assert {n: v["digest"] for n, v in laptop.views().items()} == {n: v["digest"] for n, v in phone.views().items()}
    assert len(prepared) >= 2 and sum(prepared) >= 2500 and min(prepared) >= PREPARE_MIN
