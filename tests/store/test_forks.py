"""Forked logs in one process: both branches kept and folded, the author's epoch.start, and the bad input a fork
brings (a claim not signed by the author, an epoch.start that names no real branch heads, a copied key)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agentlog import crypto
from agentlog.audit.export import export
from agentlog.audit.verify import verify_file
from agentlog.errors import CausalGapError, EpochError, SignatureError
from agentlog.log import payloads
from agentlog.log.epochs import branch_id
from agentlog.log.event import seal
from agentlog.store import compaction, forks
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.events import phone_events, resign, store_digest
from tests.helpers.links import Link
from tests.helpers.sync import sync


def meet(a: Store, b: Store) -> None:
    """Two rounds of the protocol in memory (the daemon's replicator pushes a heal on the same link; here the
    second round carries it)."""
    for _ in range(2):
        link = Link(a, b)
        link.start()
        link.run()


def copy_of(store: Store, path) -> Store:
    """The same device opened on a consistent copy of its store (what a backup restores)."""
    path.mkdir()
    store.environment.copy(path)
    return Store(path, store.key)


def pairs(events):
    return [(e.record, e.payload) for e in events]


@pytest.fixture
def forked(tmp_path, laptop, phone):
    """The laptop holds the phone's seqs 1..5; a copy of the phone taken at seq 2, restored, wrote seqs 3..4."""
    phone_events(phone, 2, "kept")
    restored = copy_of(phone, tmp_path / "restored")
    forks.mark_restored(restored)
    phone_events(phone, 3, "lost")
    sync(phone, laptop)
    branch = phone_events(restored, 2, "new")
    yield restored, branch
    restored.close()


def test_both_branches_are_kept_folded_and_healed_in_the_next_epoch(tmp_path, laptop, forked):
    restored, branch = forked
    meet(restored, laptop)
    assert restored.count() == laptop.count() == 2 + 5 + 2 + 1
    assert restored.views() == laptop.views()
    head = restored.heads()[restored.device]
    assert (head.epoch, head.seq) == (1, 1) and laptop.heads()[restored.device] == head
    start = restored.get(head.id)
    assert start.header.kind == "epoch.start" and start.header.prev == bytes(32)
    named = {(r.seq, r.id) for r in payloads.decode("epoch.start", start.payload).branches}
    assert (4, branch[-1].id) in named and len(named) == 2
    for store in (restored, laptop):
        report = verify_store(store)
        assert report.ok, [p.what for p in report.problems] + report.damage
        [fork] = forks.summary(store)["forks"]
        assert (fork["seq"], fork["healed"]["epoch"]) == (3, 1)
        with open(tmp_path / "audit.jsonl", "wb") as out:
            export(store, out)
        assert verify_file(tmp_path / "audit.jsonl").ok
        [line] = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines() if '"fork"' in x]
        assert line["healed"]["event"] == start.id.hex() and len(line["heads"]) == 2
    assert restored.meta("restored") is None


def test_a_fork_claim_not_signed_by_the_author_is_refused_whole(laptop, phone, tablet, forked):
    restored, branch = forked
    forged = resign(branch[0], tablet.key)              # the restored branch's first event, signed by another key
    before = store_digest(laptop)
    for every in (True, False):
        with pytest.raises(SignatureError):
            laptop.ingest(pairs([forged]), every_signature=every)
    assert store_digest(laptop) == before and laptop.forks() == []
    phone_events(tablet, 2)
    sync(tablet, laptop)                                 # an honest peer goes on
    assert laptop.heads()[tablet.device].seq == 2


def test_an_epoch_start_that_names_no_real_branch_heads_is_refused(tmp_path, laptop, phone):
    phone_events(phone, 3)
    sync(phone, laptop)
    clone = copy_of(phone, tmp_path / "clone")
    head = phone.heads()[phone.device]
    seq2 = list(phone.events(phone.device))[1]
    refs = {"made up": (payloads.HeadRef(author=phone.device, epoch=0, seq=head.seq, id=head.id),
                        payloads.HeadRef(author=phone.device, epoch=0, seq=2, id=bytes(range(32)))),
            "no fork": (payloads.HeadRef(author=phone.device, epoch=0, seq=head.seq, id=head.id),
                        payloads.HeadRef(author=phone.device, epoch=0, seq=2, id=seq2.id))}
    before, starts = store_digest(laptop), {}
    for store, why in ((phone, "made up"), (clone, "no fork")):
        starts[why] = store.get(store.append(payloads.EpochStart(branches=refs[why])))
        with pytest.raises(CausalGapError, match="forked branch"):
            laptop.ingest(pairs([starts[why]]))
        assert store_digest(laptop) == before, why
    clone.close()
    plain = resign(starts["made up"], phone.key, kind="observe")     # a new epoch opened by another kind
    with pytest.raises(EpochError):
        laptop.ingest(pairs([plain]))
    assert store_digest(laptop) == before


def test_a_copied_key_forks_again_and_peers_flag_it(tmp_path, laptop, phone):
    phone_events(phone, 1)
    sync(phone, laptop)
    twin = copy_of(phone, tmp_path / "twin")              # a copied key: two live devices, no restore
    for round_ in range(3):                               # the second writes past the first heal fork again
        phone_events(phone, 2, f"a{round_}")
        phone_events(twin, 3, f"b{round_}")          # longer: a fork of equal length shows only once one grows
        meet(phone, laptop)
        meet(twin, laptop)
        meet(phone, laptop)
    found = forks.summary(laptop)
    assert len(found["forks"]) == 2 and found["copied_keys"] == [phone.device.hex()]
    assert [f["healed"]["epoch"] for f in found["forks"]] == [1, 2]
    twin.close()


def test_a_branch_is_named_alike_on_every_device(laptop, forked):
    restored, branch = forked
    meet(restored, laptop)
    ids = {b.bid for b in laptop.read(lambda txn: forks.branches_in(laptop.dbs, txn))}
    assert branch_id(restored.device, branch[0].id) in ids
    assert ids == {b.bid for b in restored.read(lambda txn: forks.branches_in(restored.dbs, txn))}


def _other_side(event, key, payload, prev: bytes | None = None, later_ms: int = 0):
    """Another branch's event at `event`'s position and lamport, with `payload` (of its kind) instead."""
    body = payloads.encode(payload)
    h = dataclasses.replace(event.header, payload_hash=crypto.blake2b256(body), payload_len=len(body),
                            prev=event.header.prev if prev is None else prev, time_ms=event.header.time_ms + later_ms)
    return seal(h, key, body)


def test_compacted_stores_with_opposite_main_chains_fold_a_fork_alike(tmp_path, laptop, phone):
    """Two branches tie on (lamport, author, epoch, seq) and which is the main chain follows arrival order; a
    refold from a base snapshot that broke the tie by storage order folded them in another order on each device
    (their memory views differed): the event id breaks it."""
    sync(phone, laptop)
    assert compaction.write_snapshot(laptop)[0] is not None          # the refold starts from this base
    twin = copy_of(laptop, tmp_path / "twin")
    entry = bytes(range(16))
    ids = [phone.append(payloads.MemoryPut(entry=entry, type="fact", content="side a")),
           phone.append(payloads.Observation(setting="theme", value="side a"))]
    a1, a2 = (phone.get(i) for i in ids)
    b1 = _other_side(a1, phone.key, payloads.MemoryPut(entry=entry, type="fact", content="side b"))
    b2 = _other_side(a2, phone.key, payloads.Observation(setting="theme", value="side b"), prev=b1.id)
    laptop.ingest(pairs([a1, a2, b1, b2]))
    twin.ingest(pairs([b1, b2, a1, a2]))
    mains = [s.heads()[phone.device].id for s in (laptop, twin)]
    assert mains == [a2.id, b2.id] and laptop.count() == twin.count()
    assert laptop.views() == twin.views()
    twin.close()


def test_a_clock_naming_a_position_only_a_branch_holds_folds_alike(tmp_path, laptop, phone):
    """The twin's main chain ends below seq 3, which only a branch holds there: an event whose clock names seq 3
    found no time for it on the twin (its preference view differed); it takes the branch event's time."""
    sync(phone, laptop)
    twin = copy_of(laptop, tmp_path / "twin")
    a1, a2, a3 = (phone.get(phone.append(payloads.Observation(setting="s", value=f"a{i}"))) for i in range(3))
    b1 = _other_side(a1, phone.key, payloads.Observation(setting="s", value="b1"), later_ms=7)
    b2 = _other_side(a2, phone.key, payloads.Observation(setting="s", value="b2"), prev=a1.id, later_ms=5)
    for batch in ([a1, b1], [a2], [a3, b2]):
        laptop.ingest(pairs(batch))
    for batch in ([b1], [a1, a2, a3], [b2]):
        twin.ingest(pairs(batch))
    laptop.append(payloads.Observation(setting="honest", value="x"))      # its clock names the phone's seq 3
    sync(laptop, twin)
    assert [s.heads()[phone.device].seq for s in (laptop, twin)] == [3, 1] and laptop.count() == twin.count()
    assert {n: v["digest"] for n, v in laptop.views().items()} == {n: v["digest"] for n, v in twin.views().items()}
    twin.close()
