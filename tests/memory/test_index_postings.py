"""BM25's stored postings and searches that never wait for the write lock: a search while another
process holds the lock ranks the entries the index has not caught up with in memory and returns what the
fully indexed home returns; a new process finds what a warm one finds without tokenising a stored row, and a
first search that scans the stored blocks what a loaded matrix finds; the postings agree with a rebuild after
puts, updates, deletes, merges and an erasure.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from agentlog.memory import index as memory_index
from agentlog.memory import lexical
from agentlog.memory.api import Memory
from agentlog.memory.embedding import DEFAULT_EMBEDDER, HashingEmbedder
from agentlog.memory.index import MemoryIndex
from tests.helpers.paths import REPO

NOW_MS = 1_900_000_000_000
CANARY = "quetzalcanary"
QUERIES = ("tea", "sailing knots", "the garden", "red bicycle", "zzzz", "note")
FILTERS = ({}, {"type": "decision"}, {"tag": "t1"}, {"scope": "topic:home"})


@pytest.fixture
def store(laptop):
    return laptop


@pytest.fixture
def small(monkeypatch):
    """Blocks of 4 slots and postings ranges of 8: every change crosses their edges."""
    monkeypatch.setattr(memory_index, "BLOCK", 4)
    monkeypatch.setattr(lexical, "CHUNK", 8)


def fixed(store) -> Memory:
    return Memory(store, now_ms=lambda: NOW_MS)


CASES = [(query, filters, ranking) for query in QUERIES for filters in FILTERS for ranking in ("hybrid", "lexical",
                                                                                               "vector")]


def one(memory: Memory, query: str, filters: dict, ranking: str) -> tuple:
    """A search's ids and exact scores, and its counts."""
    found = memory.search(query, k=7, ranking=ranking, **filters)
    return [(h.entry.id.hex(), repr(h.score)) for h in found.hits], found.searched, found.reembedded, found.excluded


def results(memory: Memory) -> list:
    """Every query under every filter and ranking."""
    return [one(memory, *case) for case in CASES]


def varied(store) -> list[bytes]:
    """Entries of several types, tags and scopes; some with stored vectors of this model, another model's
    (re-embedded here) or the wrong size (no vector)."""
    rng = np.random.default_rng(5)
    made = []
    for i in range(14):
        words = ("tea", "sailing", "garden", "knots", "bicycle", "red")
        text = f"note {i} about {words[i % 6]} and {words[(i * 5) % 6]}" + " the garden" * (i % 3)
        extra = {}
        if i % 4 == 1:
            extra = {"embedding": rng.standard_normal(HashingEmbedder().dim).tolist()}
        elif i % 4 == 2:
            extra = {"embedding": [0.1, 0.2, 0.3], "model": "another-model"}
        elif i == 3:
            extra = {"embedding": [0.5] * 8, "model": DEFAULT_EMBEDDER}
        other = SimpleNamespace(name="tiny-8", dim=8)             # puts this model's name with 8 values unchecked
        memory = Memory(store, embedder=other) if i == 3 else store.memory
        made.append(memory.put(text, type=("fact", "decision")[i % 2], tags=[f"t{i % 3}"],
                               scope=("user", "topic:home")[i % 5 == 0], **extra))
    return made


def change(store, made: list[bytes]) -> None:
    """Puts, updates, a delete and a merge, unsearched."""
    store.memory.put("a red bicycle in the garden shed", type="decision", tags=["t1"])
    store.memory.put("tea with sailing friends", scope="topic:home", embedding=[0.3] * HashingEmbedder().dim)
    store.memory.update(made[2], content="now about red tea", add_tags=["t1"])
    store.memory.update(made[5], type="decision")
    store.memory.delete(made[6])
    store.memory.merge(made[8], made[9])


HOLD = textwrap.dedent("""
    import sys
    from agentlog.store import home
    store = home.open_home(sys.argv[1])
    with store.raw_txn(write=True):
        print("holding", flush=True)
        sys.stdin.readline()
    store.close()
""")


def test_a_search_behind_a_held_write_lock_returns_what_the_indexed_home_returns(store, small):
    made = varied(store)
    fixed(store).catch_up()
    change(store, made)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.path.parent)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "holding"
        done: dict = {}
        searching = threading.Thread(target=lambda: done.update(found=results(fixed(store))), daemon=True)
        searching.start()
        searching.join(60)
        assert not searching.is_alive(), "a search waited for another process's write lock"
        with store.raw_txn() as txn:
            assert txn.stat(store.db("memory.dirty"))["entries"] == 7     # still unindexed: all ranked in memory
    finally:
        holder.communicate("\n", timeout=60)
    fixed(store).catch_up()
    with store.raw_txn() as txn:
        assert txn.stat(store.db("memory.dirty"))["entries"] == 0
    assert done["found"] == results(fixed(store))
    assert done["found"] == results(fixed(fresh(store)))


def fresh(store):
    """Another Store object on the same environment with its own, empty matrix (one loaded whole)."""
    other = copy.copy(store)
    other.memory_cache = {}
    return other


COLD = textwrap.dedent("""
    import json, sys
    from agentlog.memory import lexical
    from agentlog.memory.api import Memory
    from agentlog.store import home
    from tests.memory.test_index_postings import NOW_MS, results
    rows = []
    row_text = lexical.row_text
    lexical.row_text = lambda row: rows.append(row) or row_text(row)
    store = home.open_home(sys.argv[1])
    print(json.dumps({"found": results(Memory(store, now_ms=lambda: NOW_MS)), "tokenised": len(rows)}))
    store.close()
""")


def test_a_new_process_finds_what_a_warm_one_finds_without_tokenising_a_stored_row(store):
    change(store, varied(store))
    warm = results(fixed(store))
    fixed(store).catch_up()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", COLD, str(store.path.parent)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    cold = json.loads(done.stdout)
    assert [[list(map(tuple, hits)), *counts] for hits, *counts in cold["found"]] == [list(r) for r in warm]
    assert cold["tokenised"] == 0


def test_a_first_search_scans_the_stored_blocks_and_finds_what_the_loaded_matrix_finds(store, small):
    change(store, varied(store))
    fixed(store).catch_up()
    warm = results(fixed(store))
    assert store.memory_cache[DEFAULT_EMBEDDER].has_vectors
    firsts = []
    for case in CASES:
        other = fresh(store)                         # a process's first search: its vectors stay in the map
        firsts.append(one(fixed(other), *case))
        assert not other.memory_cache[DEFAULT_EMBEDDER].has_vectors
    assert firsts == warm


def stored_postings(store) -> dict[tuple[bytes, bytes], int]:
    """(term key, entry id) -> count, of every stored posting."""
    with store.raw_txn() as txn:
        ids = {}
        with txn.cursor(db=store.db("memory.index")) as cur:
            for entry_id, slot in cur:
                ids[int.from_bytes(slot, "big")] = bytes(entry_id)
        out = {}
        with txn.cursor(db=store.db("memory.index.meta")) as cur:
            found = cur.set_range(lexical.POSTINGS_KEY)
            while found and cur.key()[:1] == lexical.POSTINGS_KEY:
                term = bytes(cur.key()[1:-5])
                slots, counts = np.frombuffer(cur.value(), dtype="<u4").reshape(2, -1)
                assert list(slots) == sorted(slots) and all(counts)
                for slot, tf in zip(slots.tolist(), counts.tolist()):
                    assert (term, ids[slot]) not in out
                    out[term, ids[slot]] = tf
                found = cur.next()
    return out


def expected_postings(store) -> dict[tuple[bytes, bytes], int]:
    """The postings the stored rows' texts make."""
    with store.raw_txn() as txn:
        rows = MemoryIndex(store.dbs, HashingEmbedder()).stored(txn)
    return {(lexical.term_key(term), entry_id): tf for entry_id, row in rows.items()
            for term, tf in Counter(lexical.terms(lexical.row_text(row))).items()}


def lengths(store) -> dict[bytes, int]:
    matrix = fresh(store).memory.matrix()
    return {matrix.id_at(i): int(matrix.lengths[i]) for i in matrix.row_of.values()}


def test_the_stored_postings_agree_with_a_rebuild_after_every_kind_of_change(store, small):
    made = varied(store)
    secret = store.memory.put(f"the {CANARY} was seen near the garden", tags=["t1"])
    store.memory.catch_up()
    change(store, made)
    store.memory.search("garden")
    store.memory.update(made[10], content="x" * 500 + " garden")         # a term too long for an LMDB key
    store.memory.catch_up()
    store.memory.forget(secret)
    store.memory.put("after the erasure, a garden note")
    store.memory.catch_up()
    patched, patched_lengths = stored_postings(store), lengths(store)
    assert patched == expected_postings(store)
    assert (lexical.term_key("x" * 500), made[10]) in patched
    with store.raw_txn() as txn, txn.cursor(db=store.db("memory.index.meta")) as cur:
        assert all(CANARY.encode() not in bytes(k) + bytes(v) for k, v in cur)
    with store.raw_txn(write=True) as txn:
        txn.delete(b"layout", db=store.db("memory.index.meta"))           # an older layout: indexed again whole
    store.memory.catch_up()
    assert stored_postings(store) == patched
    assert lengths(store) == patched_lengths
    assert patched_lengths == {entry_id: sum(tf for (_, e), tf in patched.items() if e == entry_id)
                               for entry_id in patched_lengths}
