"""Ingest validation: one named error per check, in docs/format.md's order; a bad
batch is rejected whole and leaves the store byte-for-byte as it was."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from agentlog import crypto
from agentlog.errors import (
    ChainError,
    DecodeError,
    GroupMismatchError,
    NotEnrolledError,
    PayloadHashError,
    SequenceError,
    SignatureError,
    SizeLimitError,
)
from agentlog.log import payloads
from agentlog.log.event import encode_header, event_id
from agentlog.store import home
from agentlog.store.verify import verify_store
from tests.helpers.events import phone_events, resign, store_digest
from tests.helpers.sync import sync


def test_honest_events_are_accepted_then_duplicates_ignored(laptop, phone):
    events = phone_events(phone)
    result = laptop.ingest([(e.record, e.payload) for e in events])
    assert (result.accepted, result.duplicates) == (3, 0)
    assert sync(phone, laptop).accepted == 0
    again = laptop.ingest([(e.record, e.payload) for e in phone.events()])
    assert again.accepted == 0 and again.duplicates == phone.count()
    assert verify_store(laptop).ok


def test_size_limits(laptop, phone):
    [event] = phone_events(phone, 1)
    with pytest.raises(SizeLimitError):
        laptop.ingest([(b"\x00" * 20_000, event.payload)])
    with pytest.raises(SizeLimitError):
        laptop.ingest([(event.record, b"\x00" * (2 * 1024 * 1024))])


def test_decode(laptop):
    with pytest.raises(DecodeError):
        laptop.ingest([(b"\x00" * 64 + b"\x01" * 64, b"")])


def test_group(laptop, phone, tmp_path):
    other = home.create(tmp_path / "stranger", "stranger")
    other.create_group("stranger")
    [event] = [e for e in other.events()]
    with pytest.raises(GroupMismatchError):
        laptop.ingest([(event.record, event.payload)])


def test_enrolment_of_unknown_device(laptop, phone):
    [event] = phone_events(phone, 1)
    intruder = crypto.DeviceKey.generate()
    forged = resign(event, intruder, author=intruder.public)
    with pytest.raises(NotEnrolledError, match="not enrolled"):
        laptop.ingest([(forged.record, forged.payload)])


def test_enrolment_first_event_must_follow_enrolment(laptop, phone):
    [event] = phone_events(phone, 1)
    backdated = resign(event, phone.key, clock=())
    with pytest.raises(NotEnrolledError, match="enrolment"):
        laptop.ingest([(backdated.record, backdated.payload)])


def test_enrolment_after_revocation(laptop, phone):
    events = phone_events(phone, 3)
    laptop.ingest([(e.record, e.payload) for e in events[:1]])
    from agentlog.store import devices
    devices.revoke(laptop, "phone")
    with pytest.raises(NotEnrolledError, match="revoked after seq 1"):
        laptop.ingest([(e.record, e.payload) for e in events[1:]])


def test_seq_gap(laptop, phone):
    events = phone_events(phone, 3)
    with pytest.raises(SequenceError, match="gap"):
        laptop.ingest([(events[0].record, events[0].payload), (events[2].record, events[2].payload)])


def test_prev_link(laptop, phone):
    events = phone_events(phone, 2)
    laptop.ingest([(events[0].record, events[0].payload)])
    broken = resign(events[1], phone.key, prev=b"\x01" * 32)
    with pytest.raises(ChainError):
        laptop.ingest([(broken.record, broken.payload)])


def test_signature(laptop, phone):
    [event] = phone_events(phone, 1)
    bad = event.header_bytes + bytes(64)
    with pytest.raises(SignatureError):
        laptop.ingest([(bad, event.payload)])
    other_key_sig = crypto.DeviceKey.generate().sign(event.id)
    with pytest.raises(SignatureError):
        laptop.ingest([(event.header_bytes + other_key_sig, event.payload)])


def test_payload_hash(laptop, phone):
    [event] = phone_events(phone, 1)
    with pytest.raises(PayloadHashError):
        laptop.ingest([(event.record, event.payload[:-1] + b"\x01")])


def test_payload_may_be_withheld_except_for_roster_events(laptop, phone):
    [event] = phone_events(phone, 1)
    assert laptop.ingest([(event.record, None)]).accepted == 1
    enroll = payloads.DeviceEnroll(device=crypto.DeviceKey.generate().public, name="tablet")
    eid = phone.append(enroll)
    with pytest.raises(PayloadHashError, match="without its payload"):
        laptop.ingest([(phone.get(eid).record, None)])


def test_checks_run_in_order(laptop, phone, tmp_path):
    """An event wrong in several ways is reported by the earliest check."""
    events = phone_events(phone, 2)
    wrong_group = resign(events[1], phone.key, group=b"\x09" * 32)
    with pytest.raises(GroupMismatchError):
        laptop.ingest([(wrong_group.header_bytes + bytes(64), b"junk")])
    gap_and_bad_sig = events[1].header_bytes + bytes(64)
    with pytest.raises(SequenceError):
        laptop.ingest([(gap_and_bad_sig, b"junk")])
    bad_sig_and_payload = events[0].header_bytes + bytes(64)
    with pytest.raises(SignatureError):
        laptop.ingest([(bad_sig_and_payload, b"junk")])


def test_bad_batch_is_rejected_whole(laptop, phone):
    events = phone_events(phone, 4)
    before = store_digest(laptop)
    batch = [(e.record, e.payload) for e in events]
    batch[3] = (events[3].record, b"tampered")
    with pytest.raises(PayloadHashError) as info:
        laptop.ingest(batch)
    assert info.value.seq == 4 and info.value.author == phone.device
    assert store_digest(laptop) == before


@pytest.fixture
def forked(tmp_path, phone):
    """Seq 1 as the phone wrote it, and as a copy of the phone restored from a backup wrote it."""
    phone.close()
    shutil.copytree(tmp_path / "phone", tmp_path / "restored")
    with home.open_home(tmp_path / "phone") as original, home.open_home(tmp_path / "restored") as restored:
        yield original.device, phone_events(original, 1)[0], phone_events(restored, 1, value="restored")[0]


def test_fork_is_detected_kept_as_proof_and_reported(laptop, forked):
    """A phone restored from a backup writes a different seq 1: both signed headers are kept."""
    device, original, other = forked
    assert original.id != other.id and original.header.seq == other.header.seq == 1
    laptop.ingest([(original.record, original.payload)])
    before = laptop.count()
    result = laptop.ingest([(other.record, other.payload)])         # kept as the other branch (format.md §7)
    assert result.forked == (device,) and laptop.count() == before + 1
    [proof] = laptop.forks()
    assert (proof.author, proof.seq, proof.kept) == (device, 1, original.id)
    assert dict(proof.records) == {original.id: original.record, other.id: other.record}
    report = verify_store(laptop)
    assert report.ok and [(f.author, f.seq) for f in report.forks] == [(device, 1)]


def test_forged_fork_is_not_recorded(laptop, phone):
    """A 'second event' with a bad signature is a signature error, never a fork."""
    [event] = phone_events(phone, 1)
    laptop.ingest([(event.record, event.payload)])
    h = dataclasses.replace(event.header, time_ms=event.header.time_ms + 1)
    header_bytes = encode_header(h)
    with pytest.raises(SignatureError):
        laptop.ingest([(header_bytes + event.signature, event.payload)])
    assert laptop.forks() == []
    assert event_id(header_bytes) != event.id


def test_fork_inside_one_batch_keeps_both_records(laptop, forked):
    device, a, b = forked
    assert laptop.ingest([(a.record, a.payload), (b.record, b.payload)]).forked == (device,)
    [proof] = laptop.forks()
    assert proof.kept == a.id and dict(proof.records) == {a.id: a.record, b.id: b.record}
    report = verify_store(laptop)
    assert report.ok and len(report.forks) == 1


def test_resending_held_events_after_a_revocation_is_harmless(laptop, phone):
    events = phone_events(phone, 3)
    laptop.ingest([(e.record, e.payload) for e in events])
    from agentlog.store import devices
    devices.revoke(laptop, "phone")
    assert laptop.ingest([(e.record, e.payload) for e in events]).duplicates == 3
    assert verify_store(laptop).ok


def test_roster_event_written_concurrently_with_a_revocation_is_a_warning(laptop, phone):
    """The phone enrols a tablet while the laptop, not having seen it, revokes the phone."""
    from agentlog.store import devices
    phone.append(payloads.DeviceEnroll(device=crypto.DeviceKey.generate().public, name="tablet"))
    devices.revoke(laptop, "phone")
    sync(laptop, phone)
    report = verify_store(phone)
    assert report.ok, report.problems
    assert [(w.author, w.seq) for w in report.after_revocation] == [(phone.device, 1)]
