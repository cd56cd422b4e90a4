"""The index's block storage: slots BLOCK to a block, patched in place by puts, updates, deletes and
erasures across block boundaries; a process's matrix patched from the journal equals one loaded whole
after a reopen; the semantic top k equals an exact ranking of every row; a merged entry's search text in
its vector row and in BM25's stored postings (the index tokenises only changed rows, a search none); a model
of another size re-indexes.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from agentlog.log import payloads
from agentlog.memory import index as memory_index
from agentlog.memory import lexical
from agentlog.memory.api import Memory
from agentlog.memory.embedding import DEFAULT_EMBEDDER, HashingEmbedder
from agentlog.memory.index import EMPTY, Matrix, MemoryIndex

CANARY = "zebra-canary-7f3a"


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(memory_index, "BLOCK", 4)


@pytest.fixture
def store(laptop):
    return laptop


def loaded(store) -> Matrix:
    """A matrix loaded whole from the stored blocks, as a new process loads it."""
    matrix = Matrix(HashingEmbedder().dim)
    store.read(lambda txn: matrix.refresh(txn, MemoryIndex(store.dbs, HashingEmbedder())))
    return matrix


def state(matrix: Matrix) -> dict:
    """What a matrix holds in its rows in use, by entry id."""
    used = np.flatnonzero(matrix.how[: matrix.n] != EMPTY).tolist()
    return {matrix.id_at(i): (matrix.rows[i], matrix.vectors[i].tobytes(), bool(matrix.alive[i])) for i in used}


def same(incremental: Matrix, store) -> None:
    whole = loaded(store)
    assert whole.gen == incremental.gen
    assert state(whole) == state(incremental)
    assert np.array_equal(whole.how[: whole.n], incremental.how[: whole.n])


def test_puts_updates_deletes_and_erasures_across_blocks_patch_and_reload_alike(store, small_blocks):
    other = copy.copy(store)                       # another Store object: its own matrix, patched from the journal
    other.memory_cache = {}
    made = [store.memory.put(f"note {i} about {'sailing' if i % 2 else 'gardening'}", tags=[f"t{i % 3}"])
            for i in range(10)]                     # three blocks of 4
    secret = store.memory.put(f"the {CANARY} note about sailing", type="decision")
    store.memory.search("sailing")
    patched = other.memory.matrix()
    assert patched.n == 11 and len(patched._texts) == 3
    same(patched, store)

    freed = patched.row_of[made[4]]
    store.memory.update(made[1], content="note 1 now about knots")
    store.memory.update(made[9], add_tags=["extra"])
    store.memory.delete(made[4])                                               # its slot is freed
    store.memory.search("knots")
    assert other.memory.matrix() is patched
    same(patched, store)
    assert patched.row_of.get(made[4]) is None

    again = store.memory.put("a new note takes the freed slot")
    store.memory.search("freed")
    other.memory.matrix()
    assert patched.row_of[again] == freed and patched.n == 11
    same(patched, store)

    assert [h.entry.id for h in other.memory.search(CANARY, lexical=True).hits] == [secret]
    store.memory.forget(secret)
    other.memory.matrix()
    same(patched, store)
    assert other.memory.search(CANARY, lexical=True).hits == ()
    with store.raw_txn() as txn, txn.cursor(db=store.db("memory.index.meta")) as cur:
        assert all(CANARY.encode() not in bytes(v) for _, v in cur)

    kinds = {h.entry.id for h in other.memory.search("note", type="decision", k=20).hits}
    assert kinds == set()
    tagged = {h.entry.id for h in other.memory.search("note", tag="t0", k=20).hits}
    assert tagged == {made[i] for i in (0, 3, 6, 9)}


def test_an_index_of_an_older_layout_is_rebuilt(store):
    a = store.memory.put("alpha note")
    store.memory.search("alpha")
    store.write(lambda txn: txn.put(b"layout", b"rows-0", db=store.db("memory.index.meta")))
    assert store.read(MemoryIndex(store.dbs, HashingEmbedder()).needs_sync)
    assert [h.entry.id for h in store.memory.search("alpha").hits] == [a]
    assert store.read(lambda txn: bytes(txn.get(b"layout", db=store.db("memory.index.meta")))) == memory_index.LAYOUT


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_semantic_top_k_equals_an_exact_ranking_of_every_row(store, seed):
    rng = np.random.default_rng(seed)
    units = rng.standard_normal((600, HashingEmbedder().dim)).astype(np.float32)
    units[100:110] = units[5]                      # equal rows: ranked by entry id
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    items = [payloads.MemoryPut(entry=os.urandom(16), type=("fact", "decision")[i % 7 == 0], content=f"row {i}",
                                embedding=payloads.Embedding(model=DEFAULT_EMBEDDER, vector=tuple(v)))
             for i, v in enumerate(units.tolist())]
    for start in range(0, len(items), 200):
        store.append_many(items[start : start + 200])
    matrix = store.memory.matrix()
    for q in (units[5], *rng.standard_normal((4, units.shape[1])).astype(np.float32)):
        q = q / np.linalg.norm(q)
        for mask_type in (None, "decision"):                 # all rows scanned, and only the filter's few
            mask = matrix.mask(mask_type, None, None)
            found = matrix.semantic(q, 25, mask)
            exact = sorted((-float(np.dot(matrix.vectors[i].astype(np.float64), q)), matrix.id_at(i))
                           for i in np.flatnonzero(mask).tolist())
            exact = [(entry_id, -neg) for neg, entry_id in exact if -neg > memory_index.MIN_SCORE][:25]
            assert [entry_id for entry_id, _ in found] == [entry_id for entry_id, _ in exact]
            assert np.allclose([s for _, s in found], [s for _, s in exact], atol=1e-5)


def test_a_merged_entrys_text_reaches_its_vector_row_and_bm25_patched_in_another_process(store, small_blocks,
                                                                                          monkeypatch):
    other = copy.copy(store)
    other.memory_cache = {}
    tokenised = []
    row_text = lexical.row_text
    monkeypatch.setattr(lexical, "row_text", lambda row: tokenised.append(row.content) or row_text(row))
    a = store.memory.put("Prefers aisle seats on flights")
    b = store.memory.put("Always books the seat next to the corridor on trains")
    for i in range(6):
        store.memory.put(f"filler note {i}")
    assert [h.entry.id for h in other.memory.search("corridor", lexical=True).hits] == [b]
    other.memory.catch_up()
    del tokenised[:]
    store.memory.merge(a, b)
    text = store.memory.get(a).content + "\n" + "Always books the seat next to the corridor on trains"
    store.memory.matrix()
    old = ["Prefers aisle seats on flights", "Always books the seat next to the corridor on trains"]
    assert sorted(tokenised) == sorted([*old, text])    # the changed rows only: their postings were and are
    del tokenised[:]
    with store.raw_txn() as txn:
        row = MemoryIndex(store.dbs, HashingEmbedder()).stored(txn)[a]
    assert row.content == text
    assert np.allclose(row.vector, HashingEmbedder().embed([text])[0])
    assert [h.entry.id for h in other.memory.search("corridor", lexical=True).hits] == [a]
    assert other.memory.search("corridor", ranking="vector").hits[0].entry.id == a
    assert tokenised == []                         # the other process read the postings: it tokenised no row


def test_a_model_of_another_size_under_the_same_name_is_indexed_again(store):
    class Sized(HashingEmbedder):
        def __init__(self, dim):
            super().__init__()
            self.dim = dim

        def embed(self, texts):
            return super().embed(texts)[:, : self.dim]

    entry = store.memory.put("a note about kiwis")
    for dim in (8, 16):
        memory = Memory(store, embedder=Sized(dim))
        assert memory.search("kiwis").hits[0].entry.id == entry
        with store.raw_txn() as txn:
            rows = MemoryIndex(store.dbs, memory.embedder).stored(txn)
        assert len(rows[entry].vector) == dim


@pytest.mark.parametrize(("seed", "rest"), [(4, memory_index.REST), (5, memory_index.REST), (6, 0.3)])
def test_a_search_by_dimension_ranks_and_scores_as_the_row_scan(store, seed, rest, monkeypatch):
    monkeypatch.setattr(memory_index, "REST", rest)       # 0.3: most rows' cosines far from their partial scores
    rng = np.random.default_rng(seed)
    dim = HashingEmbedder().dim
    units = rng.standard_normal((700, dim)).astype(np.float32)
    units[200:206] = units[7]                      # equal rows: ranked by entry id
    units[300:340, 40:] = 0                        # rows that only a few dims reach
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    items = [payloads.MemoryPut(entry=os.urandom(16), type=("fact", "decision")[i % 3 == 0], content=f"row {i}",
                                embedding=payloads.Embedding(model=DEFAULT_EMBEDDER, vector=tuple(v)))
             for i, v in enumerate(units.tolist())]
    store.append_many(items)
    by_dim = store.memory.matrix()
    assert by_dim.by_dim
    by_row = loaded(store)
    assert not by_row.by_dim
    sparse = np.zeros(dim, dtype=np.float32)
    sparse[[3, 17, 39]] = (0.6, -0.7, 0.3873)
    tiny = units[7].copy()
    tiny[100:] *= 1e-5                             # a query whose smallest dims are skipped, within the bound
    lopsided = rng.standard_normal(dim).astype(np.float32)
    lopsided[60:] *= 0.02                          # at 0.3, scored by its 60 large dims
    queries = [units[7], sparse, tiny, lopsided, *HashingEmbedder().embed(["row 12", "row"]),
               *rng.standard_normal((3, dim)).astype(np.float32)]
    for q in queries:
        q = q / np.linalg.norm(q)
        for mask_type in (None, "decision"):
            for k in (1, 10, 60):
                mask = by_row.mask(mask_type, None, None)
                assert np.array_equal(mask, by_dim.mask(mask_type, None, None))
                assert by_dim.semantic(q, k, mask) == by_row.semantic(q, k, mask)
    assert by_dim.semantic(np.zeros(dim, dtype=np.float32), 10, by_dim.mask(None, None, None)) == []


def test_the_kth_largest_score_is_the_partitions_whatever_the_sample_sees():
    rng = np.random.default_rng(9)
    for n, k in ((100_000, 100), (20_000, 300), (6_400, 100), (500, 10), (64, 1)):
        for shape in range(4):
            values = (rng.standard_normal(n) * 0.05).astype(np.float32)
            if shape == 1:
                values[rng.integers(0, n, n // 2)] = 0.25             # many equal scores
            elif shape == 2:
                values.sort()                                          # every 8th value holds the low end
            elif shape == 3:
                values[rng.random(n) < 0.9] = -np.inf                 # rows a filter left out
            assert memory_index.kth_largest(values, k) == np.sort(values)[n - k]
