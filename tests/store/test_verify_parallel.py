"""`verify` on a store large enough for its signature helpers (agentlog.store.verify_worker): a helper process
checks chunks of the events while this process scans and folds, and together they find exactly what one
process alone finds; a helper runs the agentlog of its parent, whatever the current directory holds."""

from __future__ import annotations

from agentlog.log import payloads
from agentlog.store import verify
from agentlog.store.layout import event_key
from agentlog.store.verify import verify_store

EVENTS = verify.PARALLEL_MIN_EVENTS + 2 * verify.CHUNK     # several chunks: the helper takes some


def _damage_signatures(store, seqs: list[int]) -> None:
    """Flip one bit of the signature of the laptop's events at `seqs` (content and links stay whole)."""
    with store.raw_txn(write=True) as txn:
        db = store.db("events")
        for seq in seqs:
            key = event_key(store.device, 0, seq)
            record = bytearray(txn.get(key, db=db))
            record[-1] ^= 0x01
            txn.put(key, bytes(record), db=db)


def test_helpers_find_the_damaged_signatures_one_process_finds(laptop, tmp_path, monkeypatch):
    (tmp_path / "cwd" / "agentlog").mkdir(parents=True)
    (tmp_path / "cwd" / "agentlog" / "__init__.py").write_text('raise SystemExit("not the agentlog verify runs")')
    monkeypatch.chdir(tmp_path / "cwd")          # `python -m` would import this package first
    for first in range(0, EVENTS, 500):
        laptop.append_many([payloads.Observation(setting=f"s{i % 7}", value=f"v{i}")
                            for i in range(first, min(first + 500, EVENTS))])
    assert laptop.count() >= verify.PARALLEL_MIN_EVENTS
    assert verify_store(laptop, jobs=2).ok

    top = laptop.heads()[laptop.device].seq
    damaged = [7, verify.CHUNK + 3, top - verify.CHUNK, top - 2]         # in the first, a middle and the last chunks
    _damage_signatures(laptop, damaged)
    alone, helped = verify_store(laptop, jobs=1), verify_store(laptop, jobs=2)
    found = [p.seq for p in helped.problems if p.what.startswith("signature does not verify")]
    assert found == sorted(damaged) and len(helped.problems) == len(damaged)
    assert (helped.bad_signatures, helped.problems, helped.damage, helped.notes) == \
        (alone.bad_signatures, alone.problems, alone.damage, alone.notes)


def test_events_past_the_counted_chunks_are_checked_here(laptop, monkeypatch):
    """The helpers' queue holds the chunks of the events counted before their snapshot; when the store held more by
    then (a commit in between), this process checks the chunks past the queue's, and finds what is damaged there."""
    for first in range(0, EVENTS, 500):
        laptop.append_many([payloads.Observation(setting=f"s{i % 7}", value=f"v{i}")
                            for i in range(first, min(first + 500, EVENTS))])
    top = laptop.heads()[laptop.device].seq
    _damage_signatures(laptop, [top - 2])
    alone = verify_store(laptop, jobs=1)
    monkeypatch.setattr(type(laptop), "count", lambda self: verify.PARALLEL_MIN_EVENTS)   # chunks past it unqueued
    helped = verify_store(laptop, jobs=2)
    assert [p.seq for p in helped.problems] == [top - 2]
    assert helped.checked == alone.checked > verify.PARALLEL_MIN_EVENTS
    assert (helped.bad_signatures, helped.problems, helped.notes) == (alone.bad_signatures, alone.problems, alone.notes)
