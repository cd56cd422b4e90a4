"""The local search index over memory entries: one unit vector per visible entry, from this home's embedder.

Not part of the memory view (another device may embed with another model), so not in its
digest. It lives in LMDB and survives restart; the view marks what changed (memory.dirty)
in the same transaction as the fold, and `sync` embeds those entries before a search.
A process keeps the matrix in memory and patches it from the journal of changed ids.

Databases (opened by the store, see memory_view.DBS):
  memory.index          entry id(16) -> row: type(1) how(1) scope tags content (each length-prefixed) float32 vector
                        (how: STORED, EMBEDDED here, REEMBEDDED from another model, or EXCLUDED with no vector)
  memory.index.journal  change number(8) -> entry id(16): what changed, for other processes' in-memory copies
  memory.index.meta     b"model", b"dim", b"gen" (last change number), b"floor" (oldest journal entry kept)
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass

import numpy as np

from agentlog.memory import reducer as mr
from agentlog.memory.embedding import Embedder, normalized
from agentlog.memory.reducer import Entry

JOURNAL_KEEP = 100_000
_U64 = struct.Struct(">Q")
_WORD = re.compile(r"\w+")
STORED, EMBEDDED, REEMBEDDED, EXCLUDED = range(4)
MIN_SCORE = 1e-4                   # a cosine at or below this is no similarity at all


def _pack_text(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(4, "big") + raw


def pack_row(entry: Entry, how: int, vector: np.ndarray | None) -> bytes:
    head = bytes((mr.TYPES.index(entry.value("type")), how))
    body = _pack_text(entry.scope) + _pack_text("\x1f".join(entry.tag_set)) + _pack_text(entry.search_text())
    return head + body + (np.asarray(vector, dtype="<f4").tobytes() if vector is not None else b"")


@dataclass(slots=True)
class Row:
    type: str
    how: int
    scope: str
    tags: tuple[str, ...]
    content: str
    vector: np.ndarray | None


def unpack_row(raw: bytes) -> Row:
    raw = bytes(raw)
    at, texts = 2, []
    for _ in range(3):
        n = int.from_bytes(raw[at : at + 4], "big")
        texts.append(raw[at + 4 : at + 4 + n].decode())
        at += 4 + n
    tags = tuple(texts[1].split("\x1f")) if texts[1] else ()
    return Row(mr.TYPES[raw[0]], raw[1], texts[0], tags, texts[2], np.frombuffer(raw, dtype="<f4", offset=at))


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


class MemoryIndex:
    """The index's databases, for one embedder; `Matrix` is a process's in-memory copy."""

    def __init__(self, dbs: dict, embedder: Embedder):
        self.rows, self.journal, self.meta = dbs["memory.index"], dbs["memory.index.journal"], dbs["memory.index.meta"]
        self.dirty = dbs["memory.dirty"]
        self.embedder = embedder

    def gen(self, txn) -> int:
        raw = txn.get(b"gen", db=self.meta)
        return _U64.unpack(raw)[0] if raw else 0

    def needs_sync(self, txn) -> bool:
        return self._changed_model(txn) or txn.stat(self.dirty)["entries"] > 0

    def _changed_model(self, txn) -> bool:
        """Whether the index holds another model's vectors, or vectors of another size under this one's name."""
        dim = txn.get(b"dim", db=self.meta)
        return (txn.get(b"model", db=self.meta) != self.embedder.name.encode()
                or (dim is not None and int.from_bytes(dim, "big") != self.embedder.dim))

    def sync(self, txn, view) -> None:
        """Index every entry the view marked changed (all of them after a change of model); write transaction."""
        if self._changed_model(txn):
            for db in (self.rows, self.journal):
                txn.drop(db, delete=False)
            txn.put(b"model", self.embedder.name.encode(), db=self.meta)
            txn.put(b"dim", self.embedder.dim.to_bytes(4, "big"), db=self.meta)
            txn.put(b"floor", _U64.pack(self.gen(txn) + 1), db=self.meta)
            ids = view.entry_ids(txn)
        else:
            with txn.cursor(db=self.dirty) as cur:
                ids = [bytes(k) for k in cur.iternext(keys=True, values=False)]
        gen = self.gen(txn)
        indexed: list[list] = []          # [entry, how, vector]
        journal = []
        for entry_id in ids:
            entry = view.entry(txn, entry_id)
            if entry is None or not entry.visible:
                if txn.delete(entry_id, db=self.rows):
                    gen += 1
                    journal.append((_U64.pack(gen), entry_id))
                continue
            how, vector = EMBEDDED, None
            stored = entry.fields.get("embedding")
            if stored:
                model, vec = view.vector(txn, stored[0].eid)
                if model != self.embedder.name:
                    how = REEMBEDDED
                elif len(vec) != self.embedder.dim:
                    how = EXCLUDED
                else:
                    how, vector = STORED, vec
            indexed.append([entry, how, vector])
        stored = [row for row in indexed if row[1] == STORED]
        if stored:
            for row, vec in zip(stored, normalized(np.stack([row[2] for row in stored]))):
                row[2] = vec
        pending = [row for row in indexed if row[1] in (EMBEDDED, REEMBEDDED)]
        if pending:
            for row, vec in zip(pending, self.embedder.embed([row[0].search_text() for row in pending])):
                row[2] = vec
        for entry, how, vector in indexed:
            txn.put(entry.id, pack_row(entry, how, vector), db=self.rows)
            gen += 1
            journal.append((_U64.pack(gen), entry.id))
        txn.cursor(db=self.journal).putmulti(journal, append=True)
        txn.put(b"gen", _U64.pack(gen), db=self.meta)
        txn.drop(self.dirty, delete=False)
        self._trim(txn, gen)

    def _trim(self, txn, gen: int) -> None:
        floor_raw = txn.get(b"floor", db=self.meta)
        floor = _U64.unpack(floor_raw)[0] if floor_raw else 1
        if gen - floor < 2 * JOURNAL_KEEP:
            return
        new_floor = gen - JOURNAL_KEEP
        with txn.cursor(db=self.journal) as cur:
            while cur.first() and _U64.unpack(cur.key())[0] < new_floor:
                cur.delete()
        txn.put(b"floor", _U64.pack(new_floor), db=self.meta)

    def changes(self, txn, since: int) -> list[bytes] | None:
        """Entry ids changed after change number `since`, or None when the journal no longer reaches back."""
        floor_raw = txn.get(b"floor", db=self.meta)
        if floor_raw and _U64.unpack(floor_raw)[0] > since + 1:
            return None
        out = []
        with txn.cursor(db=self.journal) as cur:
            found = cur.set_range(_U64.pack(since + 1))
            while found:
                out.append(bytes(cur.value()))
                found = cur.next()
        return out


class Matrix:
    """A process's in-memory copy of the index: a float32 matrix plus per-row filters, patched by change number."""

    def __init__(self, dim: int):
        self.dim = dim
        self.gen = -1
        self.model = ""
        self.reset()

    def reset(self) -> None:
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.n = 0
        self.row_of: dict[bytes, int] = {}
        self.ids: list[bytes | None] = []
        self.rows: list[Row | None] = []
        self.alive = np.zeros(0, dtype=bool)
        self.how = np.zeros(0, dtype=np.uint8)                  # per row: STORED, EMBEDDED, ...; 255 when empty
        self._masks: dict[tuple, np.ndarray] = {}
        self._folded: list[str | None] = []

    def refresh(self, txn, index: MemoryIndex) -> None:
        """Bring this copy up to the index's current change number."""
        gen = index.gen(txn)
        model = (txn.get(b"model", db=index.meta) or b"").decode()
        if gen == self.gen and model == self.model:
            return
        changed = index.changes(txn, self.gen) if model == self.model and self.gen >= 0 else None
        if changed is None:
            self.reset()
            with txn.cursor(db=index.rows) as cur:
                items = [(bytes(k), unpack_row(v)) for k, v in cur]
            self._grow(len(items))
            for entry_id, row in items:
                self._set(entry_id, row)
        else:
            for entry_id in dict.fromkeys(changed):
                raw = txn.get(entry_id, db=index.rows)
                if raw is None:
                    self._drop(entry_id)
                else:
                    self._set(entry_id, unpack_row(raw))
        self.gen, self.model = gen, model
        self._masks.clear()

    def _grow(self, need: int) -> None:
        if need <= len(self.vectors):
            return
        size = max(need, 2 * len(self.vectors), 64)
        vectors = np.zeros((size, self.dim), dtype=np.float32)
        vectors[: self.n] = self.vectors[: self.n]
        alive = np.zeros(size, dtype=bool)
        alive[: self.n] = self.alive[: self.n]
        how = np.full(size, 255, dtype=np.uint8)
        how[: self.n] = self.how[: self.n]
        self.vectors, self.alive, self.how = vectors, alive, how

    def _set(self, entry_id: bytes, row: Row) -> None:
        i = self.row_of.get(entry_id)
        if i is None:
            self._grow(self.n + 1)
            i = self.row_of[entry_id] = self.n
            self.n += 1
            self.ids.append(entry_id)
            self.rows.append(None)
            self._folded.append(None)
        self.rows[i], self._folded[i] = row, None
        self.how[i] = row.how
        usable = row.how != EXCLUDED and len(row.vector) == self.dim
        self.vectors[i] = row.vector if usable else 0
        row.vector = None                  # the matrix holds it now
        self.alive[i] = usable

    def _drop(self, entry_id: bytes) -> None:
        i = self.row_of.pop(entry_id, None)
        if i is not None:
            self.ids[i], self.rows[i], self._folded[i] = None, None, None
            self.how[i] = 255
            self.vectors[i] = 0
            self.alive[i] = False

    # -- querying --

    def mask(self, type: str | None, tag: str | None, scope: str | None, vectors: bool = True) -> np.ndarray:
        """Rows passing the filters, and holding a usable vector when `vectors` (cached until the next change)."""
        key = (type, tag, scope, vectors)
        found = self._masks.get(key)
        if found is None:
            found = self.alive[: self.n].copy() if vectors else np.array([r is not None for r in self.rows], dtype=bool)
            if type is not None or tag is not None or scope is not None:
                keep = [r is not None and (type is None or r.type == type) and (scope is None or r.scope == scope)
                        and (tag is None or tag in r.tags) for r in self.rows]
                found &= np.array(keep, dtype=bool)
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = found
        return found

    @property
    def counts(self) -> list[int]:
        """Rows indexed each way: [STORED, EMBEDDED, REEMBEDDED, EXCLUDED]."""
        return self.count(np.ones(self.n, dtype=bool), (STORED, EMBEDDED, REEMBEDDED, EXCLUDED))

    def count(self, mask: np.ndarray, hows: tuple[int, ...]) -> list[int]:
        """How many rows under `mask` were indexed each way in `hows`."""
        picked = self.how[: self.n][mask]
        return [int(np.count_nonzero(picked == how)) for how in hows]

    def semantic(self, query: np.ndarray, k: int, mask: np.ndarray) -> list[tuple[bytes, float]]:
        """The k rows nearest `query` (a unit vector) by cosine, best first, ties by entry id; rows with
        a similarity of MIN_SCORE or less are not near at all and are left out.

        BLAS scans every row fast, but may sum a row in another order than its neighbours, so equal
        rows can score a few ulps apart. The rows that could be in the top k (within twice that error
        of the k-th) are scored again with einsum, which sums every row alike, and ranked on those.
        """
        if not self.n or k <= 0:
            return []
        coarse = self.vectors[: self.n] @ query
        coarse[~mask] = -np.inf
        k = min(k, int(mask.sum()))
        if k == 0:
            return []
        kth = -np.partition(-coarse, k - 1)[k - 1] if k < self.n else -np.inf
        slack = 2 * self.dim * float(np.finfo(np.float32).eps)
        rows = np.flatnonzero(coarse >= max(kth, MIN_SCORE) - slack)
        exact = np.einsum("ij,j->i", self.vectors[rows], query)
        best = sorted((-float(score), self.ids[i]) for i, score in zip(rows, exact) if score > MIN_SCORE)[:k]
        return [(entry_id, -neg) for neg, entry_id in best]

    def lexical(self, query: str, k: int, mask: np.ndarray) -> list[tuple[bytes, float]]:
        """Rows whose content or tags hold every word of `query` (as a word or a word's start);
        score = the share of the row's words that match."""
        wanted = words(query)
        prefixes = [" " + w for w in wanted]
        if not wanted or k <= 0:
            return []
        hits = []
        for i in np.flatnonzero(mask):
            text = self._folded[i]
            if text is None:
                row = self.rows[i]
                text = self._folded[i] = " " + " ".join(words(row.content) + [w for t in row.tags for w in words(t)])
            if all(p in text for p in prefixes):
                found = text.split()
                score = sum(1 for f in found if f.startswith(tuple(wanted))) / max(len(found), 1)
                hits.append((-score, self.ids[i]))
        hits.sort()
        return [(entry_id, -neg) for neg, entry_id in hits[:k]]



def drop_rows(dbs: dict, txn, entry_ids: list[bytes]) -> None:
    """Delete the index rows of these entries now (an erasure: their text and vectors must not outlive it),
    journaled for other processes' matrices, and mark them changed so a later sync indexes what remains."""
    rows, journal, meta = dbs["memory.index"], dbs["memory.index.journal"], dbs["memory.index.meta"]
    raw = txn.get(b"gen", db=meta)
    gen = _U64.unpack(raw)[0] if raw else 0
    changes = []
    for entry_id in entry_ids:
        txn.put(entry_id, b"", db=dbs["memory.dirty"])
        if txn.delete(entry_id, db=rows):
            gen += 1
            changes.append((_U64.pack(gen), entry_id))
    if changes:
        txn.cursor(db=journal).putmulti(changes, append=True)
        txn.put(b"gen", _U64.pack(gen), db=meta)
