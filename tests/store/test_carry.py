"""Carry mode on real LMDB stores: a speaker that carries only what it reads (`readable`) holds headers only for
`health`, which laptop and phone read; a later grant has it fetch and fold the scope's past."""

from __future__ import annotations

import pytest

from agentlog.errors import NotFoundError, UsageError
from agentlog.log.kinds import is_sealed_scope
from agentlog.log.validate import ROSTER_KINDS
from agentlog.store.verify import verify_store
from tests.helpers.scoped import Home, files_holding, health_home
from tests.helpers.sync import sync

CANARY = "CANARY-c4rry-pulse-62"


@pytest.fixture
def home(tmp_path):
    with health_home(tmp_path) as h:
        yield h


def phone_writes(home: Home) -> tuple[bytes, list]:
    """A memory and an observation in health; returns the memory's id and the two sealed events."""
    entry = home.phone.memory.put(f"{CANARY} resting pulse", scope="health")
    home.phone.prefs.observe("pulse", CANARY, scope="health")
    sealed = [e for e in home.phone.events(home.phone.device) if is_sealed_scope(e.header.scope)]
    assert len(sealed) == 2
    return entry, sealed


def count(store, db: str) -> int:
    with store.raw_txn() as txn:
        return txn.stat(store.db(db))["entries"]


def held_payload(store, event) -> bytes | None:
    got = store.get(event.id)
    return got.payload if got else None


def digests(store) -> dict:
    return {name: v["digest"] for name, v in store.views().items()}


def assert_verified(*stores) -> None:
    for store in stores:
        report = verify_store(store)
        assert report.ok, (store.name, [p.what for p in report.problems], report.damage, report.withheld)


def test_the_default_carries_everything_and_the_mode_is_kept_in_the_home(home, tmp_path):
    assert home.speaker.carry == "all"
    home.speaker.set_carry("readable")
    home.speaker.close()
    home.speaker = Home._device(home, "speaker")               # reopened: the mode stayed in the home
    assert home.speaker.carry == "readable"
    with pytest.raises(UsageError, match="carry mode must be one of all, readable"):
        home.speaker.set_carry("some")
    assert home.speaker.carry == "readable"


def test_a_readable_device_stores_headers_only_for_what_it_cannot_open(home):
    home.speaker.set_carry("readable")
    entry, sealed = phone_writes(home)
    sync(home.phone, home.speaker)
    assert home.speaker.frontier() == home.phone.frontier()
    assert all(held_payload(home.speaker, e) is None for e in sealed)
    for e in sealed:                                 # not a byte of the ciphertexts anywhere under its home
        assert files_holding(home.tmp / "speaker", e.payload[-24:]) == []
        assert files_holding(home.tmp / "phone", e.payload[-24:])          # (the search does find them)
    assert home.speaker.uncarried_counts() == {"health": 2}
    assert count(home.speaker, "uncarried") == 2 and count(home.speaker, "sealed.unread") == 0
    assert home.speaker.withheld_count() == 0 and home.speaker.refetch() == []   # never asked of peers
    with pytest.raises(NotFoundError, match="cannot read scope health"):
        home.speaker.memory.get(entry)
    report = verify_store(home.speaker)
    assert report.ok and report.uncarried == 2
    assert any("2 sealed events" in n and "headers only" in n for n in report.notes)

    # It relays headers, not payloads: a reader that took them from it lacks the payloads until a peer has them.
    sync(home.speaker, home.laptop)
    assert home.laptop.withheld_count() == 2 and not verify_store(home.laptop).ok
    home.laptop.ingest([(e.record, e.payload) for e in sealed])
    assert home.laptop.withheld_count() == 0 and home.laptop.memory.get(entry).content.startswith(CANARY)
    assert_verified(home.laptop, home.speaker)


def test_a_readable_device_carries_what_it_reads(home):
    home.laptop.set_carry("readable")
    entry, sealed = phone_writes(home)
    sync(home.phone, home.laptop)
    assert [held_payload(home.laptop, e) for e in sealed] == [e.payload for e in sealed]
    assert home.laptop.uncarried_counts() == {} and home.laptop.memory.get(entry).content.startswith(CANARY)
    assert digests(home.laptop) == digests(home.phone)
    assert_verified(home.laptop)


def test_events_arriving_without_their_payload_are_not_asked_for(home):
    """A sealed event a peer relays header-only: a readable device that holds no key of its scope does not
    want it (uncarried); one in mode all does (withheld)."""
    _, sealed = phone_writes(home)
    home.speaker.set_carry("readable")
    home.laptop.set_carry("readable")
    missing = home.phone.events_after(home.speaker.frontier())
    stripped = [(e.record, e.payload if e.header.kind in ROSTER_KINDS else None) for e in missing]
    home.speaker.ingest(stripped)
    assert (count(home.speaker, "uncarried"), home.speaker.withheld_count()) == (2, 0)
    home.laptop.ingest(stripped)                      # the laptop reads health: it wants them
    assert (count(home.laptop, "uncarried"), home.laptop.withheld_count()) == (0, 2)
    assert_verified(home.speaker)


def test_switching_to_readable_drops_the_payloads_held_and_back_to_all_wants_them(home):
    entry, sealed = phone_writes(home)
    home.meet()
    assert home.speaker.scopes.unread_counts() == {"health": 2}
    assert all(held_payload(home.speaker, e) == e.payload for e in sealed)
    before = digests(home.speaker)

    assert home.speaker.set_carry("readable") == {"dropped": 2, "wanted": 0}
    assert all(held_payload(home.speaker, e) is None for e in sealed)
    assert home.speaker.scopes.unread_counts() == {} and home.speaker.uncarried_counts() == {"health": 2}
    assert digests(home.speaker) == before                        # it folded nothing of them
    assert_verified(home.speaker)
    home.speaker.rebuild_views()
    assert digests(home.speaker) == before

    assert home.speaker.set_carry("all") == {"dropped": 0, "wanted": 2}
    assert home.speaker.uncarried_counts() == {} and home.speaker.withheld_count() == 2
    assert len(home.speaker.refetch()) == 1                       # one run of the phone's, asked of peers
    home.speaker.ingest([(e.record, e.payload) for e in sealed])
    assert all(held_payload(home.speaker, e) == e.payload for e in sealed)
    assert home.speaker.scopes.unread_counts() == {"health": 2} and home.speaker.withheld_count() == 0
    assert_verified(home.speaker)


def test_a_grant_makes_the_uncarried_past_wanted_and_its_payloads_are_folded(home):
    home.speaker.set_carry("readable")
    entry, sealed = phone_writes(home)
    home.meet()
    assert home.speaker.uncarried_counts() == {"health": 2}
    home.laptop.scopes.grant("health", ["speaker"])
    sync(home.laptop, home.speaker)                   # the grant alone: the speaker now wants the past
    assert home.speaker.scopes.readable("health")
    assert home.speaker.uncarried_counts() == {} and home.speaker.withheld_count() == 2
    assert home.speaker.refetch() == [(home.phone.device, 0, *sorted(e.header.seq for e in sealed))]
    with pytest.raises(NotFoundError):
        home.speaker.memory.get(entry)

    result = home.speaker.ingest([(e.record, e.payload) for e in sealed])   # a peer answers the want
    assert result.filled == 2 and home.speaker.withheld_count() == 0
    assert home.speaker.memory.get(entry).content.startswith(CANARY)
    assert home.speaker.prefs.get("pulse").value == CANARY
    home.meet()                                       # the same rights and events: byte-identical views
    assert digests(home.speaker) == digests(home.laptop) == digests(home.phone)
    assert home.speaker.scopes.unread() == []
    assert_verified(home.speaker)


def test_a_payload_filled_that_does_not_open_is_dropped_again(home):
    """A readable device that asked for a payload (its scope's key is held) and got one sealed with a key it
    lacks stops carrying it: the revoked phone, in readable mode, after the laptop rotated the key."""
    home.phone.set_carry("readable")
    home.laptop.scopes.revoke("health", "phone")
    home.laptop.memory.put(f"{CANARY} after revocation", scope="health")
    event = list(home.laptop.events(home.laptop.device))[-1]
    assert event.header.kind == "memory.put"
    missing = home.laptop.events_after(home.phone.frontier())
    home.phone.ingest([(e.record, e.payload if e.id != event.id else None) for e in missing])
    assert home.phone.withheld_count() == 1          # it holds keys of health: it asks for the payload
    home.phone.ingest([(event.record, event.payload)])
    assert home.phone.withheld_count() == 0 and home.phone.uncarried_counts() == {"health": 1}
    assert held_payload(home.phone, event) is None and home.phone.scopes.unread_counts() == {}
    assert_verified(home.phone)
