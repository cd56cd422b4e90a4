"""Every numeric header and payload field has a range, and every text and list its length limit, enforced
on ingest exactly as on local writes (docs/format.md section 3): a signed event at or past an edge is
refused whole, and a value an older store accepted never crashes a reader (issue 14, items 2, 3, 12)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from agentlog import crypto
from agentlog.errors import AgentlogError, DecodeError, NotEnrolledError, ProtocolError, SequenceError
from agentlog.log import payloads, validate
from agentlog.log.event import MAX_LAMPORT, MAX_TIME_MS, Event, seal
from agentlog.store.peers import Peers, PeerState
from agentlog.store.store import Store
from agentlog.sync import messages
from tests.helpers.daemons import agentlog, status
from tests.helpers.events import phone_events, resign, store_digest


def refused(store, rogue: Event, error: type, match: str) -> None:
    """`store` refuses the event with `error` and is left exactly as it was."""
    before = store_digest(store)
    with pytest.raises(error, match=match):
        store.ingest([(rogue.record, rogue.payload)])
    assert store_digest(store) == before


def with_payload(e: Event, key: crypto.DeviceKey, kind: str, raw: bytes, **header_changes) -> Event:
    """The event carrying other payload bytes (encoded without the writer's checks), re-signed by `key`."""
    h = dataclasses.replace(e.header, kind=kind, payload_hash=crypto.blake2b256(raw), payload_len=len(raw),
                            **header_changes)
    return seal(h, key, raw)


# -- item 2: one signed event bricked a group -------------------------------------------------------------------

def test_a_lamport_of_2_64_minus_1_is_refused_and_every_device_writes_on(laptop, phone):
    honest = phone_events(phone, 1)[0]
    refused(laptop, resign(honest, phone.key, lamport=2**64 - 1), DecodeError, "lamport .* over the limit")
    assert laptop.ingest([(honest.record, honest.payload)]).accepted == 1
    laptop.append(payloads.Observation(setting="s", value="v"))
    phone.ingest([(e.record, e.payload) for e in laptop.events_after(phone.frontier())])
    phone.append(payloads.Observation(setting="s", value="w"))


@pytest.mark.parametrize("lamport, match", [(MAX_LAMPORT, "more than 65536 above the highest lamport it follows"),
                                            (None, "not above the author's previous lamport")])
def test_a_lamport_in_range_but_not_earned_by_what_the_event_follows_is_refused(laptop, phone, lamport, match):
    first, second = phone_events(phone, 2)
    assert laptop.ingest([(first.record, first.payload)]).accepted == 1
    lamport = first.header.lamport if lamport is None else lamport
    refused(laptop, resign(second, phone.key, lamport=lamport), SequenceError, match)


def test_a_store_at_the_lamport_limit_refuses_to_write_with_an_error_not_a_traceback(laptop):
    with laptop.raw_txn(write=True) as txn:
        txn.put(b"lamport", MAX_LAMPORT.to_bytes(8, "big"), db=laptop.db("meta"))
    with pytest.raises(AgentlogError, match="lamport .* over the limit"):
        laptop.append(payloads.Observation(setting="s", value="v"))


# -- item 3: extreme times killed the daemon or crashed readers ----------------------------------------------------

@pytest.mark.parametrize("clock_ms", [-1, MAX_TIME_MS + 1])
def test_a_device_whose_clock_is_outside_the_range_cannot_write(tmp_path, clock_ms):
    store = Store(tmp_path / "s", crypto.DeviceKey.generate(), clock=lambda: clock_ms)
    try:
        with pytest.raises(AgentlogError, match="time .* outside"):
            store.create_group("s")
    finally:
        store.close()


@pytest.mark.parametrize("time_ms", [-(2**63), -1, MAX_TIME_MS + 1, 2**63 - 1])
def test_an_event_timed_outside_years_1970_to_9999_is_refused_whole(laptop, phone, time_ms):
    honest = phone_events(phone, 1)[0]
    refused(laptop, resign(honest, phone.key, time_ms=time_ms), DecodeError, "time .* outside")
    assert laptop.ingest([(honest.record, honest.payload)]).accepted == 1


def put_event(phone, **header_changes) -> Event:
    """A memory.put by the phone, with header fields changed and re-signed."""
    eid = phone.append(payloads.MemoryPut(entry=b"e" * 16, type="fact", content="edge"))
    return resign(phone.get(eid), phone.key, **header_changes)


@pytest.mark.parametrize("time_ms, old_store", [(MAX_TIME_MS, False), (0, False), (2**63 - 1, True), (-1, True)],
                         ids=["year-9999", "1970", "older-store-2^63-1", "older-store--1"])
def test_readers_show_a_stored_time_at_or_past_the_edge(laptop, phone, monkeypatch, time_ms, old_store):
    """Times at the range's edges (and, in a store from before the range checks, past them) are shown."""
    if old_store:
        monkeypatch.setattr(validate, "check_ranges", lambda header: None, raising=False)
    obs = phone_events(phone, 1)[0]
    events = [resign(obs, phone.key, time_ms=time_ms)]
    events.append(resign(put_event(phone), phone.key, time_ms=time_ms, prev=events[0].id))
    assert laptop.ingest([(e.record, e.payload) for e in events]).accepted == 2
    monkeypatch.undo()
    home = laptop.path.parent
    laptop.close()
    shown = f"{time_ms}ms" if old_store else "9999-12-31T23:59:59.999Z" if time_ms else "1970-01-01T00:00:00.000Z"
    assert shown in agentlog(home, "log").stdout
    assert shown in agentlog(home, "memory", "get", (b"e" * 16).hex()).stdout
    if time_ms > 0:         # evidence of 1970 (or before) has decayed to nothing: no answer to explain
        explained = agentlog(home, "pref", "get", "theme", "--explain").stdout     # the fold clamps a time
        assert "9999-12-31T23:59:59.999Z" in explained
    for args in (("status",), ("audit", "export", "--out", str(home.parent / "export.jsonl")), ("verify",)):
        agentlog(home, *args)


# -- item 12: limits held on local writes only; a rogue frontier showed nonsense lags --------------------------------

def _raw(payload) -> bytes:
    return payloads._LAYOUTS[type(payload)].encode(payload)


OVER_THE_LIMITS = [
    ("memory.put", payloads.MemoryPut(entry=b"e" * 16, type="fact", content="x" * 16385), "content is 16385 bytes"),
    ("memory.put", payloads.MemoryPut(entry=b"e" * 16, type="fact", content="x", tags=tuple(map(str, range(33)))),
     "tags has 33 items"),
    ("memory.put", payloads.MemoryPut(entry=b"e" * 16, type="fact", content="x", tags=("t" * 65,)),
     "tags holds an item of 65 characters"),
    ("memory.update", payloads.MemoryUpdate(entry=b"e" * 16, tags_add=("a",) * 40), "tags_add has 40 items"),
    ("observation", payloads.Observation(setting="s" * 129, value="v"), "setting is 129 characters"),
    ("observation", payloads.Observation(setting="s", value="v" * 1025), "value is 1025 characters"),
    ("observation", payloads.Observation(setting="s", value="v", context=tuple((f"k{i}", "v") for i in range(5))),
     "context has 5 items"),
    ("decision", payloads.Decision(setting="s", value="v", reason="r" * 1025), "reason is 1025 characters"),
    ("pref.config", payloads.PrefConfig(setting="s", half_life_ms=2**64 - 1), "half_life_ms .* out of range"),
    ("snapshot", payloads.Snapshot(cuts=(payloads.SettingCut(setting="s", before=2**63),)), "before .* out of range"),
]


@pytest.mark.parametrize("kind, payload, match", OVER_THE_LIMITS, ids=[m.split(" ")[0] for _, _, m in OVER_THE_LIMITS])
def test_payload_limits_of_local_writes_hold_on_ingest(laptop, phone, kind, payload, match):
    with pytest.raises(AgentlogError, match=match):
        phone.append(payload)
    honest = phone_events(phone, 1)[0]
    refused(laptop, with_payload(honest, phone.key, kind, _raw(payload)), DecodeError, match)


def test_a_device_revoking_itself_is_refused_whole(laptop, phone):
    """Its revocation would lie past the cut it names, which peers never send: a peer that stored it would write
    events following it, which another peer could never take (found by the rogue peer property test)."""
    honest = phone_events(phone, 1)[0]
    own = payloads.DeviceRevoke(device=phone.device, until_seq=0)
    refused(laptop, with_payload(honest, phone.key, "device.revoke", _raw(own)), NotEnrolledError,
            "cannot revoke itself")
    assert laptop.ingest([(honest.record, honest.payload)]).accepted == 1


ROGUE = b"\x42" * 32


@pytest.mark.parametrize("message", [
    messages.Hello(messages.VERSION, b"g" * 32, b"d" * 32, {ROGUE: (0, 2**64 - 1)}),
    messages.FrontierMsg({ROGUE: (2**32 - 1, 5)}),
    messages.Ack(1, {ROGUE: (0, 27670116110564327413 % 2**64)}),
    messages.Want(((ROGUE, 0, 1, 2**64 - 1),)),
    messages.Events(2**64 - 1, ()),
    messages.Heartbeat(b"short"),
], ids=["hello", "frontier-epoch", "ack", "want", "batch", "heartbeat"])
def test_a_frontier_or_count_past_what_an_event_may_hold_is_a_protocol_error(message):
    with pytest.raises(ProtocolError):
        messages.decode(messages.encode(message))


def test_status_shows_no_lag_from_a_rogue_or_unknown_authors_claim(laptop, phone):
    claims = {ROGUE.hex(): 27670116110564327413, laptop.device.hex(): 2**63, phone.device.hex(): 5}
    Peers(laptop).save({phone.device: PeerState(name="phone", address="127.0.0.1:1", state="partitioned",
                                                last_seen_ms=1, frontier=claims)})
    ours = laptop.frontier()[laptop.device]
    home = laptop.path.parent
    laptop.close()
    peer = status(home)["peers"][0]
    assert (peer["we_lack"], peer["they_lack"]) == (5, ours)
    assert "27670116110564327413" not in agentlog(home, "status").stdout
    json.dumps(peer)


@pytest.mark.parametrize("changes, match", [({"seq": 2**53}, "seq is over the limit"),
                                            ({"lamport": 2**53}, "lamport .* over the limit"),
                                            ({"time_ms": MAX_TIME_MS + 1}, "time .* outside"),
                                            ({"time_ms": -1}, "time .* outside"),
                                            ({"epoch": 2**31}, "epoch .* over the limit")],
                         ids=["seq", "lamport", "time-high", "time-low", "epoch"])
def test_predecode_finds_a_range_broken_in_a_header_like_the_ones_before(phone, changes, match):
    """predecode checks the ranges inline and leaves the rest to check_ranges: a header decoded from the known
    layout of the one before it, with one number past its edge, fails there as check_ranges says."""
    honest = phone_events(phone, 2)[1]
    assert validate.predecode(honest.record, honest.payload).failed is None      # its layout is now known
    rogue = resign(honest, phone.key, **changes)
    pre = validate.predecode(rogue.record, rogue.payload)
    assert isinstance(pre.failed, DecodeError) and pre.event is None, pre.failed
    assert re.search(match, pre.failed.args[0]), pre.failed.args[0]
