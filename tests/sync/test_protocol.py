"""The sans-IO replication protocol, driven directly: real stores, no sockets, no clock."""

from __future__ import annotations

import pytest

from agentlog.store import devices, home
from agentlog.sync import messages
from agentlog.sync.messages import VERSION, Ack, Error, Events, FrontierMsg, Heartbeat, Hello, Want, WireEvent
from agentlog.sync.peer_log import StoreLog
from agentlog.sync.protocol import HEARTBEAT_S, PARTITION_AFTER, QUEUED_MAX, WINDOW, Close, Connection, Ingest, Send
from tests.helpers.links import Link, views
from tests.helpers.sync import sync


@pytest.fixture
def hub(tmp_path, laptop):
    store = home.create(tmp_path / "hub", "hub")
    devices.join(store, devices.enroll(laptop, store.device, "hub"))
    sync(laptop, store)
    yield store
    store.close()


def test_two_devices_catch_up_both_ways_and_go_live(laptop, phone):
    for i in range(1500):
        laptop.prefs.observe("ui.theme", "dark" if i % 3 else "light")
    for i in range(200):
        phone.memory.put(f"fact {i}")
    link = Link(laptop, phone, batch_events=400)
    link.start()
    link.run()
    assert link.a.state == link.b.state == "live"
    assert laptop.frontier() == phone.frontier()
    assert views(laptop) == views(phone)
    assert link.a.sent_events == 1500 and link.b.sent_events == 200
    assert not link.closed
    wants = [m for who, m in link.sent if isinstance(m, Want)]
    assert len(wants) == 2


def test_live_push_reaches_the_peer_and_is_not_echoed(laptop, phone):
    link = Link(laptop, phone)
    link.start()
    link.run()
    phone.memory.put("bought oat milk")
    link.handle(link.b, link.b.local_changed(1.0))
    link.run()
    assert laptop.frontier() == phone.frontier()
    before = len(link.sent)
    link.handle(link.a, link.a.local_changed(1.0))
    link.run()
    assert [m for _, m in link.sent[before:] if isinstance(m, Events)] == []


def test_at_most_window_batches_are_unacked(laptop, phone):
    for _i in range(100):
        laptop.prefs.observe("ui.theme", "dark")
    link = Link(laptop, phone, batch_events=10)
    link.start()
    in_flight = 0
    peak = 0
    for _ in range(10_000):
        if not link.queue:
            break
        target, raw = link.queue.pop(0)
        msg = messages.decode(raw)
        if isinstance(msg, Events):
            in_flight += 1
        if isinstance(msg, Ack) and target is link.a:
            in_flight -= 1
        peak = max(peak, in_flight, len(link.a.unacked))
        link.handle(target, target.receive(msg, 0.0))
    assert laptop.frontier() == phone.frontier()
    assert peak == WINDOW


def test_events_are_relayed_through_a_third_device(laptop, phone, hub):
    phone.memory.put("phone only")
    phone_laptop = Link(phone, laptop)
    phone_laptop.start()
    phone_laptop.run()
    laptop_hub = Link(laptop, hub)
    laptop_hub.start()
    laptop_hub.run()
    assert hub.frontier() == phone.frontier() == laptop.frontier()
    assert views(hub) == views(phone)


def test_events_before_hello_are_a_protocol_error(laptop, phone):
    conn = Connection(StoreLog(laptop), laptop.group, laptop.device, phone.device, 0.0)
    actions = conn.receive(Events(1, ()), 0.0)
    assert isinstance(actions[0], Send) and actions[0].message.code == "protocol"
    assert isinstance(actions[1], Close) and actions[1].error and conn.state == "closed"
    assert conn.receive(Hello(VERSION, laptop.group, phone.device, {}), 0.0) == []


@pytest.mark.parametrize("hello, code", [
    (lambda s, p: Hello(1, s.group, p.device, {}), "protocol"),
    (lambda s, p: Hello(VERSION, b"\x01" * 32, p.device, {}), "group"),
    (lambda s, p: Hello(VERSION, s.group, s.device, {}), "protocol"),
])
def test_a_bad_hello_is_refused(laptop, phone, hello, code):
    conn = Connection(StoreLog(laptop), laptop.group, laptop.device, phone.device, 0.0)
    conn.start(0.0)
    send, close = conn.receive(hello(laptop, phone), 0.0)
    assert send.message.code == code and close.error


def test_out_of_place_messages_are_refused(laptop, phone):
    for msg, words in [(Ack(7, {}), "ack of batch 7"), (Events(2, ()), "batch 2 arrived where batch 1")]:
        conn = Connection(StoreLog(laptop), laptop.group, laptop.device, phone.device, 0.0)
        conn.start(0.0)
        conn.receive(Hello(VERSION, laptop.group, phone.device, {}), 0.0)
        send, close = conn.receive(msg, 0.0)
        assert send.message.code == "protocol" and words in send.message.message and close.error


def test_a_batch_that_fails_validation_is_refused_whole(laptop, phone):
    for _i in range(5):
        laptop.prefs.observe("ui.theme", "dark")
    link = Link(laptop, phone)
    link.start()
    count = phone.count()
    original = link.handle

    def tamper(conn, actions):
        out = []
        for act in actions:
            if isinstance(act, Send) and isinstance(act.message, Events) and act.message.events:
                evs = list(act.message.events)
                last = evs[-1]
                evs[-1] = WireEvent(last.record[:-1] + bytes([last.record[-1] ^ 1]), last.payload)
                act = Send(Events(act.message.batch, tuple(evs)))
            out.append(act)
        original(conn, out)
    link.handle = tamper
    link.run()
    assert phone.count() == count
    errors = [m for who, m in link.sent if isinstance(m, Error)]
    assert errors and errors[0].code == "signature"
    assert {who for who, c in link.closed} == {"a", "b"} and all(c.error for _, c in link.closed)


def test_heartbeats_partition_and_frontier_repair(laptop, phone):
    link = Link(laptop, phone)
    link.start()
    link.run()
    t = HEARTBEAT_S
    link.now = t
    link.handle(link.a, link.a.tick(t))
    assert isinstance(link.sent[-1][1], Heartbeat)
    laptop.prefs.observe("ui.theme", "dark")     # the laptop holds more, the phone is not told (no local_changed)
    link.handle(link.b, link.b.tick(t))           # the phone's heartbeat: digests now differ
    link.run()
    kinds = [type(m).__name__ for _, m in link.sent[-4:]]
    assert "FrontierMsg" in kinds and "Want" in kinds
    assert laptop.frontier() == phone.frontier()
    assert link.a.tick(t + 0.1) == []
    silent = link.a.last_heard + PARTITION_AFTER * HEARTBEAT_S
    [close] = link.a.tick(silent)
    assert isinstance(close, Close) and "partitioned" in close.reason and not close.error


def test_an_in_sync_round_is_a_few_bytes_per_direction(laptop, phone):
    link = Link(laptop, phone)
    link.start()
    link.run()
    frontier = StoreLog(laptop).frontier()
    assert len(messages.encode(Heartbeat(messages.frontier_digest(frontier)))) <= 64
    assert len(messages.encode(FrontierMsg(frontier))) <= 48 + 48 * len(frontier)


def test_a_peer_that_ignores_the_window_is_cut_off(laptop, phone):
    conn = Connection(StoreLog(laptop), laptop.group, laptop.device, phone.device, 0.0)
    conn.start(0.0)
    conn.receive(Hello(VERSION, laptop.group, phone.device, {}), 0.0)
    for batch in range(1, QUEUED_MAX + 1):
        [ingest] = conn.receive(Events(batch, ()), 0.0)
        assert isinstance(ingest, Ingest)
    send, close = conn.receive(Events(QUEUED_MAX + 1, ()), 0.0)
    assert send.message.code == "protocol" and "window" in send.message.message and close.error


def test_events_past_a_revocation_do_not_stall_a_sync(laptop, phone, hub):
    """The hub took the phone's events 4 and 5 before the laptop revoked the phone after its seq 3,
    and wrote an event that follows them: the laptop does not ask for them (it would refuse them),
    accepts the hub's event (a clock naming a revoked device's later event needs only what the
    group accepts of it), the hub stops offering them and folds them out of its views once it
    holds the revocation, and the two hold the same views."""
    from agentlog.store import devices as devices_module
    for _i in range(3):
        phone.prefs.observe("ui.theme", "dark")
    sync(phone, laptop)
    for _i in range(2):
        phone.prefs.observe("ui.theme", "light")
    sync(phone, hub)
    hub.prefs.observe("ui.theme", "dark")           # its clock names the phone's seq 5
    devices_module.revoke(laptop, "phone", "lost")
    assert laptop.revoked_limits() == {phone.device: 3}
    link = Link(laptop, hub)
    link.start()
    link.run()
    assert not link.closed
    assert hub.revoked_limits() == {phone.device: 3}
    assert StoreLog(hub).frontier() == StoreLog(laptop).frontier()
    assert hub.frontier()[phone.device] == 5 and laptop.frontier()[phone.device] == 3
    assert laptop.frontier()[hub.device] == hub.frontier()[hub.device]     # the hub's own event arrived
    assert views(hub) == views(laptop)          # the hub folds its copies of events 4 and 5 out of its views
    before = views(hub)
    hub.rebuild_views()
    assert views(hub) == before


def test_a_freshly_joined_device_accepts_its_founder_and_enroller_until_the_roster_knows_them(tmp_path, laptop):
    """The join token names the founder and the enroller, who may read; until the group's history arrives,
    any other device is accepted receive-only (not admitted), and refused once the history says it is unknown."""
    from agentlog.sync.admission import admits, check_peer
    hub = home.create(tmp_path / "hub2", "hub2")
    devices.join(hub, devices.enroll(laptop, hub.device, "hub2"))
    sync(laptop, hub)
    fresh = home.create(tmp_path / "fresh", "fresh")
    devices.join(fresh, devices.enroll(hub, fresh.device, "fresh"))
    check = check_peer(fresh)
    assert check(laptop.device) is None and admits(fresh, laptop.device)     # the founder, named by the token
    assert check(hub.device) is None and admits(fresh, hub.device)           # the enroller
    stranger = home.create(tmp_path / "stranger", "stranger")
    assert check(stranger.device) is None and not admits(fresh, stranger.device)
    sync(hub, fresh)
    assert "not enrolled" in check(stranger.device)
    for store in (hub, fresh, stranger):
        store.close()
