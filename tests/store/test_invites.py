"""Pending invites in the store (agentlog/store/invites.py): each exchange spends a try, failed tries void the
invite, an expired or used invite answers nobody, and nothing of the secret is kept once it ended."""

from __future__ import annotations

import pytest

from agentlog import pair_code
from agentlog.errors import PeerRefused, UsageError
from agentlog.store import invites


def test_tries_are_spent_before_an_answer_and_failures_void_the_invite(laptop):
    slot, code = invites.create(laptop, "phone", [], ttl_s=60)
    assert invites.claim(laptop, slot) == pair_code.parse(code)[1]
    invites.failed(laptop, slot, "wrong code")
    for _ in range(2):
        invites.claim(laptop, slot)
        invites.failed(laptop, slot, "wrong code")
    doc = invites.get(laptop, slot)
    assert (doc["state"], doc["tries"], doc["failed"]) == ("void", 0, 3) and "wrong code" in doc["reason"]
    with pytest.raises(PeerRefused, match="void"):
        invites.claim(laptop, slot)


def test_a_used_invite_answers_nobody_and_ended_invites_leave_no_secret(laptop):
    slot, _ = invites.create(laptop, "phone", [], ttl_s=60)
    invites.claim(laptop, slot)
    invites.joined(laptop, slot, b"\x01" * 32)
    with pytest.raises(PeerRefused, match="used already"):
        invites.claim(laptop, slot)
    invites.remove(laptop, slot)
    with pytest.raises(PeerRefused, match=f"no pending invite {slot}"):
        invites.claim(laptop, slot)
    assert laptop.read(lambda txn: txn.stat(laptop.db("invites"))["entries"]) == 0


def test_an_expired_invite_is_void_and_its_slot_freed(laptop, monkeypatch):
    slot, _ = invites.create(laptop, "phone", [], ttl_s=1)
    now = invites._now_ms()
    monkeypatch.setattr(invites, "_now_ms", lambda: now + 2000)
    assert invites.get(laptop, slot)["state"] == "void"
    with pytest.raises(PeerRefused, match="expired"):
        invites.claim(laptop, slot)
    other, _ = invites.create(laptop, "tablet", [], ttl_s=60)
    assert invites.get(laptop, slot) is None or other == slot
    with pytest.raises(UsageError, match="--ttl"):
        invites.create(laptop, "tablet", [], ttl_s=0)
