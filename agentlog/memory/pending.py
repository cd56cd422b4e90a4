"""One search's rows: the durable index's matrix plus the entries it has not caught up with yet.

A search never takes the write lock (behind a writer that is a wait for it): in its own read
transaction it reads the entries the view marked changed (memory.dirty), makes their rows as the
index would store them, leaves out the matrix's stale rows of the same entries and ranks both
alike, so it returns what a search of the fully indexed home returns. The durable indexing happens
elsewhere (agentlog.memory.api starts it in the background). Rows of entries a process made once
are kept (by the entry's stored bytes) for its next searches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from agentlog.memory import lexical
from agentlog.memory.index import EMPTY, EXCLUDED, MIN_SCORE, Matrix, MemoryIndex, Row
from agentlog.memory.reducer import Entry

MAX_PENDING = 2000
"""More changed entries than this and a search indexes them durably first: one write beats ranking
thousands of rows made again by every search (after a bulk sync from another device)."""


@dataclass(slots=True)
class Pending:
    """A changed entry's row as the index would store it."""

    id: bytes
    row: Row
    terms: Counter
    length: int


class Rows:
    """The matrix's rows 0..n-1 (less the hidden ones, whose entries changed) and then the pending rows."""

    def __init__(self, matrix: Matrix, hidden: list[int], pending: list[Pending], behind: bool):
        self.matrix, self.pending, self.n, self.behind = matrix, pending, matrix.n, behind
        self.hide = np.zeros(self.n, dtype=bool)
        self.hide[hidden] = True
        self.hiding = bool(hidden)
        self.found: dict[str, tuple[np.ndarray, np.ndarray]] = {}    # query term -> (rows, counts) holding it
        self.nearest: list[tuple[bytes, float]] = []                  # the vector ranking `read` was asked for

    def id_at(self, i: int) -> bytes:
        return self.matrix.id_at(i) if i < self.n else self.pending[i - self.n].id

    def mask(self, type: str | None, tag: str | None, scope: str | None, vectors: bool = True) -> np.ndarray:
        """Rows passing the filters (and holding a usable vector when `vectors`)."""
        main = self.matrix.mask(type, tag, scope, vectors)
        if self.hiding:
            main = main & ~self.hide
        extra = [(not vectors or p.row.how != EXCLUDED) and (type is None or p.row.type == type)
                 and (tag is None or tag in p.row.tags) and (scope is None or p.row.scope == scope)
                 for p in self.pending]
        return np.concatenate((main, np.array(extra, dtype=bool))) if extra else main

    def count(self, mask: np.ndarray, hows: tuple[int, ...]) -> list[int]:
        """How many rows under `mask` were indexed each way in `hows`."""
        found = self.matrix.count(mask[: self.n], hows)
        for p, keep in zip(self.pending, mask[self.n :].tolist()):
            if keep and p.row.how in hows:
                found[hows.index(p.row.how)] += 1
        return found

    def corpus(self, mask: np.ndarray) -> lexical.Corpus:
        """BM25's view of these rows: lengths, counts and the query terms' postings over all of them."""
        m = self.matrix
        lengths = m.lengths[: self.n]
        live = int(np.count_nonzero(m.how[: self.n] != EMPTY)) - int(np.count_nonzero(self.hide))
        total = int(lengths.sum(dtype=np.int64)) - int(lengths[self.hide].sum(dtype=np.int64))
        if self.pending:
            lengths = np.concatenate((lengths, np.array([p.length for p in self.pending], dtype=np.uint32)))
            live += len(self.pending)
            total += sum(p.length for p in self.pending)
        return lexical.Corpus(lengths, mask, self.id_at, live, total, self.found)

    def semantic(self, txn, query: np.ndarray, k: int, mask: np.ndarray) -> list[tuple[bytes, float]]:
        """The k rows nearest `query` by cosine, best first, ties by entry id (as `Matrix.semantic`), in the
        read transaction the rows were read in."""
        found = self.matrix.semantic(query, k, mask[: self.n], txn)
        picked = [p for p, keep in zip(self.pending, mask[self.n :].tolist()) if keep and p.row.vector is not None]
        if not picked:
            return found
        exact = np.einsum("ij,j->i", np.stack([p.row.vector for p in picked]), np.asarray(query, dtype=np.float32))
        found += [(p.id, float(score)) for p, score in zip(picked, exact) if score > MIN_SCORE]
        best = sorted((-score, entry_id) for entry_id, score in found)[:k]
        return [(entry_id, -neg) for neg, entry_id in best]


def read(txn, index: MemoryIndex, view, matrix: Matrix, made: dict, words: list[str],
         near: tuple | None = None) -> Rows | None:
    """This read transaction's rows, with the postings of the query's terms `words` and, given `near`
    (query vector, k, type, tag, scope), the k nearest rows as `Rows.nearest`; None when the index must
    first be built durably (another model or layout, or more than MAX_PENDING changed entries).
    `made`: entry id -> (its stored bytes, Pending), this process's rows of changed entries. A process's
    first read leaves the vectors in the map (`Matrix.refresh`)."""
    if not index.current(txn):
        return None
    ids = index.pending(txn)
    if len(ids) > MAX_PENDING:
        return None
    matrix.refresh(txn, index, vectors=matrix.gen >= 0)
    hidden, todo = [], []
    for entry_id in ids:
        slot = txn.get(entry_id, db=index.rows)
        if slot is not None:
            hidden.append(int.from_bytes(slot, "big"))
        raw = txn.get(entry_id, db=view.entries)
        raw = bytes(raw) if raw is not None else None
        known = made.get(entry_id)
        if known is not None and known[0] == raw:
            continue
        entry = Entry.from_bytes(entry_id, raw) if raw is not None else None
        made[entry_id] = (raw, None)
        if entry is not None and entry.visible:
            todo.append(entry)
    for entry, how, vector in index.rows_of(txn, view, todo, {}):
        row = Row(entry.value("type"), how, entry.scope, entry.tag_set, entry.search_text(),
                  None if vector is None else np.asarray(vector, dtype=np.float32))
        terms = lexical.counts(row)
        made[entry.id] = (made[entry.id][0], Pending(entry.id, row, terms, sum(terms.values())))
    pending = [made[i][1] for i in ids if made[i][1] is not None]
    for gone in set(made) - set(ids):
        del made[gone]
    rows = Rows(matrix, hidden, pending, bool(ids))
    for word in words:
        slots, tfs = lexical.postings(txn, index.meta, word)
        keep = ~rows.hide[slots]
        extra = [(matrix.n + j, p.terms[word]) for j, p in enumerate(pending) if word in p.terms]
        if extra:
            more = np.array(extra, dtype=np.int64).T
            rows.found[word] = (np.concatenate((slots[keep], more[0])), np.concatenate((tfs[keep], more[1])))
        elif len(slots):
            rows.found[word] = (slots[keep], tfs[keep])
    if near is not None:
        query, k, *filters = near
        rows.nearest = rows.semantic(txn, query, k, rows.mask(*filters, vectors=True))
    return rows

