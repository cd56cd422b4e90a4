"""A device that holds history never lets a snapshot move it past positions it cannot account for
(docs/compaction.md, Bootstrap; docs/protocol.md section 8).

An enrolled member gone rogue signs snapshots of its own: against `compaction.bootstrap` on real stores,
and over 127.0.0.1 against a real `agentlog serve` (tests/daemons.py), the rogue played by this process
through the real handshake (net.connect_channel) with its enrolled key.
"""

from __future__ import annotations

import pytest
import trio

from agentlog import crypto
from agentlog.errors import PeerError, SnapshotError
from agentlog.log import payloads, snapshot
from agentlog.store import compaction, home
from agentlog.store.store import Store
from agentlog.sync import messages, net
from agentlog.sync.messages import Error, Hello, SnapshotOffer, SnapshotWant, Want
from tests.daemons import provision, wait_converged
from tests.daemons import snapshot as held_state
from tests.test_daemon import daemons  # noqa: F401 (the fixture)
from tests.test_pref_scenarios import Family

LISTEN = 10.0            # seconds the rogue waits for the daemon's next word (a hang, not a timing bound)


def forged(signer: Store, cover: dict[bytes, tuple[int, int, bytes]], roster: bytes) -> snapshot.Bundle:
    """A snapshot `signer` signs as the next event of its own chain: covering author -> (epoch, seq, id),
    carrying the roster state given and wiped preference and memory views."""
    states = {"roster": roster, "pref": b"\xff" * len(snapshot.VIEW_DBS["pref"]),
              "memory": b"\xff" * len(snapshot.VIEW_DBS["memory"])}
    points = tuple(payloads.LogPoint(author=a, epoch=e, seq=s, id=eid, lamport=1, time=0)
                   for a, (e, s, eid) in sorted(cover.items()))
    snap = payloads.Snapshot(frontier=points, views=tuple(
        payloads.ViewState(name=n, version=0, digest=crypto.blake2b256(states[n]), state=b"") for n in snapshot.VIEWS))
    event = signer.get(signer.append(snap))
    return snapshot.Bundle(event.record, event.payload, states)


def past(store: Store, author: bytes, ahead: int) -> tuple[int, int, bytes]:
    """A position `ahead` seqs past `author`'s head on `store` (0 if it holds nothing of it), with a made-up id."""
    h = store.heads().get(author)
    epoch, seq = (h.epoch, h.seq) if h else (0, 0)
    return epoch, seq + ahead, crypto.blake2b256(b"made up")


def state(store: Store) -> dict:
    """Everything a refused snapshot must leave as it was."""
    return {"heads": store.heads(), "truncated": store.truncated(), "base": store.meta("base"),
            "views": {n: v["digest"] for n, v in store.views().items()}, "count": store.count()}


# -- compaction.bootstrap on real stores ---------------------------------------------------------------

@pytest.fixture
def family(tmp_path):
    """Laptop, phone and hub, each holding what the others wrote."""
    f = Family(tmp_path)
    f.hub()                               # the member gone rogue in these tests
    for i in range(5):
        f.laptop.prefs.observe("ui.theme", f"v{i}")
        f.phone.prefs.observe("ui.font", f"f{i}")
    f.meet()
    yield f
    f.close()


def test_a_snapshot_never_moves_this_devices_own_chain(family):
    f = family
    mine = past(f.laptop, f.laptop.device, 3)
    bundle = forged(f.phone, {f.laptop.device: mine}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match="own log to seq .* past its head"):
        compaction.bootstrap(f.laptop, bundle, {f.laptop.device: mine[:2]})     # even if the peer says it dropped them
    assert state(f.laptop) == before


def test_a_snapshot_past_a_head_the_peer_did_not_truncate_is_refused(family):
    f = family
    bundle = forged(f._hub, {f.phone.device: past(f.laptop, f.phone.device, 3)}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match="has not dropped the events in between"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


def test_a_snapshot_naming_another_event_at_a_held_position_is_refused(family):
    f = family
    h = f.laptop.heads()[f.phone.device]
    bundle = forged(f._hub, {f.phone.device: (h.epoch, h.seq - 1, crypto.blake2b256(b"other"))},
                    f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"another event of {f.phone.device.hex()[:16]} at seq {h.seq - 1}"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


def test_a_snapshot_older_than_what_this_device_compacted_is_refused(family):
    f = family
    for store in (f.laptop, f.phone, f._hub):
        store.prefs.observe("ui.lang", "en")           # each acknowledges what the others wrote before
    f.meet()
    compaction.compact(f.laptop, now_ms=f.now)
    author, cut = sorted(f.laptop.truncated().items())[0]
    bundle = forged(f._hub, {}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"covers {author.hex()[:16]} to seq 0, below seq {cut.seq}, which this"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


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
def served(tmp_path, daemons):  # noqa: F811
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


def test_a_snapshot_short_of_the_peers_truncation_points_is_refused_before_anything_changes(family):
    f = family
    rogue = f._hub.device
    bundle = forged(f._hub, {}, f.laptop.roster().to_bytes())        # its views wiped, covering nothing
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"does not reach the peer's truncation point of {rogue.hex()[:16]}"):
        compaction.bootstrap(f.laptop, bundle, {rogue: (0, 50)})
    assert state(f.laptop) == before
