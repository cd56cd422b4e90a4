"""A daemon that nothing can stop: stalled peers, connection floods and failing links against real
`agentlog serve` processes and an in-process replicator, on 127.0.0.1.

- A peer that passes the handshake as an enrolled device and then stops reading (silent, like a
  suspended `agentlog sync`, or still sending heartbeats) is dropped within the silence timeout;
  the honest phone keeps syncing meanwhile, and the stalled device is welcome again afterwards.
- Hundreds of idle connections against a daemon with a small open-file limit: an honest
  `agentlog sync` still succeeds during the flood, and the daemon's log stays one JSON object a line.
- An exception other than a refusal inside a link (a reducer failing in the ingest transaction, a
  bug in the protocol step) drops that link with one log line; the replicator keeps serving.
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import struct
import warnings
from contextlib import asynccontextmanager
from functools import partial

import pytest
import structlog
import trio
from structlog.testing import capture_logs

from agentlog.errors import PeerError
from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.store import Store
from agentlog.sync import messages, net, protocol
from agentlog.sync.admission import check_peer
from agentlog.sync.messages import VERSION, Heartbeat, Hello, Want, frontier_digest
from agentlog.sync.replicator import Replicator, sync_once
from tests.helpers.daemons import DEADLINE, Daemon, agentlog, end_all, observe, provision, snapshot, wait_until

BULK = 3000                     # events the laptop holds: far more than a stalled reader's socket buffers take
FLOOD = 300                     # idle connections
FILES = 32                      # the flooded daemon's open-file limit (it needs about 19 of them itself)


@pytest.fixture
def registry():
    daemons: list[Daemon] = []
    yield daemons
    end_all(daemons)            # also fails the test if a daemon wrote a line that is not JSON


def _bulk(path, n: int) -> None:
    with home.open_home(path) as store:
        store.append_many([payloads.Observation(setting="test.bulk", value=f"{i:06d} " + "v" * 500)
                           for i in range(n)])


def _holds(path, eid: bytes) -> bool:
    with home.open_home(path) as store:
        return store.get(eid) is not None


def _reaches(homes, writer: str, reader: str, text: str) -> None:
    eid = bytes.fromhex(agentlog(homes[writer], "observe", "honest", text).stdout)
    wait_until(lambda: _holds(homes[reader], eid), f"an event written on the {writer} reaches the {reader}")


# -- a stalled peer ------------------------------------------------------------------------------

async def _hello(port: int, store: Store, rcvbuf: int | None = None) -> tuple[net.Channel, Hello]:
    """Connect as `store`'s device (with a small receive buffer if given), exchange hellos."""
    sock = trio.socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    channel = await net.connect_channel(trio.SocketStream(sock), store.key, store.meta("group_key"),
                                        check_peer(store))
    await channel.send(messages.encode(Hello(VERSION, store.group, store.device, {})))
    with trio.fail_after(DEADLINE):
        hello = messages.decode(await channel.receive())
    assert isinstance(hello, Hello), hello
    return channel, hello


async def _keep_talking(channel: net.Channel) -> None:
    """Heartbeats every 0.3 s (the laptop never finds this peer silent) until the connection breaks."""
    try:
        while True:
            await channel.send(messages.encode(Heartbeat(frontier_digest({}))))
            await trio.sleep(0.3)
    except PeerError:
        pass


def _world(root, registry: list, heartbeat: float = 1.0):
    """The laptop (listening, holding BULK events) and the phone dialing it, both synced; the sloth
    is enrolled and runs no daemon (this test plays it)."""
    homes = provision(root, "laptop", "phone", "sloth")
    _bulk(homes["laptop"], BULK)
    laptop = Daemon(homes["laptop"], heartbeat=heartbeat, registry=registry).start()
    phone = Daemon(homes["phone"], listen=False, peers=(laptop.address,), heartbeat=heartbeat,
                   registry=registry).start()
    wait_until(lambda: snapshot(homes["phone"])["count"] >= BULK, "the phone catches up")
    return homes, laptop, phone


def _sloth_closed(laptop: Daemon) -> list[dict]:
    return [e for e in laptop.logs() if e["event"] == "connection closed" and e.get("peer") == "sloth"]


async def _in_thread(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


@asynccontextmanager
async def _stalled(homes, laptop: Daemon, talking: bool):
    """The sloth connects, asks for all the laptop holds, and reads nothing of it (while `talking`, it
    keeps sending heartbeats); yields the sloth's store."""
    with home.open_home(homes["sloth"]) as sloth:
        stalled, hello = await _hello(laptop.port, sloth, rcvbuf=4096)
        ranges = tuple((a, epoch, 1, seq) for a, (epoch, seq) in sorted(hello.frontier.items()))
        await stalled.send(messages.encode(Want(ranges)))
        async with trio.open_nursery() as nursery:
            if talking:
                nursery.start_soon(_keep_talking, stalled)
            yield sloth
            nursery.cancel_scope.cancel()
        await stalled.aclose()


@pytest.mark.parametrize("talking", [False, True], ids=["silent", "talking"])
def test_a_peer_that_stops_reading_is_dropped_and_may_return(tmp_path, registry, talking):
    homes, laptop, phone = _world(tmp_path, registry)

    async def scenario():
        async with _stalled(homes, laptop, talking) as sloth:
            await _in_thread(_reaches, homes, "laptop", "phone", "while the sloth stalls")
            await _in_thread(wait_until, lambda: _sloth_closed(laptop), "the laptop drops the stalled link",
                             timeout=20)
            again, _ = await _hello(laptop.port, sloth)             # welcome again, not a duplicate
            await again.aclose()

    trio.run(scenario)
    reason = _sloth_closed(laptop)[0]["reason"]
    assert "read nothing" in reason if talking else ("read nothing" in reason or "partitioned" in reason), reason
    assert not [e for e in laptop.logs() if e["event"] == "duplicate connection closed"]
    _reaches(homes, "phone", "laptop", "after the sloth left")
    assert phone.running() and laptop.running()


def test_a_revocation_drops_a_link_stuck_in_a_send(tmp_path, registry):
    """Heartbeats of 10 s: the send deadline (30 s) is far off when the sloth is revoked."""
    homes, laptop, _ = _world(tmp_path, registry, heartbeat=10.0)

    async def scenario():
        async with _stalled(homes, laptop, talking=True):
            await _in_thread(agentlog, homes["laptop"], "devices", "revoke", "sloth")
            await _in_thread(wait_until, lambda: _sloth_closed(laptop), "the laptop drops the revoked sloth",
                             timeout=20)

    trio.run(scenario)
    assert "revoked" in _sloth_closed(laptop)[0]["reason"], _sloth_closed(laptop)


def test_a_new_connection_replaces_a_link_stuck_in_a_send(tmp_path, registry):
    """Heartbeats of 3 s: the stuck link is stale after 6 s and would be dropped after 9 s; the sloth
    dials again every half second, and the first connection the laptop keeps replaces the stuck one."""
    homes, laptop, _ = _world(tmp_path, registry, heartbeat=3.0)

    async def scenario():
        async with _stalled(homes, laptop, talking=True) as sloth:
            with trio.fail_after(DEADLINE):
                while True:
                    try:
                        again, _ = await _hello(laptop.port, sloth)
                        break
                    except PeerError:                           # closed as a duplicate while not yet stale
                        await trio.sleep(0.5)
            await again.aclose()

    trio.run(scenario)
    assert "replaced by a new one" in _sloth_closed(laptop)[0]["reason"], _sloth_closed(laptop)


# -- a connection flood ----------------------------------------------------------------------------

def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


def test_an_idle_connection_flood_does_not_keep_honest_devices_out(tmp_path, registry):
    homes = provision(tmp_path, "laptop", "phone")
    observe(homes["laptop"], 5, tag="before the flood")
    laptop = Daemon(homes["laptop"], registry=registry, preexec=_few_files).start()
    flood = []
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", laptop.port)))
        done = agentlog(homes["phone"], "sync", laptop.address, check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        assert snapshot(homes["phone"])["count"] == snapshot(homes["laptop"])["count"]
        observe(homes["phone"], 1, tag="during the flood")
        again = agentlog(homes["phone"], "sync", laptop.address, check=False, timeout=60)
        assert again.returncode == 0, again.stderr
    finally:
        for sock in flood:
            sock.close()
    assert laptop.running()
    failed = [e for e in laptop.logs() if e["event"] == "accept failed"]
    assert failed and "Too many open files" in failed[0]["error"], failed     # out of files: one line, no traceback
    assert laptop.stop() == 0


# -- an exception inside a link ------------------------------------------------------------------

def _fold_fails(*_args):
    struct.unpack(">Q", b"\0")                  # what a reducer meeting a malformed field raises


def _inject_into_ingest(monkeypatch, store: Store) -> None:
    monkeypatch.setattr(store.pref_view, "fold", _fold_fails)


def _inject_into_protocol(monkeypatch, store: Store) -> None:
    """A bug in the step that takes a batch, on `store`'s side of the link only."""
    step = protocol.Connection.STEPS[messages.Events]

    def failing(conn, msg, now):
        if conn.me == store.device:
            raise AttributeError("'NoneType' object has no attribute 'frontier'")
        return step(conn, msg, now)
    monkeypatch.setitem(protocol.Connection.STEPS, messages.Events, failing)


@pytest.mark.parametrize("inject", [_inject_into_ingest, _inject_into_protocol], ids=["ingest", "protocol step"])
def test_an_exception_in_a_link_drops_that_link_and_the_replicator_serves_on(tmp_path, monkeypatch, inject):
    homes = provision(tmp_path, "laptop", "phone")
    observe(homes["phone"], 3, tag="from the phone")
    laptop, phone = home.open_home(homes["laptop"]), home.open_home(homes["phone"])
    try:
        before = laptop.count()

        async def scenario():
            async with trio.open_nursery() as nursery:
                replicator = await nursery.start(Replicator(laptop, listen=("127.0.0.1", 0), watch=False).run)
                address = f"127.0.0.1:{replicator.port}"
                with monkeypatch.context() as patch:
                    inject(patch, laptop)
                    with pytest.raises(PeerError) as failed:
                        await sync_once(phone, address, timeout=DEADLINE)
                    assert laptop.count() == before, "something of the failed batch was stored"
                await sync_once(phone, address, timeout=DEADLINE)
                nursery.cancel_scope.cancel()
            return failed.value

        with capture_logs() as logs:
            failure = trio.run(scenario)
        assert laptop.count() == before + 3
        failed = [e for e in logs if e["event"] in ("ingest failed", "link failed")]
        assert len(failed) == 1 and failed[0]["log_level"] == "error", logs
        assert failed[0]["error"].startswith(("error: unpack", "AttributeError: ")), failed[0]
        if inject is _inject_into_ingest:
            assert "internal" in str(failure), failure
    finally:
        laptop.close()
        phone.close()


# -- stdlib logging in the daemon's log ------------------------------------------------------------

def test_stdlib_log_records_become_one_json_line_each(tmp_path):
    """trio and other libraries log through stdlib logging (a failed accept with its traceback): in
    serve's log each record is one JSON object, its exception named in one line."""
    from agentlog.sync.serve import configure_logging

    path = tmp_path / "serve.log"
    root = logging.getLogger()
    handlers, level, config = list(root.handlers), root.level, structlog.get_config()
    try:
        with open(path, "w") as out:
            configure_logging(out)
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                logging.getLogger("trio.serve_listeners").error("accept returned %s; retrying in %s seconds",
                                                                "EMFILE", 0.1, exc_info=True)
            logging.getLogger("somelib").warning("a record\nover two lines")
            warnings.warn("a warning of a library", RuntimeWarning, stacklevel=1)
    finally:
        structlog.configure(**config)
        root.handlers[:], root.level = handlers, level
        logging.captureWarnings(False)
        logging.raiseExceptions = True
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["event"]) for r in records] == [
        ("error", "trio.serve_listeners", "accept returned EMFILE; retrying in 0.1 seconds"),
        ("warning", "somelib", "a record over two lines"),
        ("warning", "py.warnings", records[2]["event"])]
    assert "RuntimeWarning: a warning of a library" in records[2]["event"]
    assert records[0]["error"] == "OSError: [Errno 24] Too many open files"
