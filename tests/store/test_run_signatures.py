"""A garbled signature inside a run a peer sent: replication checks only each author run's last signature
(the hash links prove the others' content), so the garbled bytes are stored unchecked. They are damaged
signature bytes on authentic content: `verify` names them as a warning (the peer they came from, the
signed event proving them), not a problem of the log; a check marks them damaged, replication asks peers
for the record again, and a peer's valid record heals them (same header, same id: only the signature
changes). A different record at that seq, validly signed, is a real fork of the author."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agentlog import crypto
from agentlog.log import payloads
from agentlog.log.event import Event, seal
from agentlog.store import devices, home
from agentlog.store.layout import event_key
from agentlog.store.verify import verify_store
from agentlog.sync.peer_log import StoreLog
from tests.helpers.daemons import agentlog
from tests.helpers.events import garbled, own_events, stored_record
from tests.helpers.sync import sync


def pairs(*events: Event) -> list:
    return [(e.record, e.payload) for e in events]


@pytest.fixture
def mallory(tmp_path, laptop):
    """An enrolled device that turns rogue: it writes validly and sends garbled batches."""
    store = home.create(tmp_path / "mallory", "mallory")
    devices.join(store, devices.enroll(laptop, store.device, "mallory"))
    sync(laptop, store)
    yield store
    store.close()


def rogue_batch(laptop, mallory) -> list[Event]:
    """The repro: mallory's seq 1 with a garbage signature, then its validly signed seq 2, as replication
    ingests a peer's batch."""
    one, two = own_events(mallory, 2)
    assert one.header.seq == 1
    result = laptop.ingest(pairs(garbled(one), two), every_signature=False, source=mallory.device)
    assert result.accepted == 2
    return [one, two]


def test_a_garbled_signature_inside_a_run_is_a_warning_naming_the_peer(laptop, mallory):
    one, _ = rogue_batch(laptop, mallory)
    report = verify_store(laptop)
    assert report.ok and not report.problems, [p.what for p in report.problems]
    [bad] = report.bad_signatures
    assert (bad.author, bad.seq, bad.last, bad.signed, bad.peer) == (mallory.device, 1, 1, 2, mallory.device)
    assert "signature bytes damaged" in bad.line(laptop.roster()) and "received from mallory" in bad.line(
        laptop.roster()
    )
    assert laptop.damaged() == [(mallory.device, 0, 1, 1)]          # verify marked it: peers are asked again
    assert (mallory.device, 0, 1, 1) in StoreLog(laptop).withheld()

    checked = agentlog(laptop.path.parent, "verify", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warnings = [line for line in checked.stdout.splitlines() if "signature bytes damaged" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: mallory") and "received from mallory" in warnings[0]
    report = json.loads(agentlog(laptop.path.parent, "verify", "--json").stdout)
    assert report["ok"] and not report["problems"]
    assert json.loads(agentlog(laptop.path.parent, "status", "--json").stdout)["signatures_damaged"] == 1
    assert "1 event with damaged signature bytes" in agentlog(laptop.path.parent, "status").stdout
    assert report["damaged_signatures"] == [{"author": mallory.device.hex(), "seq": 1, "last": 1, "signed": 2,
                                             "peer": mallory.device.hex()}]


def test_a_peer_with_the_valid_record_heals_the_signature(laptop, phone, mallory):
    one, two = rogue_batch(laptop, mallory)
    sync(mallory, phone)                                  # the phone got mallory's events whole and valid
    assert stored_record(laptop, one) != one.record
    result = sync(phone, laptop)                          # nothing new: the frontier covers mallory's events
    assert result.accepted == 0 and result.healed == 0
    result = laptop.ingest(pairs(one, two), every_signature=False, source=phone.device)
    assert (result.accepted, result.healed) == (0, 1)
    assert stored_record(laptop, one) == one.record and laptop.get(one.id).signature == one.signature
    report = verify_store(laptop)
    assert report.ok and not report.problems and not report.bad_signatures
    assert laptop.damaged() == [] and laptop.signature_ok(mallory.device, 0, 1, one.record)
    assert json.loads(agentlog(laptop.path.parent, "status", "--json").stdout)["signatures_damaged"] == 0


def test_a_second_garbled_copy_heals_nothing(laptop, mallory):
    one, _ = rogue_batch(laptop, mallory)
    before = stored_record(laptop, one)
    other = bytearray(one.signature)
    other[9] ^= 0x40
    result = laptop.ingest([(replace(one, signature=bytes(other)).record, one.payload)], every_signature=False)
    assert (result.accepted, result.healed, result.duplicates) == (0, 0, 1)
    assert stored_record(laptop, one) == before


def test_the_background_check_marks_damaged_and_clears_good_signatures(laptop, mallory):
    one, two = rogue_batch(laptop, mallory)
    three, four = own_events(mallory, 2, "n")
    laptop.ingest(pairs(three, four), every_signature=False)          # seq 3 stored unchecked, and good
    with laptop.raw_txn() as txn:
        assert txn.stat(laptop.db("unverified"))["entries"] == 2
    assert laptop.check_signatures() == 2
    assert laptop.check_signatures() == 0
    assert laptop.damaged() == [(mallory.device, 0, 1, 1)]
    assert not laptop.signature_ok(mallory.device, 0, 1, stored_record(laptop, one))
    assert laptop.signature_ok(mallory.device, 0, 3, three.record)


def test_the_relay_path_marks_a_damaged_signature_it_finds(laptop, mallory):
    one, _ = rogue_batch(laptop, mallory)
    assert not laptop.signature_ok(mallory.device, 0, 1, stored_record(laptop, one))
    assert laptop.damaged() == [(mallory.device, 0, 1, 1)]


def test_an_altered_header_is_still_a_problem(laptop, mallory):
    """The chain no longer proves an event whose header bytes changed on disk: its bad signature stays a
    problem of the log, not a warning."""
    one, _ = rogue_batch(laptop, mallory)
    record = bytearray(stored_record(laptop, one))
    record[-crypto.SIG_LEN - 1] ^= 0x01
    with laptop.raw_txn(write=True) as txn:
        txn.put(event_key(mallory.device, 0, 1), bytes(record), db=laptop.db("events"))
    report = verify_store(laptop)
    assert not report.ok and not report.bad_signatures
    assert any(p.seq == 1 and "signature does not verify" in p.what for p in report.problems), report.problems


def test_a_different_validly_signed_record_at_a_damaged_seq_is_a_real_fork(laptop, mallory):
    """Mallory's seq 2 signs the id of its seq 1, so the stored seq 1 is the author's even with damaged
    signature bytes: a different seq 1 it signed is a fork of the author, which verify reports as one."""
    one, _ = rogue_batch(laptop, mallory)
    body = payloads.encode(payloads.Observation(setting="rogue", value="the other seq 1"))
    fork_one = seal(replace(one.header, payload_hash=crypto.blake2b256(body), payload_len=len(body)), mallory.key, body)
    assert fork_one.header.seq == 1 and fork_one.id != one.id
    assert laptop.ingest(pairs(fork_one), every_signature=False, source=mallory.device).forked == (mallory.device,)
    report = verify_store(laptop)
    assert report.ok and not report.problems, [p.what for p in report.problems]
    assert [(f.author, f.seq) for f in report.forks] == [(mallory.device, 1)]

    laptop.ingest(pairs(one), every_signature=False)                 # healed: the fork proof's copy too
    [proof] = laptop.forks()
    assert dict(proof.records)[one.id] == one.record
    assert verify_store(laptop).forks and not verify_store(laptop).bad_signatures


def test_a_fork_inside_one_batch_against_a_garbled_record_is_a_fork_the_run_proves(laptop, mallory):
    """One batch: mallory's seq 1 garbled, its seq 2, and a different, validly signed seq 1. The run's signed
    seq 2 links to the garbled seq 1, which proves it the author's: the signed seq 1 is the other branch of a
    fork, kept (docs/format.md §7), and the log verifies with the fork as a warning."""
    one, two = own_events(mallory, 2)
    body = payloads.encode(payloads.Observation(setting="rogue", value="the other seq 1"))
    fork_one = seal(replace(one.header, payload_hash=crypto.blake2b256(body), payload_len=len(body)), mallory.key, body)
    count = laptop.count()
    result = laptop.ingest(pairs(garbled(one), two, fork_one), every_signature=False, source=mallory.device)
    assert result.forked == (mallory.device,) and laptop.count() == count + 3
    report = verify_store(laptop)
    assert not report.problems, [p.what for p in report.problems]
    assert [(f.author, f.seq) for f in report.forks] == [(mallory.device, 1)]


def test_verify_in_worker_processes_classifies_the_same(laptop, mallory, monkeypatch):
    """Split into key ranges checked by worker processes, the store's failures are classified once all
    ranges are in: the damaged signature is a warning, as in one process."""
    from agentlog.store import verify
    run = own_events(mallory, 40)
    laptop.ingest(pairs(*run[:19], garbled(run[19]), *run[20:]), every_signature=False, source=mallory.device)
    monkeypatch.setattr(verify, "PARALLEL_MIN_EVENTS", 1)
    report = verify_store(laptop, jobs=2)
    assert report.ok and not report.problems, [p.what for p in report.problems]
    assert [(b.seq, b.signed) for b in report.bad_signatures] == [(20, 21)]


def test_consecutive_damaged_signatures_are_one_warning(laptop, mallory):
    run = own_events(mallory, 5)
    laptop.ingest(pairs(run[0], *map(garbled, run[1:4]), run[4]), every_signature=False, source=mallory.device)
    report = verify_store(laptop)
    assert report.ok and not report.problems
    [bad] = report.bad_signatures
    assert (bad.seq, bad.last, bad.signed) == (2, 4, 5) and "(seqs 2..4)" in bad.what
    assert laptop.damaged() == [(mallory.device, 0, 2, 4)]
