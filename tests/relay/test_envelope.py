"""The relay envelope on real events of a real store, sealed with the group's real relay key: round trips, every
refusal naming why, and what the relay sees holds no group id, device key or payload byte."""

from __future__ import annotations

import pytest

from agentlog import crypto
from agentlog.errors import RelayMessageError
from agentlog.relay import envelope
from agentlog.store import relay
from tests.helpers.scoped import Home

CANARY = "CANARY-relay-5e1f0a-passport-number"


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    relay.create_scope(h.laptop)
    h.meet()
    yield h
    for s in (h.laptop, h.phone, h.speaker):
        s.close()


def own_event(store, text: str = CANARY):
    """The memory.put event `store` writes holding `text`, with its payload."""
    store.memory.put(text)
    return list(store.events(store.device))[-1]


def test_names_are_keyed_hex_of_fixed_shape(home):
    group, laptop = home.laptop.group, home.laptop.device
    tag = envelope.tag(group)
    assert len(tag) == 32 and int(tag, 16) >= 0
    assert envelope.subject(group, laptop) == f"agentlog.{tag}.{envelope.pseudonym(group, laptop)}"
    assert envelope.snapshot_subject(group) == f"agentlog.{tag}.snapshot"
    assert envelope.stream_name(group) == f"AGENTLOG_{tag}"
    assert envelope.stream_subjects(group) == f"agentlog.{tag}.>"
    assert envelope.pseudonym(group, laptop) != envelope.pseudonym(group, home.phone.device)
    assert envelope.pseudonym(group, laptop) != envelope.pseudonym(bytes(32), laptop)   # unlinkable across groups
    assert envelope.tag(group) != envelope.tag(bytes(32))
    assert len(envelope.msg_id(group, bytes(32))) == 64


def test_round_trip_with_and_without_payload(home):
    keys = home.laptop.relay_keys()
    event = own_event(home.laptop)
    group = home.laptop.group
    sealed = envelope.seal(keys, group, event.record, event.payload)
    assert sealed.subject == envelope.subject(group, home.laptop.device)
    assert sealed.msg_id == envelope.msg_id(group, event.id)
    assert sealed.body[:32] == keys.current
    # the phone opens it with its own copy of the relay key, and ingests what it holds
    record, payload = envelope.open(home.phone.relay_keys(), group, sealed.subject, sealed.body)
    assert (record, payload) == (event.record, event.payload)
    assert home.phone.ingest([(record, payload)]).accepted == 1
    bare = envelope.seal(keys, group, event.record, None)
    assert envelope.open(keys, group, bare.subject, bare.body) == (event.record, None)
    empty = envelope.seal(keys, group, event.record, b"")
    assert envelope.open(keys, group, empty.subject, empty.body) == (event.record, b"")
    snap = envelope.seal(keys, group, event.record, event.payload, snapshot=True)
    assert snap.subject == envelope.snapshot_subject(group)
    assert envelope.open(keys, group, snap.subject, snap.body) == (event.record, event.payload)


def test_msg_id_is_stable_across_sealings_and_key_rotation(home):
    event = own_event(home.laptop)
    group = home.laptop.group
    first = envelope.seal(home.laptop.relay_keys(), group, event.record, event.payload)
    again = envelope.seal(home.laptop.relay_keys(), group, event.record, event.payload)
    assert first.body != again.body and first.msg_id == again.msg_id       # fresh nonce, same dedup id
    from agentlog.store import devices
    devices.revoke(home.laptop, "speaker")
    rotated = home.laptop.relay_keys()
    later = envelope.seal(rotated, group, event.record, event.payload)
    assert later.body[:32] != first.body[:32] and later.msg_id == first.msg_id
    assert envelope.open(rotated, group, first.subject, first.body)[0] == event.record     # old key still held


def reason(keys, group, subject, body, opener=envelope.open) -> RelayMessageError:
    with pytest.raises(RelayMessageError) as caught:
        opener(keys, group, subject, body)
    return caught.value


def test_tampered_wrong_key_wrong_subject_wrong_group_each_refused_naming_why(home):
    keys, group = home.laptop.relay_keys(), home.laptop.group
    event = own_event(home.laptop)
    sealed = envelope.seal(keys, group, event.record, event.payload)
    for at in (40, 60, len(sealed.body) - 1):              # nonce, ciphertext, tag
        body = bytearray(sealed.body)
        body[at] ^= 1
        err = reason(keys, group, sealed.subject, bytes(body))
        assert err.code == "open" and "does not open" in str(err) and sealed.subject in str(err)
    other_key = {keys.current: crypto.content_key()}
    assert reason(other_key, group, sealed.subject, sealed.body).code == "open"
    unknown = reason({}, group, sealed.subject, sealed.body)
    assert unknown.code == "key" and keys.current.hex()[:16] in str(unknown) and "does not hold" in str(unknown)
    moved = envelope.subject(group, home.phone.device)
    err = reason(keys, group, moved, sealed.body)
    assert err.code == "open" and "moved from another subject" in str(err)
    err = reason(keys, group, envelope.snapshot_subject(group), sealed.body)
    assert err.code == "open"
    err = reason(keys, bytes(32), sealed.subject, sealed.body)
    assert err.code == "subject" and "not a subject of this group" in str(err)
    assert reason(keys, group, sealed.subject + ".x", sealed.body).code == "subject"
    assert reason(keys, group, "agentlog", sealed.body).code == "subject"
    assert reason(keys, group, sealed.subject, sealed.body[:60]).code == "short"


def test_sealed_by_a_group_member_yet_wrong_inside_is_refused(home):
    """A holder of the relay key can seal anything; open still refuses what is not one event of this group on
    its author's subject."""
    keys, group = home.laptop.relay_keys(), home.laptop.group
    event = own_event(home.laptop)
    kid, key = keys.current, keys[keys.current]
    phone_subject = envelope.subject(group, home.phone.device)

    def body_of(frame: bytes, subject: str) -> bytes:
        return kid + crypto.aead_encrypt(key, frame, envelope.AD_PREFIX + subject.encode())

    record = event.record
    framed = len(record).to_bytes(4, "big") + record + b"\1" + event.payload
    err = reason(keys, group, phone_subject, body_of(framed, phone_subject))
    assert err.code == "record" and "does not name" in str(err)
    n = len(record).to_bytes(4, "big")
    for frame in (b"\0\0", (len(record) + 9).to_bytes(4, "big") + record + b"\1", n + record + b"\0extra",
                  n + record + b"\7"):
        assert reason(keys, group, phone_subject, body_of(frame, phone_subject)).code == "frame"
    junk = (5).to_bytes(4, "big") + b"hello" + b"\0"
    err = reason(keys, group, phone_subject, body_of(junk, phone_subject))
    assert err.code == "record" and "no valid event record" in str(err)


def test_what_the_relay_sees_holds_no_group_id_device_key_or_payload(home):
    keys, group = home.laptop.relay_keys(), home.laptop.group
    needles = {"group": group, "laptop": home.laptop.device, "phone": home.phone.device,
               "speaker": home.speaker.device, "payload": CANARY.encode()}
    own_event(home.laptop)
    home.laptop.memory.put(CANARY + " again")
    seen = bytearray()
    for event in home.laptop.events():
        for snapshot in (False, True):
            s = envelope.seal(keys, group, event.record, event.payload, snapshot=snapshot)
            seen += s.subject.encode() + s.msg_id.encode() + s.body + b"\n"
    assert len(seen) > 2000
    for name, raw in needles.items():
        for form in (raw, raw.hex().encode(), raw.hex().upper().encode()):
            assert form not in seen, f"{name} appears in what the relay sees"
    assert CANARY.encode() in b"".join(e.payload or b"" for e in home.laptop.events())   # the needle was there


def test_a_device_without_a_relay_key_cannot_seal(tmp_path):
    h = Home(tmp_path)
    try:
        event = own_event(h.laptop)
        keys = h.laptop.relay_keys()
        assert keys.current is None and len(keys) == 0
        with pytest.raises(RelayMessageError) as caught:
            envelope.seal(keys, h.laptop.group, event.record, event.payload)
        assert caught.value.code == "key" and "holds no relay key" in str(caught.value)
    finally:
        for s in (h.laptop, h.phone, h.speaker):
            s.close()


def test_a_run_round_trips_and_a_run_of_one_is_a_single_event(home):
    keys, group, laptop = home.laptop.relay_keys(), home.laptop.group, home.laptop.device
    for i in range(4):
        own_event(home.laptop, f"{CANARY}-{i}")
    events = list(home.laptop.events(laptop))[-4:]
    items = [(e.record, e.payload) for e in events[:3]] + [(events[3].record, None)]
    sealed = envelope.seal_run(keys, group, laptop, [e.id for e in events], items, keys.current)
    assert sealed.subject == envelope.subject(group, laptop) and sealed.body[:32] == keys.current
    assert sealed.msg_id == envelope.run_id(group, events[0].id, events[-1].id) != envelope.msg_id(group, events[0].id)
    opened = envelope.open_events(home.phone.relay_keys(), group, sealed.subject, sealed.body)
    assert [(r, p) for r, p, _ in opened] == items
    assert [e.header.seq for _, _, e in opened] == [e.header.seq for e in events]
    assert reason(keys, group, sealed.subject, sealed.body).code == "frame"      # `open` takes one event
    single = envelope.seal_run(keys, group, laptop, [events[0].id], items[:1], keys.current)
    assert single.msg_id == envelope.msg_id(group, events[0].id)
    assert envelope.open(keys, group, single.subject, single.body) == items[0]


def test_a_run_with_anything_wrong_inside_is_refused_whole(home):
    keys, group = home.laptop.relay_keys(), home.laptop.group
    for i in range(2):
        own_event(home.laptop, f"{CANARY}-{i}")
    a, b = list(home.laptop.events(home.laptop.device))[-2:]
    kid, key = keys.current, keys[keys.current]
    subject = envelope.subject(group, home.laptop.device)

    def body_of(frame: bytes, where: str = subject) -> bytes:
        return kid + crypto.aead_encrypt(key, frame, envelope.AD_PREFIX + where.encode())

    def entry(record: bytes, payload: bytes | None) -> bytes:
        tail = b"\0" if payload is None else b"\1" + len(payload).to_bytes(4, "big") + payload
        return len(record).to_bytes(4, "big") + record + tail

    def run(*entries: bytes, count: int | None = None) -> bytes:
        return bytes(4) + (len(entries) if count is None else count).to_bytes(4, "big") + b"".join(entries)

    good = run(entry(a.record, a.payload), entry(b.record, b.payload))
    assert len(envelope.open_events(keys, group, subject, body_of(good))) == 2
    for frame in (run(count=0), run(entry(a.record, a.payload), count=2), good + b"x", good[:-1],
                  run(entry(a.record, None)[:-1] + b"\7"), run(entry(b"", None))):
        assert reason(keys, group, subject, body_of(frame), envelope.open_events).code == "frame"
    phone = own_event(home.phone)
    err = reason(keys, group, subject, body_of(run(entry(a.record, a.payload), entry(phone.record, phone.payload))),
                 envelope.open_events)
    assert err.code == "record" and "does not name" in str(err)
    junk = run(entry(a.record, a.payload), entry(b"hello", None))
    assert reason(keys, group, subject, body_of(junk), envelope.open_events).code == "record"
    snapshot = envelope.snapshot_subject(group)
    assert reason(keys, group, snapshot, body_of(good, snapshot), envelope.open_events).code == "frame"   # one event
