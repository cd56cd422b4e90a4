"""The relay consumer's ack under AckAll (acking one delivery acks every earlier one): at the cursor's floor, so a
delivery still open comes again; past the slack, the latest dealt with, so the relay never stops delivering."""

from __future__ import annotations

from agentlog.sync.relay_log import AckFloor


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
