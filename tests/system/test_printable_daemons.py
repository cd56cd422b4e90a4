"""Text another device wrote reaches terminals and logs escaped and bounded, through real processes: a peer
played by this test process over real sockets sends errors and goodbyes full of escape codes, newlines and
kilobytes, to an `agentlog serve` daemon and to `agentlog sync`; and a device enrolled under a name full of
escape codes writes memory entries that another device syncs and shows with every reading command (the
sanitizer itself: tests/test_printable.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio

from agentlog.errors import ConnectionLost, PeerClosed, ProtocolError
from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.sync import messages, net
from agentlog.sync.admission import check_peer
from agentlog.sync.messages import Error, Goodbye, Hello
from agentlog.text import printable
from tests.helpers.daemons import DEADLINE, Daemon, agentlog, end_all, provision, wait_until
from tests.helpers.printable import EVIL_NAME, LOG_LINE_MAX, NASTY, assert_clean, hidden

# -- a peer's errors and goodbyes, against real processes --------------------------------------------

IN_LIMIT = NASTY * 20                                   # escapes and newlines, within the protocol's limit
OVER_LIMIT = NASTY + "A" * 16_384                        # over it: 16 KB


async def _hellos(channel: net.Channel, store) -> None:
    await channel.send(messages.encode(Hello(messages.VERSION, store.group, store.device, {})))
    with trio.fail_after(DEADLINE):
        messages.decode(await channel.receive())


async def _send_and_wait(channel: net.Channel, msg) -> None:
    """Send `msg` raw (over-long text included), then read until the other side closes."""
    wire = (messages._Wire(error=(msg.code, msg.message)) if isinstance(msg, Error)
            else messages._Wire(goodbye=(msg.reason,)))
    await channel.send(messages._LAYOUT.encode(wire))
    with trio.move_on_after(DEADLINE):
        while True:
            try:
                await channel.receive()
            except (PeerClosed, ConnectionLost, ProtocolError):
                return


def dial_and_say(daemon: Daemon, mallory, msg) -> None:
    """Mallory dials the daemon, exchanges hellos, sends `msg`, waits for the daemon to hang up."""
    async def run():
        channel = await net.open_channel("127.0.0.1", daemon.port, mallory.key, mallory.meta("group_key"),
                                         check_peer(mallory))
        try:
            await _hellos(channel, mallory)
            await _send_and_wait(channel, msg)
        finally:
            await channel.aclose()
    trio.run(run)


def sync_against(home_dir: Path, mallory, msg):
    """`agentlog sync` from `home_dir` to mallory listening in this process, which answers with `msg`."""
    async def run():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def serve_one():
            stream = await listeners[0].accept()
            channel = await net.accept_channel(stream, mallory.key, mallory.meta("group_key"), lambda device: None)
            try:
                await _hellos(channel, mallory)
                await _send_and_wait(channel, msg)
            finally:
                await channel.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one)
            proc = await trio.run_process(
                [sys.executable, "-m", "agentlog", "--home", str(home_dir), "sync", f"127.0.0.1:{port}",
                 "--timeout", "20"], capture_stdout=True, capture_stderr=True, check=False,
                env={k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"})
            nursery.cancel_scope.cancel()
        await listeners[0].aclose()
        return proc
    return trio.run(run)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    registry: list[Daemon] = []
    homes = provision(tmp_path_factory.mktemp("printable"), "laptop", "mallory", "tablet")
    laptop = Daemon(homes["laptop"], registry=registry).start()
    agentlog(homes["tablet"], "sync", laptop.address)             # the tablet learns the roster: mallory is enrolled
    mallory = home.open_home(homes["mallory"])
    try:
        yield homes, laptop, mallory
    finally:
        mallory.close()
        end_all(registry)


def assert_logs_clean(daemon: Daemon) -> None:
    for line in daemon.lines():
        assert len(line.encode()) <= LOG_LINE_MAX, f"a log line of {len(line.encode())} bytes: {line[:300]}"
        entry = json.loads(line)
        for key, value in entry.items():
            if isinstance(value, str):
                assert not hidden(value), f"log field {key} holds raw control characters: {value[:300]!r}"


@pytest.mark.parametrize("msg", [Error("protocol\x1b[31m", IN_LIMIT), Goodbye(IN_LIMIT), Error("protocol", OVER_LIMIT),
                                 Goodbye(OVER_LIMIT)], ids=["error", "goodbye", "long-error", "long-goodbye"])
def test_a_peers_error_or_goodbye_reaches_the_daemons_log_and_status_escaped_and_bounded(world, msg):
    homes, laptop, mallory = world
    seen = len([e for e in laptop.logs() if e["event"] == "connection closed"])
    dial_and_say(laptop, mallory, msg)
    laptop.wait_log(lambda e: len([x for x in laptop.logs() if x["event"] == "connection closed"]) > seen,
                    "mallory's connection closing")
    assert_logs_clean(laptop)
    closed = [e for e in laptop.logs() if e["event"] == "connection closed"][seen]
    assert "\\x1b[2J" in closed["reason"] or "over the limit" in closed["reason"], closed

    def said(line: str) -> bool:
        return not isinstance(msg, Error) or "\\x1b[2J" in line or "over the limit" in line

    def shown():       # the status the daemon writes next: until then it may show the case before this one
        out = agentlog(homes["laptop"], "status").stdout
        lines = [line for line in out.splitlines() if line.startswith("peer mallory") and "partitioned" in line]
        return out if lines and said(lines[0]) else None
    out = wait_until(shown, "agentlog status shows mallory partitioned, with what it said when it was an error")
    assert_clean(out)


@pytest.mark.parametrize("msg", [Error("protocol", IN_LIMIT), Goodbye(IN_LIMIT), Error("protocol", OVER_LIMIT),
                                 Goodbye(OVER_LIMIT)], ids=["error", "goodbye", "long-error", "long-goodbye"])
def test_agentlog_sync_shows_a_peers_error_or_goodbye_escaped_and_bounded(world, msg):
    homes, _, mallory = world
    proc = sync_against(homes["tablet"], mallory, msg)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 3, (out, err)
    assert err.startswith("agentlog: error: ") and err.count("\n") == 1, err[:2000]
    assert_clean(out + err)
    assert "\\x1b[2J" in err or "over the limit" in err, err
    status = agentlog(homes["tablet"], "status").stdout
    assert "mallory" in status
    assert_clean(status)


# -- what a device wrote, shown on another ----------------------------------------------------------

CONTENT = "\x1b[2Jremember\nthis\r\x1b]0;title\x07" + "\u202egnp.exe"
TAG = "\x1b[41mred"


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A laptop daemon; a phone enrolled under EVIL_NAME writes entries full of escapes and syncs them to it;
    both then change one entry's content at once, and sync again (a conflict)."""
    root = tmp_path_factory.mktemp("shown")
    registry: list[Daemon] = []
    with home.create(root / "laptop", "laptop") as laptop, home.create(root / "phone", "phone") as phone:
        laptop.create_group("laptop")
        laptop.append(payloads.DeviceEnroll(device=phone.device, name=EVIL_NAME))   # what a modified client can do
        devices.join(phone, devices.enroll(laptop, phone.device, EVIL_NAME))
        entry = phone.memory.put(CONTENT, tags=["plain"])
        crafted = os.urandom(16)
        phone.append(payloads.MemoryPut(entry=crafted, type="fact", content=CONTENT * 3, tags=(TAG, "ok")))
        long = phone.memory.put(CONTENT * 40)
        gone = phone.memory.put("to be deleted")
        phone.memory.delete(gone, "because\x1b[2J\nreasons")
        phone.prefs.decide("theme", "dark", 0.9, None, "why\x1b[2J")
    daemon = Daemon(root / "laptop", registry=registry).start()
    try:
        out = agentlog(root / "phone", "sync", daemon.address)
        assert_clean(out.stdout + out.stderr)
        for path, mark in ((root / "laptop", "L"), (root / "phone", "P")):
            with home.open_home(path) as store:
                store.memory.update(crafted, content=CONTENT + mark)
        agentlog(root / "phone", "sync", daemon.address)
        yield root / "laptop", {"entry": entry.hex(), "crafted": crafted.hex(), "long": long.hex(),
                                 "gone": gone.hex()}, daemon
    finally:
        end_all(registry)


@pytest.mark.parametrize("args", [
    ("memory", "get", "{entry}"), ("memory", "get", "{crafted}"), ("memory", "get", "{long}"),
    ("memory", "get", "{gone}"), ("memory", "list"),
    ("memory", "list", "--deleted"), ("memory", "search", "this", "--lexical"), ("memory", "search", "remember"),
    ("memory", "conflicts"), ("log",), ("devices", "list"), ("status",), ("pref", "get", "theme", "--explain"),
    ("replay",), ("replay", "--memory", "{crafted}"), ("replay", "--setting", "theme"), ("audit", "ledger"),
], ids=lambda args: " ".join(a for a in args if not a.startswith("{")))
def test_what_another_device_wrote_is_shown_escaped(synced, args):
    laptop, ids, _ = synced
    proc = agentlog(laptop, *(a.format(**ids) for a in args))
    assert_clean(proc.stdout + proc.stderr, max_line=20_000)


def test_memory_get_shows_the_whole_content_escaped(synced):
    laptop, ids, _ = synced
    out = agentlog(laptop, "memory", "get", ids["long"]).stdout
    assert f"content     {printable(CONTENT * 40, 100_000)}\n" in out
    out = agentlog(laptop, "memory", "get", ids["crafted"]).stdout
    assert f"tags        {printable(TAG)}, ok\n" in out
    assert f"put by      {printable(EVIL_NAME)} at" in out
    assert "conflict in content: 2 standing values" in out
    for mark in "LP":                                   # each standing value, escaped once (JSON's, then ours)
        assert printable(json.dumps(CONTENT + mark, ensure_ascii=False)) in out
    assert "\\\\" not in out
    listed = agentlog(laptop, "devices", "list").stdout
    assert printable(EVIL_NAME) in listed and len(listed.splitlines()) == 2


def test_json_output_stays_exact(synced):
    laptop, ids, _ = synced
    doc = json.loads(agentlog(laptop, "memory", "get", ids["long"], "--json").stdout)
    assert doc["content"] == CONTENT * 40 and doc["device"] == EVIL_NAME
    assert TAG in json.loads(agentlog(laptop, "memory", "get", ids["crafted"], "--json").stdout)["tags"]
    names = [d["name"] for d in json.loads(agentlog(laptop, "devices", "list", "--json").stdout)]
    assert EVIL_NAME in names


def test_the_daemon_logs_the_peers_name_escaped(synced):
    _, _, daemon = synced
    daemon.wait_log(lambda e: e["event"] == "connected", "the phone connecting")
    assert_logs_clean(daemon)
    assert any(e.get("peer") == printable(EVIL_NAME, 2048) for e in daemon.logs() if e["event"] == "connected")


def test_the_audit_report_shows_escapes_not_controls(synced, tmp_path):
    laptop, _, _ = synced
    agentlog(laptop, "audit", "export", "--out", str(tmp_path / "audit.jsonl"))
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert not hidden(page), hidden(page)[:8]
    assert "\\x1b[2Jremember" in page and "ph\\x1b[31mone\\u202e\\n" in page
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert json.dumps(CONTENT)[1:-1] in lines                     # the export itself stays exact
