"""Tampering with the LMDB file itself: every flipped byte of an event or payload,
a deleted event and swapped events are caught by verify and named by author and seq."""

from __future__ import annotations

import random
import shutil

import pytest

from agentlog.log import payloads
from agentlog.store.layout import event_key
from agentlog.store.store import Store
from agentlog.store.verify import verify_store

N = 12


@pytest.fixture
def sealed_log(tmp_path, laptop, phone):
    """Laptop holds its own and the phone's events, compacted so each record lives in one place."""
    phone.append_many([payloads.Observation(setting="theme", value=f"phone-{i}") for i in range(N)])
    laptop.append_many(
        [payloads.Observation(setting="theme", value=f"laptop-{i}", context=(("n", str(i)),)) for i in range(N)]
    )
    laptop.ingest([(e.record, e.payload) for e in phone.events()])
    events = list(laptop.events())
    assert verify_store(laptop).ok
    path = tmp_path / "compact"
    path.mkdir()
    laptop.env.copy(str(path), compact=True)
    laptop.close()
    return path, events


def verify_copy(src, dst, mutate_file=None, mutate_store=None):
    """Copy the store, alter it, and verify the copy without the device key."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    if mutate_file:
        data = bytearray((dst / "data.mdb").read_bytes())
        mutate_file(data)
        (dst / "data.mdb").write_bytes(bytes(data))
    store = Store(dst, None)
    try:
        if mutate_store:
            with store.raw_txn(write=True) as txn:
                mutate_store(store, txn)
        return verify_store(store)
    finally:
        store.close()


def key_of(event):
    return event_key(event.header.author, event.header.epoch, event.header.seq)


def flip_at(offset):
    def mutate(data):
        data[offset] ^= 0x01
    return mutate


def test_every_byte_of_one_event_and_its_payload(sealed_log, tmp_path):
    path, events = sealed_log
    raw = (path / "data.mdb").read_bytes()
    event = events[5]
    for blob in (event.record, event.payload):
        start = raw.find(blob)
        assert start >= 0 and raw.find(blob, start + 1) < 0
        for i in range(len(blob)):
            report = verify_copy(path, tmp_path / "copy", flip_at(start + i))
            assert not report.ok, f"flip at byte {i} went unnoticed"
            assert (event.header.author, event.header.seq) in {(p.author, p.seq) for p in report.problems}


def test_sampled_bytes_of_every_event(sealed_log, tmp_path):
    path, events = sealed_log
    raw = (path / "data.mdb").read_bytes()
    rng = random.Random(7)
    for event in events:
        for blob in (event.record, event.payload):
            start = raw.find(blob)
            assert start >= 0
            report = verify_copy(path, tmp_path / "copy", flip_at(start + rng.randrange(len(blob))))
            assert (event.header.author, event.header.seq) in {(p.author, p.seq) for p in report.problems}


def test_deleted_event_is_named(sealed_log, tmp_path):
    path, events = sealed_log
    victim = events[3]

    def delete(store, txn):
        assert txn.delete(key_of(victim), db=store.db("events"))

    report = verify_copy(path, tmp_path / "copy", mutate_store=delete)
    assert any(p.author == victim.header.author and p.seq == victim.header.seq + 1 and "missing" in p.what
               for p in report.problems), report.problems


def test_deleted_last_event_is_named(sealed_log, tmp_path):
    path, events = sealed_log
    last = max((e for e in events if e.header.author == events[0].header.author), key=lambda e: e.header.seq)

    def delete(store, txn):
        txn.delete(key_of(last), db=store.db("events"))

    report = verify_copy(path, tmp_path / "copy", mutate_store=delete)
    assert any(p.author == last.header.author and "head records" in p.what for p in report.problems)


def test_swapped_events_are_named(sealed_log, tmp_path):
    path, events = sealed_log
    a, b = events[2], events[3]
    key = key_of

    def swap(store, txn):
        txn.put(key(a), b.record, db=store.db("events"))
        txn.put(key(b), a.record, db=store.db("events"))

    report = verify_copy(path, tmp_path / "copy", mutate_store=swap)
    named = {(p.author, p.seq) for p in report.problems if "wrong key" in p.what}
    assert named == {(a.header.author, a.header.seq), (b.header.author, b.header.seq)}


def test_deleted_payload_is_named(sealed_log, tmp_path):
    path, events = sealed_log
    victim = events[7]
    report = verify_copy(path, tmp_path / "copy",
                         mutate_store=lambda store, txn: txn.delete(key_of(victim), db=store.db("payloads")))
    assert [(p.author, p.seq, p.what) for p in report.problems] == [
        (victim.header.author, victim.header.seq, "payload is missing")
    ]


def test_a_record_cut_short_is_named_and_the_views_are_reported_unchecked(sealed_log, tmp_path):
    """A record too short to hold a signature: verify names the event and says the views could not be
    folded, as a report (it raised the fold's StoreError before, which told the user to run verify)."""
    path, events = sealed_log
    victim = events[4]

    def cut(store, txn):
        key = key_of(victim)
        txn.put(key, bytes(txn.get(key, db=store.db("events"))[:40]), db=store.db("events"))

    report = verify_copy(path, tmp_path / "copy", mutate_store=cut)
    assert not report.ok
    assert any(p.seq == victim.header.seq and "too short to hold a signature" in p.what for p in report.problems)
    assert [d for d in report.damage if d.startswith("views not checked: the log does not fold")]


def test_an_id_index_that_misses_events_is_named_in_each_events_place(sealed_log, tmp_path, monkeypatch):
    """An id-index entry deleted, and one pointing at the next event instead, whose own payload was altered too:
    each event the index misses is named, before its payload's problem, and the wrong entry is named at the
    event it points at. The events are scanned again for that only: once when the index is whole."""
    from agentlog.log.event import record_id
    from agentlog.store import verify
    path, events = sealed_log
    lost, moved = events[2], events[6]
    scans, scan = [], verify._scan
    monkeypatch.setattr(verify, "_scan", lambda *args: scans.append(args[-1]) or scan(*args))
    assert verify_copy(path, tmp_path / "copy").ok and scans == [False]
    scans.clear()

    def damage(store, txn):
        assert txn.delete(record_id(lost.record), db=store.db("ids"))
        txn.put(record_id(moved.record), key_of(events[7]), db=store.db("ids"))
        txn.put(key_of(moved), moved.payload + b"!", db=store.db("payloads"))

    report = verify_copy(path, tmp_path / "copy", mutate_store=damage)
    assert scans == [False, True]
    assert [(p.seq, p.what) for p in report.problems] == [
        (lost.header.seq, "id index does not point at this event"),
        (moved.header.seq, "id index does not point at this event"),
        (moved.header.seq, "payload does not match the header's payload hash"),
        (events[7].header.seq, f"id index entry {record_id(moved.record).hex()[:16]} does not match the stored event"),
    ]
