"""Bootstrap in the sans-IO protocol (docs/protocol.md section 8): when a device asks for a snapshot, how
the snapshot travels (offer, ordered chunks, a window of acks), and every malformed stream refused."""

from __future__ import annotations

import os

import pytest

from agentlog.errors import ProtocolError
from agentlog.store import compaction, devices, home
from agentlog.sync import messages
from agentlog.sync.messages import (
    MAX_SNAPSHOT,
    SNAPSHOT_CHUNK,
    VERSION,
    Events,
    FrontierMsg,
    Hello,
    SnapshotAck,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotWant,
    Want,
)
from agentlog.sync.peer_log import StoreLog
from agentlog.sync.protocol import WINDOW, Close, Connection, Install, Send
from tests.helpers.links import Link, views
from tests.helpers.sync import sync

AUTHOR, OTHER = b"a" * 32, b"o" * 32
WRITER = b"w" * 32                   # a third device, whose events the stub sender truncated
GROUP = b"g" * 32


@pytest.fixture
def compacted(laptop, phone):
    """Laptop and phone wrote and met; the laptop compacted everything both had seen."""
    for i in range(60):
        laptop.prefs.observe("ui.theme", "dark" if i % 3 else "light")
    sync(laptop, phone)
    for i in range(20):
        phone.memory.put(f"fact {i}")
    sync(phone, laptop)
    report = compaction.compact(laptop)
    assert report.dropped > 60 and laptop.truncated()
    return laptop


@pytest.fixture
def newcomer(tmp_path, laptop):
    store = home.create(tmp_path / "hub", "hub")
    devices.join(store, devices.enroll(laptop, store.device, "hub"))
    yield store
    store.close()


def state(store) -> dict:
    return {"count": store.count(), "frontier": store.frontier(), "views": views(store),
            "truncated": store.truncated(), "base": store.meta("base")}


def test_a_device_below_the_truncation_points_takes_the_snapshot_then_the_events_after_it(compacted, newcomer):
    laptop, hub = compacted, newcomer
    link = Link(laptop, hub)
    link.start()
    link.run()
    assert not link.closed and link.a.state == link.b.state == "live"
    assert hub.frontier() == laptop.frontier() and views(hub) == views(laptop)
    assert hub.count() <= laptop.count() < 10
    hub_said = [type(m).__name__ for who, m in link.sent if who == "b"]
    assert hub_said[:2] == ["Hello", "SnapshotWant"]
    assert hub_said.index("FrontierMsg") < hub_said.index("Want")           # re-announced, then caught up
    laptop_said = [m for who, m in link.sent if who == "a"]
    first_events = next(i for i, m in enumerate(link.sent) if isinstance(m[1], Events))
    last_ack = max(i for i, (who, m) in enumerate(link.sent) if isinstance(m, SnapshotAck))
    assert last_ack < first_events
    assert sum(isinstance(m, SnapshotOffer) for m in laptop_said) == 1
    snap = compaction.base_bundle(laptop).snapshot()
    assert {a: (h.epoch, h.seq) for a, h in hub.truncated().items()} == \
        {h.author: (h.epoch, h.seq) for h in snap.frontier}


def test_a_device_at_or_past_the_truncation_points_never_asks_for_a_snapshot(compacted, phone):
    laptop = compacted
    for i in range(30):
        laptop.prefs.observe("ui.font", f"f{i}")
    link = Link(laptop, phone)
    link.start()
    link.run()
    assert not link.closed and laptop.frontier() == phone.frontier() and views(laptop) == views(phone)
    names = {type(m).__name__ for _, m in link.sent}
    assert not names & {"SnapshotWant", "SnapshotOffer", "SnapshotChunk", "SnapshotAck"}
    assert phone.truncated() == {}


def test_a_snapshot_that_fails_its_check_is_refused_and_nothing_changes(compacted, newcomer):
    class Tampered(StoreLog):
        def snapshot(self):
            record, payload, states = super().snapshot()
            return record, payload, {**states, "pref": states["pref"][:-1] + bytes([states["pref"][-1] ^ 1])}

    before = state(newcomer)
    link = Link(compacted, newcomer, log=Tampered)
    link.start()
    link.run()
    [(who, close)] = [c for c in link.closed if c[0] == "b"]
    assert close.error and "snapshot refused" in close.reason and "pref view" in close.reason
    assert state(newcomer) == before


# -- the transfer, with stub logs --------------------------------------------------------------------------

class StubLog:
    """A LogReader holding no events: a frontier, truncation points and maybe a snapshot."""

    def __init__(self, frontier=None, truncated=None, snapshot=None):
        self._frontier, self._truncated, self._snapshot = frontier or {}, truncated or {}, snapshot

    def frontier(self):
        return dict(self._frontier)

    def read(self, author, epoch, lo, hi, limit):
        return []

    def revoked_limits(self):
        return {}

    def signature_ok(self, author, epoch, seq, record):
        return True

    def truncated(self):
        return dict(self._truncated)

    def snapshot(self):
        return self._snapshot

    def withheld(self):
        return []


BIG = {"roster": b"r" * 10, "pref": os.urandom(2 * SNAPSHOT_CHUNK + 5), "memory": b"",
       "extra": os.urandom(9 * SNAPSHOT_CHUNK)}


def pair(states=BIG, asker_frontier=None):
    """(sender, asker): the sender truncated WRITER up to seq 5 and holds `states`; the asker holds less."""
    sender = Connection(StubLog({WRITER: (0, 9)}, {WRITER: (0, 5)}, (b"record", b"payload", states)),
                        GROUP, OTHER, AUTHOR, 0.0)
    asker = Connection(StubLog(asker_frontier or {WRITER: (0, 2)}), GROUP, AUTHOR, OTHER, 0.0)
    sender.start(0.0)
    asker.start(0.0)
    sender.receive(Hello(VERSION, GROUP, AUTHOR, asker.log.frontier()), 0.0)
    return sender, asker


def sends(actions):
    return [a.message for a in actions if isinstance(a, Send)]


def deliver(conn, msgs):
    """Each message through the codec into `conn`; its actions."""
    out = []
    for m in msgs:
        out += conn.receive(messages.decode(messages.encode(m)), 0.0)
    return out


def test_snapshot_chunks_keep_a_window_and_reassemble_exactly():
    sender, asker = pair()
    [want] = sends(asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0))
    assert isinstance(want, SnapshotWant) and asker.state == "syncing"
    to_asker = sends(deliver(sender, [want]))
    assert isinstance(to_asker[0], SnapshotOffer)
    assert to_asker[0].views == tuple((n, len(s)) for n, s in BIG.items())
    peak, install, unacked = 0, None, len(to_asker) - 1
    while to_asker:
        peak = max(peak, unacked)
        assert all(len(c.data) <= SNAPSHOT_CHUNK for c in to_asker if isinstance(c, SnapshotChunk))
        actions = deliver(asker, to_asker)
        install = next((a for a in actions if isinstance(a, Install)), install)
        acks = sends(actions)
        unacked -= len(acks)
        to_asker = sends(deliver(sender, acks))
        unacked += len(to_asker)
        assert asker.state == "syncing"
    assert peak == WINDOW
    assert install is not None and install.states == BIG and install.record == b"record"
    assert asker.snapshot_progress() == (sum(map(len, BIG.values())),) * 2
    asker.log._frontier = {WRITER: (0, 6)}             # what the install left
    after = sends(asker.installed({WRITER: (0, 6)}, 1.0))
    assert isinstance(after[0], SnapshotAck) and after[0].chunk == 2 + 1 + 9 + 1
    assert isinstance(after[1], FrontierMsg)
    assert isinstance(after[2], Want) and after[2].ranges == ((WRITER, 0, 7, 9),)
    assert sender.snap_out is not None
    deliver(sender, after[:1])
    assert sender.snap_out is None


def test_a_snapshot_of_empty_states_is_installed_on_its_offer_and_acked_with_chunk_0():
    sender, asker = pair({"roster": b"", "pref": b""})
    [want] = sends(asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0))
    [offer] = sends(deliver(sender, [want]))
    [install] = deliver(asker, [offer])
    assert isinstance(install, Install) and install.states == {"roster": b"", "pref": b""}
    asker.log._frontier = {WRITER: (0, 5)}
    ack = sends(asker.installed({WRITER: (0, 5)}, 0.0))[0]
    assert ack == SnapshotAck(0)
    assert deliver(sender, [ack]) == [] and sender.snap_out is None


def test_still_below_the_truncation_points_after_installing_is_refused():
    sender, asker = pair()
    asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0)
    asker.snap_asked = asker.snap_offered = asker.installing = True
    asker.snap_in = type("In", (), {"chunks": 3})()
    send, close = asker.installed({WRITER: (0, 2)}, 0.0)
    assert send.message.code == "snapshot" and "does not reach" in send.message.message and close.error


def _offered():
    """An asker that asked and got BIG's offer."""
    sender, asker = pair()
    [want] = sends(asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0))
    offer = sends(deliver(sender, [want]))[0]
    deliver(asker, [offer])
    return asker


@pytest.mark.parametrize("msg, words", [
    (SnapshotChunk("pref", 0, b"x"), "'pref' at 0; 'roster' at 0 was due"),
    (SnapshotChunk("roster", 3, b"x"), "'roster' at 3; 'roster' at 0 was due"),
    (SnapshotChunk("roster", 0, b"x" * 11), "runs past the 10 bytes"),
    (SnapshotOffer(b"r", b"p", (("roster", 1),)), "not asked for"),
    (SnapshotAck(1), "no snapshot being sent"),
])
def test_a_garbled_snapshot_stream_is_refused(msg, words):
    asker = _offered()
    send, close = deliver(asker, [msg])
    assert words in send.message.message and close.error and asker.state == "closed"


def test_chunks_without_an_offer_and_offers_without_a_want_are_refused():
    for msg in (SnapshotChunk("roster", 0, b"x"), SnapshotOffer(b"r", b"p", (("roster", 1),))):
        _, asker = pair(asker_frontier={WRITER: (0, 9)})
        asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0)
        send, close = deliver(asker, [msg])
        assert send.message.code == "protocol" and close.error


def test_a_sender_refuses_needless_repeated_and_out_of_order_requests():
    sender, _ = pair()
    send, close = deliver(sender, [SnapshotWant({WRITER: (0, 5)})])
    assert "at or past my truncation points" in send.message.message and close.error
    sender, _ = pair()
    deliver(sender, [SnapshotWant({})])
    send, close = deliver(sender, [SnapshotWant({})])
    assert "while one is being sent" in send.message.message
    sender, _ = pair()
    deliver(sender, [SnapshotWant({})])
    send, close = deliver(sender, [SnapshotAck(2)])
    assert "chunk 1" in send.message.message and close.error
    nothing = Connection(StubLog({WRITER: (0, 9)}, {WRITER: (0, 5)}), GROUP, OTHER, AUTHOR, 0.0)
    nothing.receive(Hello(VERSION, GROUP, AUTHOR, {}), 0.0)
    send, close = deliver(nothing, [SnapshotWant({})])
    assert send.message.code == "snapshot" and "no snapshot" in send.message.message


def test_a_device_asks_for_one_snapshot_per_connection_at_most():
    _, asker = pair()
    [want] = sends(asker.receive(Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {WRITER: (0, 5)}), 0.0))
    assert isinstance(want, SnapshotWant)
    assert sends(asker.receive(FrontierMsg({WRITER: (0, 9)}, {WRITER: (0, 7)}), 0.0)) == []


def test_snapshot_messages_round_trip_and_their_limits_hold():
    for msg in (SnapshotWant({WRITER: (1, 2)}), SnapshotOffer(b"rec", b"pay", (("roster", 3), ("pref", 0))),
                SnapshotChunk("memory", 7, b"\0" * SNAPSHOT_CHUNK), SnapshotAck(12),
                Hello(VERSION, GROUP, AUTHOR, {WRITER: (0, 3)}, {WRITER: (0, 2)}),
                FrontierMsg({WRITER: (0, 3)}, {OTHER: (0, 1)})):
        assert messages.decode(messages.encode(msg)) == msg
    for msg, code in [(SnapshotOffer(b"r", b"p", (("roster", MAX_SNAPSHOT), ("pref", 1))), "too-large"),
                      (SnapshotOffer(b"r", b"p", (("roster", 1), ("roster", 1))), "protocol"),
                      (SnapshotOffer(b"r", b"p", (("", 1),)), "protocol"),
                      (SnapshotOffer(b"", b"p", (("roster", 1),)), "protocol"),
                      (SnapshotOffer(b"r", b"p", tuple((f"v{i}", 1) for i in range(17))), "protocol"),
                      (SnapshotChunk("pref", 0, b"\0" * (SNAPSHOT_CHUNK + 1)), "too-large"),
                      (SnapshotChunk("pref", 0, b""), "too-large")]:
        with pytest.raises(ProtocolError) as refused:
            messages.decode(messages.encode(msg))
        assert refused.value.code == code, refused.value


def test_the_old_protocol_version_is_refused_by_name():
    conn = Connection(StubLog(), GROUP, OTHER, AUTHOR, 0.0)
    conn.start(0.0)
    send, close = conn.receive(Hello(1, GROUP, AUTHOR, {}), 0.0)
    assert isinstance(close, Close) and f"protocol version 1 is not {VERSION}" in send.message.message


@pytest.mark.parametrize("said", [
    [Hello(VERSION, GROUP, OTHER, {}, {WRITER: (0, 5)})],
    [Hello(VERSION, GROUP, OTHER, {WRITER: (0, 4)}, {WRITER: (0, 5)})],
    [Hello(VERSION, GROUP, OTHER, {WRITER: (0, 9)}, {}), FrontierMsg({}, {WRITER: (0, 10)})],
], ids=["missing", "below", "later"])
def test_a_truncation_point_past_the_frontier_shown_is_refused_and_no_snapshot_asked_for(said):
    _, asker = pair()
    out = []
    for msg in said:
        out += asker.receive(msg, 0.0)
    send, close = out[-2:]
    assert send.message.code == "protocol" and "lies past the frontier shown for it" in send.message.message
    assert close.error and not any(isinstance(m, SnapshotWant) for m in sends(out))


def test_no_snapshot_is_asked_for_this_devices_own_events():
    _, asker = pair(asker_frontier={AUTHOR: (0, 2)})
    out = sends(asker.receive(Hello(VERSION, GROUP, OTHER, {AUTHOR: (0, 9)}, {AUTHOR: (0, 5)}), 0.0))
    assert not any(isinstance(m, SnapshotWant) for m in out) and asker.state != "closed"
