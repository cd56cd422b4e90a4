"""An established `agentlog serve` refuses a member's forged snapshot over 127.0.0.1, and the honest pair goes on
(docs/compaction.md, Bootstrap; docs/protocol.md section 8). The rogue is played by this process through the
real handshake (net.connect_channel) with its enrolled key; the same guard on real stores:
tests/store/test_snapshot_guard.py.
"""

from __future__ import annotations

import pytest
import trio

from agentlog.errors import PeerError
from agentlog.log import payloads, snapshot
from agentlog.store import home
from agentlog.sync import messages, net
from agentlog.sync.messages import Error, Hello, SnapshotOffer, SnapshotWant, Want
from tests.helpers.daemons import provision, wait_converged
from tests.helpers.daemons import snapshot as held_state
from tests.helpers.snapshots import forged, past

LISTEN = 10.0            # seconds the rogue waits for the daemon's next word (a hang, not a timing bound)


# -- over 127.0.0.1, against a real daemon ---------------------------------------------------------------

async def _rogue(port: int, key, group: bytes, group_key: bytes, hello: Hello, bundle: snapshot.Bundle) -> list:
    """The rogue's session: its hello; when the daemon asks for a snapshot (or asks for events), the forged
    one; then what the daemon says until it closes. Returns the messages heard."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    channel = await net.connect_channel(stream, key, group_key, lambda device: None)
    heard: list = []
    try:
        await channel.send(messages.encode(hello))
        while not heard or not isinstance(heard[-1], (Error, type(None))):
            heard.append(None)
            with trio.move_on_after(LISTEN):
                heard[-1] = messages.decode(await channel.receive())
            asks = sum(isinstance(m, (SnapshotWant, Want)) for m in heard)
            if isinstance(heard[-1], (SnapshotWant, Want)) and asks == 1:
                await channel.send(messages.encode(SnapshotOffer(
                    bundle.record, bundle.payload, tuple((n, len(bundle.states[n])) for n in snapshot.VIEWS))))
                for n in snapshot.VIEWS:
                    if bundle.states[n]:
                        await channel.send(messages.encode(messages.SnapshotChunk(n, 0, bundle.states[n])))
    except PeerError:
        heard.append("closed")
    finally:
        await trio.aclose_forcefully(stream)
    return heard


@pytest.fixture
def served(tmp_path, daemons):
    """The laptop's daemon listening, the phone's dialing it, both holding each other's events; the rogue's home."""
    homes = provision(tmp_path, "laptop", "phone", "rogue")
    laptop = daemons(homes["laptop"])
    daemons(homes["phone"], listen=False, peers=(laptop.address,))
    for name in ("laptop", "phone"):
        with home.open_home(homes[name]) as store:
            store.append_many([payloads.Observation(setting=f"s.{name}", value=f"{name}{i}") for i in range(3)])
    wait_converged(homes["laptop"], homes["phone"], count=9)
    return homes, laptop


def _attack(homes, laptop, cover: dict[str, int], hello: dict[str, dict[str, int]]) -> list:
    """The rogue signs a snapshot covering each named device that many seqs past the laptop's head, says
    `hello` (frontier and truncated: name -> seq), offers the snapshot when asked; what it heard."""
    names = {}
    for name in ("phone", "rogue"):
        with home.open_home(homes[name]) as store:
            names[name] = store.device
    with home.open_home(homes["laptop"]) as store:
        names["laptop"], roster = store.device, store.roster().to_bytes()
        with home.open_home(homes["rogue"]) as rogue:
            bundle = forged(rogue, {names[n]: past(store, names[n], k) for n, k in cover.items()}, roster)
            key, group, group_key = rogue.key, rogue.group, rogue.meta("group_key")
    frontier, truncated = ({names[n]: (0, s) for n, s in hello[part].items()} for part in ("frontier", "truncated"))
    return trio.run(_rogue, laptop.port, key, group, group_key,
                    Hello(messages.VERSION, group, names["rogue"], frontier, truncated), bundle)


def _refused(laptop, reason: str) -> None:
    """The laptop closed the rogue's connection for `reason` (the rogue may not have read the error: the
    laptop closes at once, while the rogue still sends)."""
    laptop.wait_log(lambda e: e.get("event") == "connection closed" and e.get("peer") == "rogue"
                    and e.get("reason", "").startswith(reason), f"the rogue's connection closed: {reason}")


def _honest_pair_goes_on(homes, before: dict) -> None:
    """The phone's and laptop's new events still cross both ways."""
    for name in ("laptop", "phone"):
        with home.open_home(homes[name]) as store:
            store.append(payloads.Observation(setting="s.after", value=name))
    wait_converged(homes["laptop"], homes["phone"], count=before["count"] + 2)


@pytest.mark.parametrize("hello, refusal", [
    ({"frontier": {"rogue": 1}, "truncated": {"rogue": 1}}, "snapshot: snapshot refused: the snapshot covers"),
    ({"frontier": {}, "truncated": {"rogue": 1}}, "protocol: truncation point of"),
], ids=["claims-its-own-log-truncated", "claims-a-cut-past-its-frontier"])
def test_an_established_device_refuses_a_members_forged_snapshot(served, hello, refusal):
    homes, laptop = served
    before = held_state(homes["laptop"])
    _attack(homes, laptop, {"phone": 3, "rogue": 1}, hello)
    assert held_state(homes["laptop"]) == before
    _refused(laptop, refusal)
    _honest_pair_goes_on(homes, before)
    assert laptop.running()


def test_a_peer_claiming_this_devices_own_events_gets_no_snapshot_asked_for(served):
    homes, laptop = served
    before = held_state(homes["laptop"])
    heard = _attack(homes, laptop, {"laptop": 5}, {"frontier": {"rogue": 1, "laptop": 50}, "truncated": {"laptop": 50}})
    assert held_state(homes["laptop"]) == before
    assert not any(isinstance(m, SnapshotWant) for m in heard), heard
    _refused(laptop, "protocol: a snapshot offer that was not asked for")
    _honest_pair_goes_on(homes, before)
