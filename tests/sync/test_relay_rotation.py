"""Relay key rotation through the relay alone (real nats-server): after the laptop revokes a device, the phone,
which meets the group only through the relay, learns the new relay key and opens what the laptop writes after;
the revoked device cannot."""

from __future__ import annotations

import pytest

from agentlog.errors import RelayMessageError
from agentlog.log import payloads
from agentlog.relay import envelope
from agentlog.store import devices
from agentlog.sync.relay_peer import sync_once
from tests.helpers.relay import config, relay_group

WAIT_S = 10.0


@pytest.fixture
def trio_stores(tmp_path, nats_server):
    stores = relay_group(tmp_path, nats_server.url, "laptop", "phone", "speaker")
    yield stores
    for s in stores:
        s.close()


async def test_a_device_on_the_relay_alone_learns_the_rotated_key_and_the_revoked_one_cannot_open(trio_stores):
    laptop, phone, speaker = trio_stores
    laptop.append_many([payloads.Observation(setting="test.before", value=f"b{i}") for i in range(5)])
    for store in (laptop, phone, speaker):
        await sync_once(store, config(store), timeout=WAIT_S)
    assert phone.frontier() == speaker.frontier() == laptop.frontier()
    old = laptop.relay_keys().current

    devices.revoke(laptop, "speaker")
    new = laptop.relay_keys().current
    assert new != old and new not in speaker.relay_keys()
    laptop.append_many([payloads.Observation(setting="test.after", value=f"a{i}") for i in range(7)])
    after = list(laptop.events(laptop.device))[-7:]
    await sync_once(laptop, config(laptop), timeout=WAIT_S)

    got = await sync_once(phone, config(phone), timeout=WAIT_S)
    assert phone.frontier() == laptop.frontier() and got.received == 9      # revoke, scope.key, 7 writes
    assert phone.relay_keys().current == new
    assert [phone.get(e.id).payload for e in after] == [e.payload for e in after]

    await sync_once(speaker, config(speaker), timeout=WAIT_S)
    assert speaker.frontier()[laptop.device] < laptop.frontier()[laptop.device]
    assert all(speaker.get(e.id) is None for e in after)
    for e in after:
        sealed = envelope.seal(laptop.relay_keys(), laptop.group, e.record, e.payload)
        with pytest.raises(RelayMessageError):
            envelope.open(speaker.relay_keys(), laptop.group, sealed.subject, sealed.body)
