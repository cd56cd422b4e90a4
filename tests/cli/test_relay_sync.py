"""`agentlog sync nats://HOST:PORT` from the command line: a round each way through a real nats-server, a relay
that is not there or refuses us as one line of error, and `status`-visible state in the peer book."""

from __future__ import annotations

import json

from agentlog.store import home
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.nats import NatsServer, free_port
from tests.helpers.relay import relay_group


def test_sync_through_a_relay_from_the_command_line(tmp_path, nats_server):
    for store in relay_group(tmp_path, nats_server.url, "laptop", "phone"):
        store.close()
    run(tmp_path / "laptop", "observe", "theme", "dark")
    out = json.loads(run(tmp_path / "laptop", "sync", nats_server.url, "--json").stdout)
    assert out["sent"] >= 1 and out["received"] == 0
    text = run(tmp_path / "phone", "sync", nats_server.url).stdout
    assert text.startswith(f"synced with relay {nats_server.url}: received {out['sent']} events, sent 0")
    with home.open_home(tmp_path / "laptop") as laptop, home.open_home(tmp_path / "phone") as phone:
        assert laptop.frontier() == phone.frontier()
        assert phone.peer_book.relay_states()[nats_server.url].state == "live"
    rows = json.loads(run(tmp_path / "phone", "audit", "ledger", "--json").stdout)
    assert {(r["direction"], r["peer"]) for r in rows} == {("received", f"relay {nats_server.url}")}


def test_a_relay_not_there_or_refusing_is_one_line_of_error(tmp_path):
    for store in relay_group(tmp_path, f"nats://127.0.0.1:{free_port()}", "laptop"):
        store.close()
    nowhere = f"nats://127.0.0.1:{free_port()}"
    assert_one_line_error(run(tmp_path / "laptop", "sync", nowhere, check=False), nowhere, "unreachable")
    server = NatsServer(tmp_path, user="alice", password="secret").start()
    try:
        assert_one_line_error(run(tmp_path / "laptop", "sync", server.url, check=False), "refused")
    finally:
        server.kill()
    assert_one_line_error(run(tmp_path / "laptop", "sync", "nats://user:pw@127.0.0.1:4222", check=False),
                          "credentials")
