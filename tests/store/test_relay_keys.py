"""The relay key on real stores: scope `relay` created with every enrolled device, the same key on each, rotated
past a revoked device, granted to devices that lack it, and closed to user writes."""

from __future__ import annotations

import pytest

from agentlog.crypto import DeviceKey
from agentlog.errors import ScopeError, UsageError
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
