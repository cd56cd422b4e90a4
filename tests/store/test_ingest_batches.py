"""Batches stored together (Store.ingest_batches, what a catch-up's queued batches go through): one commit for
all, the same store as one batch at a time, and a refused batch rejected whole while those before it stay."""

from __future__ import annotations

from agentlog.errors import DecodeError, PayloadHashError, SequenceError
from agentlog.log import payloads
from tests.helpers.events import phone_events, store_digest
from tests.helpers.scoped import health_home
from tests.helpers.sync import sync


def pairs(events) -> list:
    return [(e.record, e.payload) for e in events]


def views(store) -> dict:
    return {name: view["digest"] for name, view in store.views().items()}


def test_batches_stored_together_commit_once_and_equal_batches_stored_alone(laptop, phone, tablet):
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 30)
    batches = [pairs(events[:12]), pairs(events[12:25]), pairs(events[25:])]
    for batch in batches:
        tablet.ingest(batch, every_signature=False)
    before = laptop.last_txnid()
    results, failed = laptop.ingest_batches(batches, every_signature=False)
    assert failed is None
    assert laptop.last_txnid() == before + 1
    assert [r.accepted for r in results] == [12, 13, len(events) - 25]
    assert laptop.frontier() == tablet.frontier()
    assert views(laptop) == views(tablet)


def test_a_refused_batch_is_rejected_whole_and_the_batches_before_it_are_kept(laptop, phone, tablet):
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 9)
    first, second, third = pairs(events[:-6]), pairs(events[-6:-3]), pairs(events[-3:])
    tablet.ingest(first, every_signature=False)
    garbled = second[:2] + [(second[2][0], second[2][1] + b"x")]
    results, failed = laptop.ingest_batches([first, garbled, third], every_signature=False)
    assert [r.accepted for r in results] == [len(first)]
    assert isinstance(failed, PayloadHashError)
    assert laptop.frontier() == tablet.frontier()
    assert views(laptop) == views(tablet)
    assert all(laptop.get(e.id) is None for e in events[-6:])


def test_a_first_batch_refused_leaves_the_store_unchanged(laptop, phone):
    held = phone.events_after(laptop.frontier())
    laptop.ingest(pairs(held))
    events = phone_events(phone, 4)
    before = store_digest(laptop)
    results, failed = laptop.ingest_batches([pairs(events[1:]), pairs(events)])
    assert results == [] and isinstance(failed, SequenceError)
    assert store_digest(laptop) == before


def test_a_batch_of_duplicates_writes_nothing(laptop, phone):
    """A batch the store already holds commits no change (no disk sync, no wake-up of the store's watchers),
    with or without a sender for the ledger."""
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 5)
    laptop.ingest(pairs(events), source=phone.device)
    before, digest = laptop.last_txnid(), store_digest(laptop)
    for source in (None, phone.device):
        result = laptop.ingest(pairs(events), source=source)
        assert (result.accepted, result.duplicates) == (0, len(events))
    assert laptop.last_txnid() == before
    assert store_digest(laptop) == digest


def test_batches_stored_together_fold_a_setting_they_all_change_once(laptop, phone, tablet):
    """The views of one commit's batches are folded once, as one batch: one change of a setting all of them
    name, from its state before the first to its state after the last, as batches stored alone leave it."""
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 9)
    batches = [pairs(events[:-6]), pairs(events[-6:-3]), pairs(events[-3:])]
    alone, together = tablet.watch(), laptop.watch()
    for batch in batches:
        tablet.ingest(batch, every_signature=False)
    results, failed = laptop.ingest_batches(batches, every_signature=False)
    assert failed is None and [r.accepted for r in results] == [len(events) - 6, 3, 3]
    assert views(laptop) == views(tablet)
    one_by_one = [c for c in alone.poll() if c.setting == "theme"]
    (grouped,) = [c for c in together.poll() if c.setting == "theme"]
    assert len(one_by_one) == 3
    assert (grouped.old, grouped.new) == (one_by_one[0].old, one_by_one[-1].new)
    alone.close()
    together.close()


def test_a_batch_with_an_erase_request_among_batches_stored_together_sees_the_views_folded(laptop, phone, tablet):
    """A batch that does more than fold (here an erase request, which reads and refolds the views) comes after
    the fold of the batches before it in the commit: the same views as batches stored one at a time."""
    sync(laptop, tablet)
    held = phone.events_after(laptop.frontier()) + phone_events(phone, 6)
    target = held[-3]
    (request,) = [phone.get(eid) for eid in phone.erase([target.id], reason="test")]
    batches = [pairs(held[:-2]), pairs([*held[-2:], request]), pairs(phone_events(phone, 3, value="w"))]
    for batch in batches:
        tablet.ingest(batch, every_signature=False)
    results, failed = laptop.ingest_batches(batches, every_signature=False)
    assert failed is None and [r.accepted for r in results] == [len(held) - 2, 3, 3]
    assert laptop.erased(target.id) is not None
    assert views(laptop) == views(tablet)
    assert laptop.frontier() == tablet.frontier()


def test_a_fold_that_fails_among_batches_stored_together_refuses_only_its_batch(laptop, phone, tablet, monkeypatch):
    """Folded together, the batches' views fail as one; stored again with a fold each, the batches before the
    one whose fold fails are kept and that one is refused, as when each batch was folded with itself."""
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 9)
    batches = [pairs(events[:-6]), pairs(events[-6:-3]), pairs(events[-3:])]
    tablet.ingest(batches[0], every_signature=False)
    bad, fold = events[-5].id, laptop.pref_view.fold

    def failing(txn, batch, *args, **kwargs):
        if any(f.eid == bad for f in batch):
            raise DecodeError("a fold that fails")
        return fold(txn, batch, *args, **kwargs)
    monkeypatch.setattr(laptop.pref_view, "fold", failing)
    results, failed = laptop.ingest_batches(batches, every_signature=False)
    assert [r.accepted for r in results] == [len(batches[0])]
    assert isinstance(failed, DecodeError)
    assert laptop.frontier() == tablet.frontier()
    assert views(laptop) == views(tablet)


def test_sealed_batches_stored_together_are_folded_once(tmp_path):
    """Batches of sealed events opened with keys held before them need nothing but their fold: folded as one,
    one change of the setting they all name, and the views the writer's own are."""
    with health_home(tmp_path) as home:
        ids = [home.phone.append(payloads.Observation(setting="diet", value=f"v{i}"), scope="health")
               for i in range(9)]
        events = [home.phone.get(i) for i in ids]
        watch = home.laptop.watch()
        results, failed = home.laptop.ingest_batches([pairs(events[i:i + 3]) for i in (0, 3, 6)],
                                                     every_signature=False)
        assert failed is None and [r.accepted for r in results] == [3, 3, 3]
        at = home.phone.now_ms()                  # one moment for both answers: their scores decay with time
        assert home.laptop.prefs.get("diet", now_ms=at) == home.phone.prefs.get("diet", now_ms=at)
        assert views(home.laptop) == views(home.phone)
        assert len([c for c in watch.poll() if c.setting == "diet"]) == 1
        watch.close()
