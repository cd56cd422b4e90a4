"""The local search index: rows in LMDB that survive a restart, a change journal that lets
another process (or another Store object) patch its in-memory matrix, re-indexing on a
change of embedder, filters, lexical matching, top-k, and journal trimming.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agentlog.memory import index as memory_index
from agentlog.memory.api import Memory
from agentlog.memory.embedding import DEFAULT_EMBEDDER, HashingEmbedder, normalized
from agentlog.memory.index import EMBEDDED, EXCLUDED, REEMBEDDED, STORED, MemoryIndex
from agentlog.store import home
from agentlog.store.store import Store
from tests.helpers.paths import REPO


class Counting:
    """An embedder that records every text it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return self.inner.embed(texts)


class Tiny:
    """Another embedder: letter counts folded into 8 buckets."""

    name = "tiny-8"
    dim = 8

    def __init__(self):
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            for ch in text.lower():
                if ch.isalpha():
                    out[i, ord(ch) % self.dim] += 1
        return normalized(out)


@pytest.fixture
def home_dir(tmp_path) -> Path:
    store = home.create(tmp_path / "home", "laptop")
    store.create_group("laptop")
    store.close()
    return tmp_path / "home"


@pytest.fixture
def store(home_dir) -> Store:
    s = home.open_home(home_dir)
    yield s
    s.close()


def another_process(store: Store) -> Store:
    """The same home as another process sees it: the same LMDB environment, its own in-memory matrix.

    (py-lmdb refuses to open one environment twice in a process, so this is a shallow copy
    of the Store with an empty matrix cache; close only the original. The test below with a
    real subprocess covers a second process for real.)"""
    other = copy.copy(store)
    other.memory_cache = {}
    return other


@pytest.fixture
def changes(monkeypatch) -> list:
    """What each matrix refresh got from the journal: a list of ids, or None (too old: full reload)."""
    seen = []
    original = MemoryIndex.changes

    def spy(self, txn, since):
        found = original(self, txn, since)
        seen.append(None if found is None else [entry_id for entry_id, _ in found])
        return found
    monkeypatch.setattr(MemoryIndex, "changes", spy)
    return seen


def ids(result) -> list[bytes]:
    return [h.entry.id for h in result.hits]


def index_rows(store: Store) -> dict[bytes, memory_index.Row]:
    with store.raw_txn() as txn:
        return MemoryIndex(store.dbs, HashingEmbedder()).stored(txn)


def entries_in(store: Store, name: str) -> int:
    with store.raw_txn() as txn:
        return txn.stat(store.db(name))["entries"]


def index_meta(store: Store, key: bytes) -> bytes | None:
    with store.raw_txn() as txn:
        raw = txn.get(key, db=store.db("memory.index.meta"))
        return bytes(raw) if raw is not None else None


# -- restart ---------------------------------------------------------------------------------------

def test_the_index_survives_a_restart_without_embedding_again(home_dir):
    store = home.open_home(home_dir)
    tea = store.memory.put("the user drinks green tea every morning", tags=["drinks"])
    bike = store.memory.put("the user commutes by bike when it is dry", type="context")
    assert entries_in(store, "memory.dirty") == 2 and entries_in(store, "memory.index") == 0
    before = ids(store.memory.search("green tea"))
    assert before[0] == tea
    rows = index_rows(store)
    assert set(rows) == {tea, bike}
    assert entries_in(store, "memory.dirty") == 0
    store.close()

    store = home.open_home(home_dir)
    try:
        assert entries_in(store, "memory.dirty") == 0
        assert index_meta(store, b"model") == DEFAULT_EMBEDDER.encode()
        again = index_rows(store)
        assert set(again) == {tea, bike}
        for entry_id, row in rows.items():
            assert (again[entry_id].type, again[entry_id].how, again[entry_id].tags) == (row.type, row.how, row.tags)
            assert np.array_equal(again[entry_id].vector, row.vector)
        counting = Counting(HashingEmbedder())
        memory = Memory(store, embedder=counting)
        assert ids(memory.search("green tea")) == before
        assert counting.texts == ["green tea"]                  # the query only: the rows came from LMDB
        matrix = store.memory_cache[DEFAULT_EMBEDDER]
        assert matrix.n == 2 and set(matrix.row_of) == {tea, bike}
        assert ids(memory.search("bike commute", type="context")) == [bike]
        assert counting.texts == ["green tea", "bike commute"]
    finally:
        store.close()


def test_a_rebuild_of_the_views_indexes_everything_again(store):
    a = store.memory.put("alpha note")
    store.memory.search("alpha")
    store.rebuild_views()
    assert entries_in(store, "memory.dirty") == 1
    counting = Counting(HashingEmbedder())
    assert ids(Memory(store, embedder=counting).search("alpha")) == [a]
    assert sorted(counting.texts) == ["alpha", "alpha note"]      # the changed entry and the query, once each


# -- another Store object, another process -----------------------------------------------------------

def test_a_second_store_object_sees_puts_updates_and_deletes_of_the_first(home_dir, changes):
    first = home.open_home(home_dir)
    second = another_process(first)
    try:
        tea = first.memory.put("the user drinks green tea")
        assert ids(second.memory.search("green tea")) == [tea]

        # Made by the first and indexed by it: the second patches its matrix from the journal.
        coffee = first.memory.put("the user drinks black coffee")
        assert ids(first.memory.search("black coffee"))[0] == coffee
        first.memory.catch_up()
        del changes[:]
        assert ids(second.memory.search("black coffee"))[0] == coffee
        assert changes == [[coffee]]

        first.memory.update(tea, content="the user drinks jasmine tea", add_tags=["drinks"])
        assert ids(first.memory.search("jasmine", lexical=True)) == [tea]
        first.memory.catch_up()
        assert ids(second.memory.search("jasmine", lexical=True)) == [tea]
        assert ids(second.memory.search("drinks", tag="drinks")) == [tea]
        assert second.memory.search("green", lexical=True).hits == ()

        first.memory.delete(coffee)
        first.memory.search("coffee")
        first.memory.catch_up()
        del changes[:]
        assert coffee not in ids(second.memory.search("black coffee"))
        assert second.memory.search("coffee", lexical=True).hits == ()
        assert changes == [[coffee]]

        # Made by the first but not yet indexed: the second finds it, and indexes it in the background.
        water = first.memory.put("the user drinks sparkling water")
        assert entries_in(second, "memory.dirty") == 1
        assert ids(second.memory.search("sparkling water"))[0] == water
        second.memory.catch_up()
        assert entries_in(first, "memory.dirty") == 0
        assert ids(first.memory.search("sparkling water"))[0] == water
        assert all(found is not None for found in changes)      # never a full reload on the way
    finally:
        first.close()


def test_a_put_by_another_process_is_found_while_the_store_stays_open(store, home_dir, changes):
    old = store.memory.put("the user's laptop runs linux")
    assert ids(store.memory.search("laptop linux")) == [old]
    script = textwrap.dedent("""
        import sys
        from agentlog.store import home
        store = home.open_home(sys.argv[1])
        entry = store.memory.put("the user's phone runs android", tags=["devices"])
        assert store.memory.search("phone android").hits[0].entry.id == entry
        print(entry.hex())
        store.close()
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(home_dir)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    new = bytes.fromhex(done.stdout.strip())

    assert entries_in(store, "memory.dirty") == 0              # the other process indexed it
    del changes[:]
    found = store.memory.search("phone android")
    assert ids(found)[0] == new
    assert changes == [[new]]                                   # patched from the journal
    assert ids(store.memory.search("devices", lexical=True)) == [new]
    assert set(ids(store.memory.search("runs", lexical=True))) == {old, new}


# -- deletes ---------------------------------------------------------------------------------------

def test_a_deleted_entry_leaves_the_search(store):
    gone = store.memory.put("the user's old address is 12 Elm Street", tags=["home"])
    kept = store.memory.put("the user's office is on Elm Street")
    assert set(ids(store.memory.search("Elm Street"))) == {gone, kept}
    store.memory.delete(gone)
    assert ids(store.memory.search("Elm Street")) == [kept]
    assert ids(store.memory.search("elm street", lexical=True)) == [kept]
    assert store.memory.search("home", tag="home").hits == ()
    store.memory.catch_up()
    assert set(index_rows(store)) == {kept}
    matrix = store.memory_cache[DEFAULT_EMBEDDER]
    assert gone not in matrix.row_of and matrix.counts[EMBEDDED] == 1


# -- the embedder -----------------------------------------------------------------------------------

def test_changing_the_embedder_indexes_everything_again(store):
    local = HashingEmbedder().embed(["a question about mangoes"])[0]
    plain = store.memory.put("the user likes apples")
    with_local = store.memory.put("fruit preferences", embedding=local)
    with_tiny = store.memory.put("the user likes pears", embedding=Tiny().embed(["pears"])[0], model="tiny-8")
    found = store.memory.search("mangoes")
    assert (found.model, found.reembedded, found.excluded) == (DEFAULT_EMBEDDER, 1, 0)
    assert ids(found)[0] == with_local
    hows = {i: r.how for i, r in index_rows(store).items()}
    assert hows == {plain: EMBEDDED, with_local: STORED, with_tiny: REEMBEDDED}

    tiny = Tiny()
    found = Memory(store, embedder=tiny).search("pears")
    assert (found.model, found.reembedded, found.excluded) == ("tiny-8", 1, 0)
    assert index_meta(store, b"model") == b"tiny-8"
    assert int.from_bytes(index_meta(store, b"dim"), "big") == 8
    rows = index_rows(store)
    assert {i: r.how for i, r in rows.items()} == {plain: EMBEDDED, with_local: REEMBEDDED, with_tiny: STORED}
    assert all(len(r.vector) == 8 for r in rows.values())
    assert sorted(tiny.texts) == sorted(["the user likes apples", "fruit preferences", "pears"])
    assert ids(found)[0] == with_tiny

    back = Counting(HashingEmbedder())
    found = Memory(store, embedder=back).search("mangoes")
    assert (found.model, found.reembedded) == (DEFAULT_EMBEDDER, 1)
    assert ids(found)[0] == with_local
    assert all(len(r.vector) == 384 for r in index_rows(store).values())
    assert sorted(back.texts) == sorted(["the user likes apples", "the user likes pears", "mangoes"])


def test_an_embedding_that_claims_this_model_with_the_wrong_size_is_left_out(store):
    odd = Memory(store, embedder=Tiny()).put("a note about kiwis", embedding=[0.5] * 8, model=DEFAULT_EMBEDDER)
    fine = store.memory.put("another note about kiwis")
    found = store.memory.search("kiwis", ranking="vector")
    assert (found.excluded, found.reembedded) == (1, 0)
    assert ids(found) == [fine]
    assert set(ids(store.memory.search("kiwis"))) == {odd, fine}     # its words still find it
    assert index_rows(store)[odd].how == EXCLUDED
    assert set(ids(store.memory.search("kiwis", lexical=True))) == {odd, fine}   # words need no vector


# -- filters, lexical mode, top-k --------------------------------------------------------------------

@pytest.fixture
def notes(store):
    m = store.memory
    return {
        "theme": m.put("the user prefers the darker theme at night", type="preference", tags=["ui"], scope="user"),
        "font": m.put("the user prefers a larger font", type="preference", tags=["ui", "accessibility"],
                      scope="work"),
        "deploy": m.put("we decided to deploy on Fridays", type="decision", tags=["ops"], scope="work"),
        "bug": m.put("the night build fails when the cache is dark", type="finding", tags=["ops", "ci"],
                     scope="project:x"),
    }


def test_filters_by_type_tag_and_scope(store, notes):
    m = store.memory
    assert set(ids(m.search("the user prefers", k=10))) >= {notes["theme"], notes["font"]}
    assert set(ids(m.search("prefers night deploy build", type="preference"))) == {notes["theme"], notes["font"]}
    assert ids(m.search("prefers night deploy build", type="decision")) == [notes["deploy"]]
    assert m.search("prefers night deploy build", type="fact").hits == ()
    assert set(ids(m.search("prefers night deploy build", tag="ops"))) == {notes["deploy"], notes["bug"]}
    assert ids(m.search("prefers night deploy build", tag="accessibility")) == [notes["font"]]
    assert set(ids(m.search("prefers night deploy build", scope="work"))) == {notes["font"], notes["deploy"]}
    assert ids(m.search("prefers night deploy build", scope="work", tag="ui")) == [notes["font"]]
    assert m.search("prefers night deploy build", scope="work", type="finding").hits == ()
    found = m.search("night", lexical=True, tag="ops")
    assert ids(found) == [notes["bug"]] and found.mode == "lexical"
    assert found.searched == 2
    assert ids(m.search("prefers", lexical=True, scope="user")) == [notes["theme"]]
    assert all(h.entry.type == "preference" for h in m.search("the", k=10, type="preference").hits)


def test_top_k_is_ordered_and_bounded(store):
    topics = ["tea", "coffee", "water", "juice", "milk", "soda", "cocoa", "lemonade", "kombucha", "cider"]
    made = {t: store.memory.put(f"the user sometimes drinks {t} with lunch") for t in topics}
    exact = store.memory.put("the user drinks cocoa at night")
    found = store.memory.search("the user drinks cocoa at night", k=5, ranking="vector")
    assert len(found.hits) == 5
    assert found.hits[0].entry.id == exact and found.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert found.hits[1].entry.id == made["cocoa"]
    scores = [h.score for h in found.hits]
    assert scores == sorted(scores, reverse=True)
    assert found.searched == 11
    everything = store.memory.search("the user drinks cocoa at night", k=1000, ranking="vector")
    assert len(everything.hits) == 11
    assert ids(everything)[:5] == ids(found)
    assert ids(store.memory.search("the user drinks cocoa at night", k=1)) == [exact]
    assert ids(store.memory.search("the user drinks cocoa at night", k=2)) == [exact, made["cocoa"]]
    assert store.memory.search("zzzz qqqq", k=5, lexical=True).hits == ()


def test_equal_scores_are_ordered_by_entry_id(store):
    store.memory.put("the user owns a red car")
    store.memory.search("car")
    twins = []
    for _ in range(6):                  # one search after each put: matrix rows in the order put, not by id
        twins.append(store.memory.put("the user owns a red bicycle"))
        store.memory.search("bicycle")
        store.memory.catch_up()
    assert store.memory_cache[DEFAULT_EMBEDDER].ids[1:] == twins
    found = store.memory.search("the user owns a red bicycle", k=6)
    assert ids(found) == sorted(twins)
    for k in (1, 2, 3, 4, 5):
        assert ids(store.memory.search("the user owns a red bicycle", k=k)) == sorted(twins)[:k]


# -- journal trimming --------------------------------------------------------------------------------

def test_a_trimmed_journal_forces_a_full_reload_and_results_stay_right(home_dir, monkeypatch, changes):
    monkeypatch.setattr(memory_index, "JOURNAL_KEEP", 2)
    first = home.open_home(home_dir)
    second = another_process(first)
    try:
        made = [first.memory.put(f"note number {i} about gardening") for i in range(3)]
        assert set(ids(second.memory.search("gardening", lexical=True))) == set(made)

        for i in range(6):                          # each search indexes one change: the journal is trimmed
            made.append(first.memory.put(f"note number {i + 3} about sailing"))
            first.memory.search("sailing")
            first.memory.catch_up()
        first.memory.update(made[0], content="note number 0 about sailing")
        first.memory.delete(made[1])
        first.memory.search("sailing")
        first.memory.catch_up()
        assert entries_in(first, "memory.index.journal") <= 4
        assert int.from_bytes(index_meta(first, b"floor"), "big") > 1

        del changes[:]
        assert set(ids(second.memory.search("gardening", lexical=True))) == {made[2]}
        assert changes == [None]                     # the journal no longer reaches back: a full reload
        sailing = second.memory.search("sailing", lexical=True, k=100)
        assert set(ids(sailing)) == {made[0], *made[3:]}
        matrix = second.memory_cache[DEFAULT_EMBEDDER]
        assert set(matrix.row_of) == {made[0], made[2], *made[3:]}
        assert ids(second.memory.search("note number 0 about sailing"))[0] == made[0]

        # Small steps after the reload are patched again.
        extra = first.memory.put("note about knots")
        first.memory.search("knots")
        first.memory.catch_up()
        del changes[:]
        assert ids(second.memory.search("knots", lexical=True)) == [extra]
        assert changes == [[extra]]
    finally:
        first.close()
