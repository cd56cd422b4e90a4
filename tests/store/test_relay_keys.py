"""The relay key on real stores: scope `relay` created with every enrolled device, the same key on each, rotated
past a revoked device, granted to devices that lack it, and closed to user writes."""

from __future__ import annotations

import pytest

from agentlog.crypto import DeviceKey
from agentlog.errors import InvalidValueError, ScopeError, TokenError, UsageError
from agentlog.log.kinds import RELAY_SCOPE
from agentlog.relay import envelope
from agentlog.store import devices, relay
from agentlog.store.store import Store
from tests.helpers.scoped import Home
from tests.helpers.sync import sync


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    for s in (h.laptop, h.phone, h.speaker):
        s.close()


def readers(store) -> list[str]:
    return [name for _, name in store.scopes.get(RELAY_SCOPE).readers]


def test_created_with_every_enrolled_device_and_the_same_key_everywhere(home):
    assert home.laptop.relay_keys().current is None
    created = relay.create_scope(home.laptop)
    assert created is not None and relay.create_scope(home.laptop) is None       # once
    home.meet()
    assert readers(home.phone) == ["laptop", "phone", "speaker"]
    keys = [s.relay_keys() for s in (home.laptop, home.phone, home.speaker)]
    assert keys[0].current == created and all(k.current == created for k in keys)
    assert all(dict(k) == dict(keys[0]) and len(k) == 1 for k in keys)


def test_a_revoked_device_gets_no_later_relay_key(home):
    relay.create_scope(home.laptop)
    home.meet()
    first = home.laptop.relay_keys().current
    devices.revoke(home.laptop, "speaker")              # rotates every scope the speaker could read
    home.meet()
    laptop, phone, speaker = (s.relay_keys() for s in (home.laptop, home.phone, home.speaker))
    assert laptop.current != first and phone.current == laptop.current and first in phone
    assert laptop.current not in speaker and speaker.current is None and first in speaker
    assert readers(home.laptop) == ["laptop", "phone"]
    assert relay.upkeep(home.phone) == []                # nothing left to do


def test_upkeep_rotates_when_the_revoker_did_not_read_the_relay(home, tmp_path):
    """The speaker is revoked by a device whose store did not hold the relay scope yet: the next reader's upkeep
    writes the new key."""
    relay.create_scope(home.laptop)
    sync(home.laptop, home.speaker)
    devices.revoke(home.phone, "speaker")                # the phone has not seen the relay scope
    sync(home.phone, home.laptop)
    first = home.laptop.relay_keys().current
    [rotated] = relay.upkeep(home.laptop)
    home.meet()
    assert home.phone.relay_keys().current == rotated != first
    assert rotated not in home.speaker.relay_keys()


def test_a_device_enrolled_later_is_granted_every_relay_key(home, tmp_path):
    relay.create_scope(home.laptop)
    home.meet()
    devices.revoke(home.laptop, "speaker")
    home.meet()
    tablet = Store(tmp_path / "tablet", DeviceKey.generate())
    try:
        tablet.set_meta({"device": tablet.device, "name": b"tablet"})
        devices.join(tablet, devices.enroll(home.phone, tablet.device, "tablet"))
        sync(home.phone, tablet)
        assert "tablet" in readers(tablet)
        assert dict(tablet.relay_keys()) == dict(home.laptop.relay_keys())      # both epochs: it reads the past too
        assert tablet.relay_keys().current == home.laptop.relay_keys().current
    finally:
        tablet.close()


def test_upkeep_grants_a_device_its_enroller_could_not(home, tmp_path):
    """The phone enrols the tablet before it holds the relay scope: the laptop's upkeep grants it."""
    relay.create_scope(home.laptop)
    tablet = Store(tmp_path / "tablet", DeviceKey.generate())
    try:
        devices.join(tablet, devices.enroll(home.phone, tablet.device, "tablet"))
        sync(home.phone, home.laptop)
        assert "tablet" not in readers(home.laptop)
        written = relay.upkeep(home.laptop)
        assert len(written) == 1 and relay.upkeep(home.laptop) == []
        sync(home.laptop, tablet)
        assert tablet.relay_keys().current == home.laptop.relay_keys().current is not None
        assert relay.upkeep(home.speaker) == []           # the speaker never held the scope: not a reader here
    finally:
        tablet.close()


def test_users_cannot_write_into_or_create_or_revoke_from_the_relay_scope(home):
    with pytest.raises(UsageError, match="reserved for the group's relay key"):
        home.laptop.scopes.create(RELAY_SCOPE)
    relay.create_scope(home.laptop)
    count = home.laptop.count()
    with pytest.raises(ScopeError, match="holds only the group's relay key"):
        home.laptop.memory.put("secret", scope=RELAY_SCOPE)
    with pytest.raises(ScopeError):
        home.laptop.prefs.set("theme", "dark", scope=RELAY_SCOPE)
    with pytest.raises(UsageError, match="revoke the device from the group"):
        home.laptop.scopes.revoke(RELAY_SCOPE, "phone")
    assert home.laptop.count() == count


def test_relay_keys_seal_what_the_others_open(home):
    relay.create_scope(home.laptop)
    home.meet()
    home.speaker.memory.put("from the speaker")
    event = list(home.speaker.events(home.speaker.device))[-1]
    sealed = envelope.seal(home.speaker.relay_keys(), home.speaker.group, event.record, event.payload)
    assert envelope.open(home.laptop.relay_keys(), home.laptop.group, sealed.subject, sealed.body)[0] == event.record


# -- join tokens --------------------------------------------------------------------------------------------------

def new_device(tmp_path, name: str) -> Store:
    store = Store(tmp_path / name, DeviceKey.generate())
    store.set_meta({"device": store.device, "name": name.encode()})
    return store


def through_the_relay(src: Store, dst: Store) -> int:
    """Every event `src` holds, sealed with its relay key and opened by `dst` with its own, ingested in order:
    what a relay carries between devices that never meet."""
    keys, group = src.relay_keys(), src.group
    sealed = [envelope.seal(keys, group, e.record, e.payload) for e in src.events_after({})]
    held = dst.relay_keys()
    return sum(dst.ingest([envelope.open(held, dst.group, s.subject, s.body)]).accepted for s in sealed)


def test_a_token_gives_the_joiner_the_relay_address_and_working_keys(home, tmp_path):
    relay.create_scope(home.laptop)
    home.laptop.peer_book.add_relay("nats://relay.example:4222", {"user": "alice", "password": "pw"})
    home.meet()
    home.laptop.memory.put("before the rotation")
    devices.revoke(home.laptop, "speaker")               # two epochs: the token carries both
    home.laptop.memory.put("after the rotation")
    tablet = new_device(tmp_path, "tablet")
    try:
        devices.join(tablet, devices.enroll(home.laptop, tablet.device, "tablet"))
        assert tablet.count() == 0
        keys, laptop_keys = tablet.relay_keys(), home.laptop.relay_keys()
        assert keys.current == laptop_keys.current and dict(keys) == dict(laptop_keys) and len(keys) == 2
        assert tablet.peer_book.relays() == {"nats://relay.example:4222": {}}     # address, never credentials
        assert through_the_relay(home.laptop, tablet) == home.laptop.count()
        assert tablet.relay_keys().current == laptop_keys.current                  # from the scope events now
        tablet.memory.put("the tablet's first")
        sync(home.laptop, home.phone)                     # the phone holds the new key and the tablet's enrolment
        assert through_the_relay(tablet, home.phone) == len(list(tablet.events(tablet.device)))
    finally:
        tablet.close()


def test_a_token_of_a_group_without_relay_carries_none(home, tmp_path):
    tablet = new_device(tmp_path, "tablet")
    try:
        token = devices.enroll(home.laptop, tablet.device, "tablet")
        devices.join(tablet, token)
        assert tablet.meta(relay.JOIN_META) is None and len(tablet.relay_keys()) == 0
        assert tablet.peer_book.relays() == {}
        sync(home.laptop, tablet)
        assert tablet.roster().members[tablet.device].active
    finally:
        tablet.close()


def test_a_relay_without_an_address_still_gives_keys(home, tmp_path):
    relay.create_scope(home.laptop)
    tablet = new_device(tmp_path, "tablet")
    try:
        devices.join(tablet, devices.enroll(home.laptop, tablet.device, "tablet"))
        assert tablet.relay_keys().current == home.laptop.relay_keys().current
        assert tablet.peer_book.relays() == {}
    finally:
        tablet.close()


def test_join_refuses_relay_keys_it_cannot_use():
    kid, box = bytes(32), bytes(80)
    with pytest.raises(TokenError, match="not among"):
        relay.pack_join(bytes([1]) * 32, [(kid, box)])
    with pytest.raises(TokenError, match="32-byte ids with 80-byte boxes"):
        relay.pack_join(kid, [(kid, box[:79])])
    assert relay.pack_join(kid, [(kid, box)]) == kid + kid + box


def test_serve_dials_devices_only_and_relays_are_kept_apart(home):
    book = home.laptop.peer_book
    book.add("hub.local:4711")
    assert book.add_relay("nats://relay:4222", {"user": "u", "password": "p"})
    assert not book.add_relay("nats://relay:4222", {})                     # replaced, not added twice
    assert book.addresses() == ["hub.local:4711"] and book.relays() == {"nats://relay:4222": {}}
    assert book.relay_states()["nats://relay:4222"].state == "never"
    with pytest.raises(InvalidValueError, match="relay state 'up'"):
        book.set_relay_state("nats://relay:4222", state="up")
    assert book.remove("nats://relay:4222") == "nats://relay:4222" and book.relays() == {}
    assert book.addresses() == ["hub.local:4711"]
