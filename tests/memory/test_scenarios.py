"""The memory view as the user lives it: a laptop, a phone and sometimes a hub editing
the same memories offline and meeting again (the memory issue's bars).

After every story the devices hold byte-identical views, and each view equals a
fresh replay of its log (rebuild_views).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from agentlog.errors import InvalidValueError
from agentlog.memory import reducer as mr
from agentlog.memory.embedding import DEFAULT_EMBEDDER, HashingEmbedder
from agentlog.store import devices, home
from agentlog.store.store import Store
from tests.helpers.sync import converged, meet, sync

DIM = 384


@pytest.fixture
def hub(tmp_path, laptop) -> Store:
    """A third device enrolled by the laptop; it holds the laptop's log as of its joining."""
    store = home.create(tmp_path / "hub", "hub")
    devices.join(store, devices.enroll(laptop, store.device, "hub"))
    sync(laptop, store)
    yield store
    store.close()


def same_entry(*stores: Store, entry_id: bytes):
    """The entry as every store sees it, checked equal everywhere."""
    seen = [s.memory.get(entry_id) for s in stores]
    assert all(e == seen[0] for e in seen), "devices show the entry differently"
    return seen[0]


def winner_and_loser(a: tuple[Store, bytes], b: tuple[Store, bytes]):
    """Of two concurrent updates (store, event id), the one shown and the one kept as a conflict."""
    def order(pair):
        store, eid = pair
        return (store.get(eid).header.lamport, store.device)
    return sorted([a, b], key=order, reverse=True)


# -- concurrent edits: a conflict, then a resolution ------------------------------------------

def test_laptop_and_phone_edit_the_same_memory_offline_and_both_values_survive(laptop, phone):
    entry = laptop.memory.put("the user drinks tea in the morning", tags=["drinks"])
    sync(laptop, phone)
    on_laptop = laptop.memory.update(entry, content="the user drinks green tea in the morning")
    on_phone = phone.memory.update(entry, content="the user drinks coffee in the morning")
    assert laptop.memory.conflicts() == [] and phone.memory.conflicts() == []
    meet(laptop, phone)

    (win_store, win_eid), (lose_store, lose_eid) = winner_and_loser((laptop, on_laptop), (phone, on_phone))
    texts = {on_laptop: "the user drinks green tea in the morning", on_phone: "the user drinks coffee in the morning"}
    e = same_entry(laptop, phone, entry_id=entry)
    assert e.content == texts[win_eid]
    assert list(e.conflicts) == ["content"]
    assert [(c.value, c.author, c.event) for c in e.conflicts["content"]] == [
        (texts[win_eid], win_store.device, win_eid), (texts[lose_eid], lose_store.device, lose_eid)]
    assert e.tags == ("drinks",) and e.type == "fact"
    for device in (laptop, phone):
        [listed] = device.memory.conflicts()
        assert listed.id == entry and listed.content == texts[win_eid]
        assert [h.entry.id for h in device.memory.search("morning drinks").hits] == [entry]
    converged(laptop, phone)

    # The phone settles it; once the laptop hears of it, the conflict is gone everywhere.
    phone.memory.resolve(entry, "content", "the user drinks coffee, then tea")
    assert phone.memory.conflicts() == []
    assert [c.id for c in laptop.memory.conflicts()] == [entry]
    meet(laptop, phone)
    e = same_entry(laptop, phone, entry_id=entry)
    assert (e.content, e.conflicts) == ("the user drinks coffee, then tea", {})
    assert laptop.memory.conflicts() == [] and phone.memory.conflicts() == []
    converged(laptop, phone)


def test_a_later_update_settles_a_conflict_too(laptop, phone):
    entry = laptop.memory.put("standup is at 9", confidence=0.5)
    sync(laptop, phone)
    laptop.memory.update(entry, content="standup is at 9:30", confidence=0.7)
    phone.memory.update(entry, content="standup is at 10", confidence=0.9)
    meet(laptop, phone)
    assert sorted(same_entry(laptop, phone, entry_id=entry).conflicts) == ["confidence", "content"]

    laptop.memory.update(entry, content="standup is at 10:15")      # only the content is written again
    meet(laptop, phone)
    e = same_entry(laptop, phone, entry_id=entry)
    assert e.content == "standup is at 10:15"
    assert list(e.conflicts) == ["confidence"]
    assert sorted(c.value for c in e.conflicts["confidence"]) == [0.7, 0.9]

    phone.memory.resolve(entry, "confidence", "0.8")
    meet(laptop, phone)
    e = same_entry(laptop, phone, entry_id=entry)
    assert (e.confidence, e.conflicts) == (0.8, {})
    converged(laptop, phone)


def test_conflicting_embeddings_are_resolved_by_naming_the_write_to_keep(laptop, phone):
    rng = np.random.default_rng(7)
    first, second = rng.standard_normal((2, DIM)).astype(np.float32)
    entry = laptop.memory.put("the user's editor is helix")
    sync(laptop, phone)
    on_laptop = laptop.memory.update(entry, embedding=first)
    on_phone = phone.memory.update(entry, embedding=second)
    meet(laptop, phone)
    e = same_entry(laptop, phone, entry_id=entry)
    assert len(e.conflicts["embedding"]) == 2
    assert {c.event for c in e.conflicts["embedding"]} == {on_laptop, on_phone}
    shown = laptop.memory.vector(entry)[1]
    assert np.array_equal(phone.memory.vector(entry)[1], shown)

    laptop.memory.resolve(entry, "embedding", on_phone.hex()[:12])   # keep the phone's
    meet(laptop, phone)
    for device in (laptop, phone):
        assert device.memory.get(entry).conflicts == {}
        model, vector = device.memory.vector(entry)
        assert model == DEFAULT_EMBEDDER and np.array_equal(vector, second)
    converged(laptop, phone)


# -- delete against edit: a delete is final -------------------------------------------------

def test_a_delete_on_one_device_and_an_edit_on_another_the_delete_wins(laptop, phone):
    entry = laptop.memory.put("the user lives in Lyon", tags=["home"])
    kept = laptop.memory.put("the user works from Lyon on Mondays")
    sync(laptop, phone)
    laptop.memory.delete(entry, reason="moved away")
    phone.memory.update(entry, content="the user lives in Paris", add_tags=["city"])
    assert [h.entry.id for h in phone.memory.search("lives in Paris", lexical=True).hits] == [entry]
    assert phone.memory.get(entry).content == "the user lives in Paris"

    sync(phone, laptop)        # the edit reaches the deleting device first...
    sync(laptop, phone)        # ...then the delete reaches the editing one
    for device in (laptop, phone):
        e = device.memory.get(entry)
        assert e.is_deleted
        assert [(c.value, c.author) for c in e.deleted] == [("moved away", laptop.device)]
        assert (e.content, e.tags, e.conflicts) == ("", (), {})
        assert [m.id for m in device.memory.list()] == [kept]
        assert [m.id for m in device.memory.list(deleted=True)] == [entry]
        assert device.memory.conflicts() == []
        for lexical in (False, True):
            assert entry not in [h.entry.id for h in device.memory.search("lives in Paris", lexical=lexical).hits]
            assert entry not in [h.entry.id for h in device.memory.search("Lyon", lexical=lexical).hits]
        assert [h.entry.id for h in device.memory.search("Mondays", lexical=True).hits] == [kept]
        with pytest.raises(InvalidValueError, match="deleted"):
            device.memory.update(entry, content="back again")
    assert same_entry(laptop, phone, entry_id=entry).is_deleted
    converged(laptop, phone)


def test_concurrent_deletes_on_two_devices_keep_both_reasons(laptop, phone):
    entry = laptop.memory.put("an old note")
    sync(laptop, phone)
    laptop.memory.delete(entry, reason="stale")
    phone.memory.delete(entry, reason="wrong")
    meet(laptop, phone)
    e = same_entry(laptop, phone, entry_id=entry)
    assert sorted(c.value for c in e.deleted) == ["stale", "wrong"]
    converged(laptop, phone)


# -- tags: add wins ------------------------------------------------------------------------------

def test_tags_add_wins_across_devices(laptop, phone):
    entry = laptop.memory.put("the release is on Friday", tags=["project", "release", "old"])
    sync(laptop, phone)
    laptop.memory.update(entry, remove_tags=["project", "old"])
    phone.memory.update(entry, add_tags=["project", "urgent"])     # re-adds what the laptop removes
    phone.memory.update(entry, remove_tags=["release"])
    meet(laptop, phone)
    assert same_entry(laptop, phone, entry_id=entry).tags == ("project", "urgent")
    assert [m.id for m in laptop.memory.list(tag="project")] == [entry]
    assert phone.memory.list(tag="old") == []

    laptop.memory.update(entry, remove_tags=["project"])           # now it has seen every add
    meet(laptop, phone)
    assert same_entry(laptop, phone, entry_id=entry).tags == ("urgent",)
    for device in (laptop, phone):
        assert device.memory.search("Friday", tag="project").hits == ()
        assert [h.entry.id for h in device.memory.search("Friday", tag="urgent").hits] == [entry]
    converged(laptop, phone)


# -- three devices ---------------------------------------------------------------------------------

def test_phone_and_hub_converge_through_the_laptop(laptop, phone, hub):
    sync(laptop, phone)                                   # the phone learns of the hub's enrolment
    phone.scopes.create("personal")                       # a sealed scope all three read
    phone.scopes.grant("personal", [laptop.device, hub.device])
    entry = phone.memory.put("the user is allergic to peanuts", type="fact", tags=["health"], scope="personal")
    sync(phone, laptop)
    sync(laptop, hub)                       # the hub hears of it only through the laptop
    assert hub.memory.get(entry).content == "the user is allergic to peanuts"
    assert hub.memory.get(entry).scope == "personal"

    on_hub = hub.memory.update(entry, content="the user is allergic to peanuts and cashews", add_tags=["food"])
    on_phone = phone.memory.update(entry, confidence=0.6, type="finding", remove_tags=["health"])
    for src, dst in ((hub, laptop), (phone, laptop), (laptop, hub), (laptop, phone)):
        sync(src, dst)
    e = same_entry(laptop, phone, hub, entry_id=entry)
    assert (e.content, e.type, e.confidence, e.tags) == (
        "the user is allergic to peanuts and cashews", "finding", 0.6, ("food",))
    assert e.conflicts == {}
    assert e.author == phone.device
    assert {laptop.get(on_hub).header.author, laptop.get(on_phone).header.author} == {hub.device, phone.device}

    # Concurrent edits from the phone and the hub meet on the laptop, which settles them.
    hub.memory.update(entry, content="allergic to tree nuts")
    phone.memory.update(entry, content="allergic to peanuts only")
    sync(hub, laptop)
    sync(phone, laptop)
    assert [c.id for c in laptop.memory.conflicts()] == [entry]
    laptop.memory.resolve(entry, "content", "allergic to peanuts and tree nuts")
    sync(laptop, hub)
    sync(laptop, phone)
    e = same_entry(laptop, phone, hub, entry_id=entry)
    assert (e.content, e.conflicts) == ("allergic to peanuts and tree nuts", {})
    converged(laptop, phone, hub)


# -- embeddings ------------------------------------------------------------------------------------

def test_an_explicit_embedding_of_the_local_model_is_stored_and_searched_with(laptop, phone):
    pineapple = HashingEmbedder().embed(["pineapple pizza"])[0]
    entry = laptop.memory.put("a note about a favourite food", embedding=pineapple)
    other = laptop.memory.put("the user likes pizza with mushrooms")
    sync(laptop, phone)
    for device in (laptop, phone):
        model, vector = device.memory.vector(entry)
        assert model == DEFAULT_EMBEDDER and vector.dtype == np.float32
        assert np.array_equal(vector, pineapple)
        assert device.memory.get(entry).embedding_model == DEFAULT_EMBEDDER
        assert device.memory.vector(other) is None
        found = device.memory.search("pineapple pizza", ranking="vector")
        assert found.hits[0].entry.id == entry                  # by the stored vector, not by the content
        assert found.hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert (found.reembedded, found.excluded) == (0, 0)
    converged(laptop, phone)


def test_an_embedding_from_another_model_is_accepted_and_reembedded_for_search(laptop, phone):
    vector = [0.1, -0.2, 0.3, 0.4, 0.0, 0.5, -0.6, 0.7]
    entry = laptop.memory.put("the user's dog is called Pixel", embedding=vector, model="other-model")
    sync(laptop, phone)
    for device in (laptop, phone):
        model, stored = device.memory.vector(entry)
        assert model == "other-model"
        assert np.array_equal(stored, np.asarray(vector, dtype=np.float32))
        assert device.memory.get(entry).embedding_model == "other-model"
        found = device.memory.search("dog called Pixel")
        assert found.model == DEFAULT_EMBEDDER
        assert found.reembedded == 1 and found.excluded == 0
        assert [h.entry.id for h in found.hits] == [entry]
    converged(laptop, phone)


# -- bad input changes nothing ---------------------------------------------------------------------

BAD_CALLS = {
    "get unknown id": lambda m, e, d: m.get(os.urandom(16)),
    "update unknown id": lambda m, e, d: m.update(os.urandom(16), content="x"),
    "delete unknown id": lambda m, e, d: m.delete(os.urandom(16)),
    "resolve unknown id": lambda m, e, d: m.resolve(os.urandom(16), "content", "x"),
    "id of the wrong length": lambda m, e, d: m.get(e[:8]),
    "id as text that is not 32 hex digits": lambda m, e, d: m.update(e.hex()[:-1] + "g", content="x"),
    "id prefix not hex": lambda m, e, d: m.id("zzzz"),
    "id prefix too short": lambda m, e, d: m.id(e.hex()[:3]),
    "id prefix matching nothing": lambda m, e, d: m.id(
        next(p for p in ("0000", "5555", "aaaa") if not e.hex().startswith(p) and not d.hex().startswith(p))
    ),
    "empty content": lambda m, e, d: m.put(""),
    "blank content": lambda m, e, d: m.put(" \n\t"),
    "content over the limit": lambda m, e, d: m.put("x" * (mr.MAX_CONTENT_BYTES + 1)),
    "content over the limit in bytes": lambda m, e, d: m.put("é" * (mr.MAX_CONTENT_BYTES // 2 + 1)),
    "content not text": lambda m, e, d: m.put(b"bytes"),
    "update to empty content": lambda m, e, d: m.update(e, content=""),
    "update to content over the limit": lambda m, e, d: m.update(e, content="x" * (mr.MAX_CONTENT_BYTES + 1)),
    "embedding too short": lambda m, e, d: m.put("x", embedding=[0.1] * (DIM - 1)),
    "embedding too long": lambda m, e, d: m.put("x", embedding=[0.1] * (DIM + 1)),
    "embedding of the local model named": lambda m, e, d: m.put("x", embedding=[0.1] * 8, model=DEFAULT_EMBEDDER),
    "update with an embedding of the wrong size": lambda m, e, d: m.update(e, embedding=[0.1] * 8),
    "NaN in embedding": lambda m, e, d: m.put("x", embedding=[float("nan")] + [0.1] * (DIM - 1)),
    "infinity in embedding": lambda m, e, d: m.put("x", embedding=[0.1, float("inf")], model="other-model"),
    "NaN in another model's embedding": lambda m, e, d: m.update(e, embedding=[float("nan")] * 4, model="other"),
    "empty embedding": lambda m, e, d: m.put("x", embedding=[], model="other-model"),
    "embedding of strings": lambda m, e, d: m.put("x", embedding=["a", "b"], model="other-model"),
    "embedding of two rows": lambda m, e, d: m.put("x", embedding=[[0.1, 0.2]], model="other-model"),
    "embedding over the size limit": lambda m, e, d: m.put(
        "x", embedding=[0.1] * (mr.MAX_EMBEDDING_DIM + 1), model="other-model"
    ),
    "model without an embedding": lambda m, e, d: m.put("x", model="other-model"),
    "empty model name": lambda m, e, d: m.put("x", embedding=[0.1], model="\n"),
    "bad type": lambda m, e, d: m.put("x", type="note"),
    "update to a bad type": lambda m, e, d: m.update(e, type="Fact"),
    "confidence over 1": lambda m, e, d: m.put("x", confidence=1.01),
    "confidence under 0": lambda m, e, d: m.put("x", confidence=-0.1),
    "confidence not a number": lambda m, e, d: m.put("x", confidence="high"),
    "confidence NaN": lambda m, e, d: m.update(e, confidence=float("nan")),
    "tag with a space": lambda m, e, d: m.put("x", tags=["two words"]),
    "empty tag": lambda m, e, d: m.put("x", tags=[""]),
    "tags as one string": lambda m, e, d: m.put("x", tags="project"),
    "a tag twice": lambda m, e, d: m.put("x", tags=["a", "a"]),
    "too many tags": lambda m, e, d: m.put("x", tags=[f"t{i}" for i in range(mr.MAX_TAGS + 1)]),
    "too many tags by update": lambda m, e, d: m.update(e, add_tags=[f"t{i}" for i in range(mr.MAX_TAGS)]),
    "removing a tag the entry lacks": lambda m, e, d: m.update(e, remove_tags=["absent"]),
    "adding and removing one tag": lambda m, e, d: m.update(e, add_tags=["kept"], remove_tags=["kept"]),
    "update with nothing": lambda m, e, d: m.update(e),
    "update of a deleted entry": lambda m, e, d: m.update(d, content="revived"),
    "tag added to a deleted entry": lambda m, e, d: m.update(d, add_tags=["x"]),
    "delete of a deleted entry": lambda m, e, d: m.delete(d),
    "resolve on a deleted entry": lambda m, e, d: m.resolve(d, "content", "x"),
    "resolve without a conflict": lambda m, e, d: m.resolve(e, "content", "x"),
    "resolve of an unknown field": lambda m, e, d: m.resolve(e, "tags", "x"),
    "delete reason too long": lambda m, e, d: m.delete(e, reason="x" * (mr.MAX_REASON_LEN + 1)),
    "search without a query": lambda m, e, d: m.search("  "),
    "search for k = 0": lambda m, e, d: m.search("x", k=0),
    "search for too many": lambda m, e, d: m.search("x", k=1001),
    "search of a bad type": lambda m, e, d: m.search("x", type="note"),
    "list of a bad type": lambda m, e, d: m.list(type="note"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_and_changes_nothing(laptop, case):
    entry = laptop.memory.put("a memory with a tag", tags=["kept"])
    gone = laptop.memory.put("a memory that was deleted")
    laptop.memory.delete(gone)
    before_count, before_views = laptop.count(), laptop.views()
    before_entry = laptop.memory.get(entry)
    with pytest.raises(InvalidValueError):
        BAD_CALLS[case](laptop.memory, entry, gone)
    assert laptop.count() == before_count
    assert laptop.views() == before_views
    assert laptop.memory.get(entry) == before_entry


def test_a_good_call_after_bad_ones_still_works(laptop):
    entry = laptop.memory.put("x" * mr.MAX_CONTENT_BYTES, confidence=0, tags=[f"t{i}" for i in range(mr.MAX_TAGS)])
    with pytest.raises(InvalidValueError):
        laptop.memory.update(entry, add_tags=["one-more"])
    laptop.memory.update(entry, remove_tags=["t0"], add_tags=["one-more"], confidence=1)
    e = laptop.memory.get(entry)
    assert len(e.tags) == mr.MAX_TAGS and "one-more" in e.tags and e.confidence == 1.0
    assert laptop.memory.id(entry.hex()[:8]) == entry
    converged(laptop)
