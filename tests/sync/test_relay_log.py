"""The relay consumer's ack under AckAll (acking one delivery acks every earlier one): at the cursor's floor, so a
delivery still open comes again; past the slack, the latest dealt with, so the relay never stops delivering.
And what a device publishes: another device's events only once the relay has lacked them a while."""

from __future__ import annotations

from agentlog.log import payloads
from agentlog.sync import relay_log
from agentlog.sync.relay_log import AckFloor, RelayLog
from tests.helpers.relay import config, relay_group
from tests.helpers.sync import sync


def test_the_ack_is_the_latest_delivery_dealt_with_at_or_below_the_floor():
    acks = AckFloor(slack=10)
    assert acks.settle([(1, "h1"), (2, "h2"), (4, "h4"), (5, "h5")], floor=2) == "h2"   # 3 is still open
    assert acks.settle([(6, "h6")], floor=2) is None
    assert acks.settle([(3, "h3")], floor=6) == "h6"                # 3 came: everything up to 6 at once
    assert acks.waiting == {}


def test_past_the_slack_the_latest_is_acked_even_above_an_open_delivery():
    acks = AckFloor(slack=3)
    assert acks.settle([(2, "h2"), (3, "h3"), (4, "h4")], floor=0) is None      # 1 open
    assert acks.settle([(5, "h5")], floor=0) == "h5"
    assert acks.waiting == {}


def test_carried_events_are_published_only_once_the_relay_lacked_them_a_while(tmp_path, monkeypatch):
    laptop, phone = relay_group(tmp_path, "nats://127.0.0.1:4222", "laptop", "phone")
    try:
        phone.append_many([payloads.Observation(setting="test.phone", value=f"p{i}") for i in range(5)])
        sync(phone, laptop)                      # the laptop now carries the phone's events
        clock = [1000.0]
        monkeypatch.setattr(relay_log.time, "monotonic", lambda: clock[0])
        log = RelayLog(laptop, config(laptop).address)

        def authors(hold: float) -> set[bytes]:
            return {author for _, run, _ in log.unpublished(hold_carried=hold) for author, _, _ in run}

        assert authors(1.0) == {laptop.device} and log.carried_waiting      # the phone may yet publish its own
        clock[0] += 0.5
        assert authors(1.0) == {laptop.device} and log.carried_waiting
        clock[0] += 0.6
        assert authors(1.0) == {laptop.device, phone.device} and not log.carried_waiting
        assert authors(0.0) == {laptop.device, phone.device}                # a round carries everything at once
    finally:
        laptop.close()
        phone.close()
