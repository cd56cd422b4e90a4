"""The local search index over memory entries: one unit vector per visible entry, from this home's embedder.

Not part of the memory view (another device may embed with another model), so not in its
digest. It lives in LMDB and survives restart; the view marks what changed (memory.dirty)
in the same transaction as the fold, and `sync` embeds those entries before a search.
A process keeps the matrix in memory and patches it from the journal of changed slots.

Each indexed entry holds a slot; slots are stored BLOCK to a block, so a process loads the whole
index with one read per block (a few numpy views each) instead of unpacking a row per entry.

Databases (opened by the store, see memory_view.DBS):
  memory.index          entry id(16) -> slot(4): where the entry's row is
  memory.index.journal  change number(8) -> entry id(16) slot(4): what changed, for other processes' copies
  memory.index.meta     b"model", b"dim", b"gen" (last change number), b"floor" (oldest journal entry kept),
                        b"layout", b"slots" (slots ever used), b"free" (slots to reuse, 4 bytes each),
                        b"\\0" block number(4) -> block (see `Block`), and BM25's postings (agentlog.memory.lexical)
A row is the entry's type, how it was indexed (STORED, EMBEDDED here, REEMBEDDED from another model, or
EXCLUDED with no vector), scope, tags, search text (content and merged entries' text), float32 vector
and BM25 length (its terms); an empty slot is all zeros, how EMPTY.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np

from agentlog.memory import lexical
from agentlog.memory import reducer as mr
from agentlog.memory.embedding import Embedder, normalized
from agentlog.memory.reducer import Entry

JOURNAL_KEEP = 100_000
BLOCK = 128                        # slots per stored block: a change rewrites one block of BLOCK rows
LAYOUT = b"blocks-2"
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_BLOCK_KEY = b"\0"
STORED, EMBEDDED, REEMBEDDED, EXCLUDED = range(4)
EMPTY = 255
MIN_SCORE = 1e-4                   # a cosine at or below this is no similarity at all
REST = 1e-3                        # a by-dimension scan skips the query's smallest dims up to this much of its length


def _pack_text(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(4, "big") + raw


def pack_text(entry: Entry) -> bytes:
    """A row's texts: scope, tags (joined by \\x1f), search text (content and merged entries' text), each
    length-prefixed."""
    return _pack_text(entry.scope) + _pack_text("\x1f".join(entry.tag_set)) + _pack_text(entry.search_text())


@dataclass(slots=True)
class Row:
    type: str
    how: int
    scope: str
    tags: tuple[str, ...]
    content: str
    vector: np.ndarray | None


def unpack_text(kind: int, how: int, raw: bytes) -> Row:
    """The Row (without its vector) of a slot's type, how and texts."""
    at, texts = 0, []
    for _ in range(3):
        n = int.from_bytes(raw[at : at + 4], "big")
        texts.append(raw[at + 4 : at + 4 + n].decode())
        at += 4 + n
    tags = tuple(texts[1].split("\x1f")) if texts[1] else ()
    return Row(mr.TYPES[kind], how, texts[0], tags, texts[2], None)


class Block:
    """BLOCK slots as stored: ids(16 each) how(1 each) type(1 each) vectors(dim float32 LE each)
    text ends(4 LE each, cumulative) BM25 lengths(4 LE each) texts. Arrays are views of the stored bytes
    until patched."""

    def __init__(self, dim: int, raw: bytes | memoryview | None = None):
        self.dim = dim
        if raw is None:
            self.ids = np.zeros((BLOCK, 16), dtype=np.uint8)
            self.how = np.full(BLOCK, EMPTY, dtype=np.uint8)
            self.kind = np.full(BLOCK, EMPTY, dtype=np.uint8)
            self.vectors = np.zeros((BLOCK, dim), dtype="<f4")
            self.ends = np.zeros(BLOCK, dtype="<u4")
            self.lengths = np.zeros(BLOCK, dtype="<u4")
            self.texts = b""
            return
        at = 0
        fields = []
        for dtype, count in ((np.uint8, 16 * BLOCK), (np.uint8, BLOCK), (np.uint8, BLOCK), ("<f4", dim * BLOCK),
                             ("<u4", BLOCK), ("<u4", BLOCK)):
            fields.append(np.frombuffer(raw, dtype=dtype, count=count, offset=at))
            at += fields[-1].nbytes
        self.ids, self.how, self.kind = fields[0].reshape(BLOCK, 16), fields[1], fields[2]
        self.vectors, self.ends, self.lengths = fields[3].reshape(BLOCK, dim), fields[4], fields[5]
        self.texts = bytes(raw[at:])

    def text(self, j: int) -> bytes:
        return self.texts[(self.ends[j - 1] if j else 0) : self.ends[j]]

    def row(self, j: int) -> Row | None:
        """Slot j's Row without its vector, or None when empty."""
        return None if self.how[j] == EMPTY else unpack_text(int(self.kind[j]), int(self.how[j]), self.text(j))

    def patch(self, changes: dict[int, tuple]) -> bytes:
        """The block's bytes with slots replaced: j -> (entry id, how, type index, vector, texts, BM25
        length), or None to empty it."""
        ids, how, kind, vectors = self.ids.copy(), self.how.copy(), self.kind.copy(), self.vectors.copy()
        lengths = self.lengths.copy()
        texts = [self.text(j) for j in range(BLOCK)]
        for j, change in changes.items():
            if change is None:
                ids[j], how[j], kind[j], vectors[j], texts[j], lengths[j] = 0, EMPTY, EMPTY, 0, b"", 0
            else:
                ids[j] = np.frombuffer(change[0], dtype=np.uint8)
                how[j], kind[j], texts[j], lengths[j] = change[1], change[2], change[4], change[5]
                vectors[j] = change[3] if change[3] is not None else 0
        ends = np.cumsum([len(t) for t in texts], dtype=np.int64).astype("<u4")
        return b"".join((ids.tobytes(), how.tobytes(), kind.tobytes(), vectors.astype("<f4").tobytes(),
                         ends.tobytes(), lengths.astype("<u4").tobytes(), *texts))


def stored_vectors(raw: bytes | memoryview, dim: int) -> np.ndarray:
    """A stored block's vectors (BLOCK x dim), a view of its bytes."""
    return np.frombuffer(raw, dtype="<f4", count=dim * BLOCK, offset=18 * BLOCK).reshape(BLOCK, dim)


def zeros(rows: int, dim: int) -> np.ndarray:
    """A zeroed float32 matrix; a large one in anonymous pages populated at once. numpy's own allocation asks
    for huge pages, and the kernel's compaction for them stalled a 150 MB allocation 0.6-2 s on a loaded
    machine, against 0.15-0.37 s for populated small pages."""
    size = rows * dim * 4
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if size < 1 << 24 or not populate:
        return np.zeros((rows, dim), dtype=np.float32)
    pages = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return np.frombuffer(pages, dtype=np.float32).reshape(rows, dim)


def kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest of `values` (k at most their number): partitioned among those at or above a guess
    from every 8th value when at least k are, which then hold the k largest (a partition of 100,000
    scores took 0.4 ms)."""
    if len(values) >= 64 * k:
        sample = values[::8]
        rank = len(sample) - (2 * k // 8 + 2)
        top = values[values >= np.partition(sample, rank)[rank]]
        if len(top) >= k:
            return np.partition(top, len(top) - k)[len(top) - k]
    return np.partition(values, len(values) - k)[len(values) - k]


def block_key(number: int) -> bytes:
    return _BLOCK_KEY + _U32.pack(number)


def _get_u64(txn, db, key: bytes, default: int = 0) -> int:
    raw = txn.get(key, db=db)
    return _U64.unpack(raw)[0] if raw else default


class Slots:
    """The index's rows within one write transaction: changes gathered, then written a block at a time."""

    def __init__(self, dbs: dict, txn, dim: int):
        self.rows, self.journal, self.meta = dbs["memory.index"], dbs["memory.index.journal"], dbs["memory.index.meta"]
        self.txn, self.dim = txn, dim
        self.used = _get_u64(txn, self.meta, b"slots")
        free = txn.get(b"free", db=self.meta) or b""
        self.free = [_U32.unpack_from(free, at)[0] for at in range(0, len(free), 4)]
        self.changes: dict[int, dict[int, tuple | None]] = {}      # block -> slot in block -> row or None
        self.terms: dict[int, Counter] = {}                        # slot -> the terms it holds now
        self.journal_rows: list[tuple[bytes, bytes]] = []
        self.gen = _get_u64(txn, self.meta, b"gen")

    def _changed(self, entry_id: bytes, slot: int, row: tuple | None, terms: Counter | None = None) -> None:
        self.changes.setdefault(slot // BLOCK, {})[slot % BLOCK] = row
        self.terms[slot] = terms or Counter()
        self.gen += 1
        self.journal_rows.append((_U64.pack(self.gen), entry_id + _U32.pack(slot)))

    def drop(self, entry_id: bytes) -> None:
        """Empty the entry's slot, if it has one."""
        raw = self.txn.get(entry_id, db=self.rows)
        if raw is None:
            return
        slot = _U32.unpack(raw)[0]
        self.txn.delete(entry_id, db=self.rows)
        self.free.append(slot)
        self._changed(entry_id, slot, None)

    def put(self, entry: Entry, how: int, vector: np.ndarray | None) -> None:
        raw = self.txn.get(entry.id, db=self.rows)
        if raw is not None:
            slot = _U32.unpack(raw)[0]
        else:
            slot = self.free.pop() if self.free else self.used
            self.used = max(self.used, slot + 1)
            self.txn.put(entry.id, _U32.pack(slot), db=self.rows)
        row = Row(entry.value("type"), how, entry.scope, entry.tag_set, entry.search_text(), None)
        terms = lexical.counts(row)
        self._changed(entry.id, slot, (entry.id, how, mr.TYPES.index(row.type), vector, pack_text(entry),
                                       sum(terms.values())), terms)

    def write(self) -> None:
        """Store the changed blocks, their postings, the journal and the counters."""
        txn, meta = self.txn, self.meta
        terms = {}
        for number, changes in sorted(self.changes.items()):
            raw = txn.get(block_key(number), db=meta)
            block = Block(self.dim, bytes(raw) if raw else None)
            for j in changes:
                slot = number * BLOCK + j
                terms[slot] = (lexical.counts(block.row(j)), self.terms[slot])
            txn.put(block_key(number), block.patch(changes), db=meta)
        lexical.write_postings(txn, meta, terms)
        if self.journal_rows:
            txn.cursor(db=self.journal).putmulti(self.journal_rows, append=True)
        txn.put(b"gen", _U64.pack(self.gen), db=meta)
        txn.put(b"slots", _U64.pack(self.used), db=meta)
        txn.put(b"free", b"".join(_U32.pack(s) for s in sorted(self.free, reverse=True)), db=meta)


class MemoryIndex:
    """The index's databases, for one embedder; `Matrix` is a process's in-memory copy."""

    def __init__(self, dbs: dict, embedder: Embedder):
        self.dbs = dbs
        self.rows, self.journal, self.meta = dbs["memory.index"], dbs["memory.index.journal"], dbs["memory.index.meta"]
        self.dirty = dbs["memory.dirty"]
        self.embedder = embedder

    def gen(self, txn) -> int:
        return _get_u64(txn, self.meta, b"gen")

    def model(self, txn) -> str:
        return bytes(txn.get(b"model", db=self.meta) or b"").decode()

    def current(self, txn) -> bool:
        """Whether the stored rows are of this embedder (its name and its vectors' size) and this layout."""
        meta = self.meta
        dim = txn.get(b"dim", db=meta)
        return (txn.get(b"model", db=meta) == self.embedder.name.encode() and txn.get(b"layout", db=meta) == LAYOUT
                and dim is not None and int.from_bytes(dim, "big") == self.embedder.dim)

    def needs_sync(self, txn) -> bool:
        return not self.current(txn) or txn.stat(self.dirty)["entries"] > 0

    def pending(self, txn) -> list[bytes]:
        """The entries the view marked changed since the index last caught up."""
        with txn.cursor(db=self.dirty) as cur:
            return [bytes(k) for k in cur.iternext(keys=True, values=False)]

    def sync(self, txn, view, made: dict | None = None) -> None:
        """Index every entry the view marked changed (all of them after a change of model or layout); write txn.
        `made`: rows a search made of changed entries (agentlog.memory.pending), stored as made."""
        if not self.current(txn):
            self._clear(txn)
            ids = view.entry_ids(txn)
        else:
            ids = self.pending(txn)
        slots = Slots(self.dbs, txn, self.embedder.dim)
        entries = [(entry_id, view.entry(txn, entry_id)) for entry_id in ids]
        for entry_id, entry in entries:
            if entry is None or not entry.visible:
                slots.drop(entry_id)
        visible = [e for _, e in entries if e is not None and e.visible]
        for entry, how, vector in self.rows_of(txn, view, visible, made or {}):
            slots.put(entry, how, vector)
        slots.write()
        txn.drop(self.dirty, delete=False)
        self._trim(txn, slots.gen)

    def rows_of(self, txn, view, entries: list[Entry], made: dict) -> list[list]:
        """[entry, how, unit vector or None] of each visible entry, as the index stores it: its stored embedding
        when of this model and size, else embedded here (a search of entries not yet indexed uses it too).
        `made`: entry id -> (its stored bytes, pending row) of rows made already, taken while the entry is so."""
        indexed: list[list] = []          # [entry, how, vector]
        fresh: list[list] = []            # the rows not made already
        for entry in entries:
            known = made.get(entry.id)
            if known is not None and known[1] is not None and known[0] == txn.get(entry.id, db=view.entries):
                indexed.append([entry, known[1].row.how, known[1].row.vector])
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
            fresh.append(indexed[-1])
        stored = [row for row in fresh if row[1] == STORED]
        if stored:
            for row, vec in zip(stored, normalized(np.stack([row[2] for row in stored]))):
                row[2] = vec
        pending = [row for row in fresh if row[1] in (EMBEDDED, REEMBEDDED)]
        if pending:
            for row, vec in zip(pending, self.embedder.embed([row[0].search_text() for row in pending])):
                row[2] = vec
        return indexed

    def _clear(self, txn) -> None:
        """Forget every row: the model or the layout changed. Other processes reload in full (the floor moves)."""
        with txn.cursor(db=self.meta) as cur:
            found = cur.set_range(_BLOCK_KEY)
            while found and cur.key()[:1] == _BLOCK_KEY:
                found = cur.delete()
        lexical.clear_postings(txn, self.meta)
        for db in (self.rows, self.journal):
            txn.drop(db, delete=False)
        for key in (b"slots", b"free"):
            txn.delete(key, db=self.meta)
        txn.put(b"model", self.embedder.name.encode(), db=self.meta)
        txn.put(b"dim", self.embedder.dim.to_bytes(4, "big"), db=self.meta)
        txn.put(b"layout", LAYOUT, db=self.meta)
        txn.put(b"floor", _U64.pack(self.gen(txn) + 1), db=self.meta)

    def _trim(self, txn, gen: int) -> None:
        floor = _get_u64(txn, self.meta, b"floor", 1)
        if gen - floor < 2 * JOURNAL_KEEP:
            return
        new_floor = gen - JOURNAL_KEEP
        with txn.cursor(db=self.journal) as cur:
            while cur.first() and _U64.unpack(cur.key())[0] < new_floor:
                cur.delete()
        txn.put(b"floor", _U64.pack(new_floor), db=self.meta)

    def stored(self, txn) -> dict[bytes, Row]:
        """Every stored row by entry id, with its vector (for checks: a search reads blocks whole)."""
        dim, blocks, out = int.from_bytes(txn.get(b"dim", db=self.meta) or b"", "big"), {}, {}
        with txn.cursor(db=self.rows) as cur:
            for entry_id, raw in cur:
                number, j = divmod(_U32.unpack(raw)[0], BLOCK)
                if number not in blocks:
                    blocks[number] = Block(dim, bytes(txn.get(block_key(number), db=self.meta)))
                row = out[bytes(entry_id)] = blocks[number].row(j)
                row.vector = blocks[number].vectors[j].copy()
        return out

    def changes(self, txn, since: int) -> list[tuple[bytes, int]] | None:
        """(entry id, slot) of each change after change number `since`, or None when the journal no longer
        reaches back."""
        if _get_u64(txn, self.meta, b"floor") > since + 1:
            return None
        with txn.cursor(db=self.journal) as cur:
            if not cur.set_range(_U64.pack(since + 1)):
                return []
            return [(bytes(value[:16]), _U32.unpack_from(value, 16)[0])
                    for value in cur.iternext(keys=False, values=True)]


class Matrix:
    """A process's in-memory copy of the index: a float32 matrix plus per-row filters, patched by change number.

    Row i is slot i. A full load copies each stored block's arrays in; the rows' texts stay packed per block
    until a filter by tag or scope, or near-duplicate pairs (agentlog.memory.tidy), first needs them (BM25
    reads its stored postings). `by_dim` keeps the vectors a dimension at a time (column-major), for an
    embedder whose queries have few nonzero dims: a search then reads only those (see `semantic`)."""

    def __init__(self, dim: int, by_dim: bool = False):
        self.dim = dim
        self.by_dim = by_dim
        self.gen = -1
        self.model = ""
        self.reset()

    def reset(self, vectors: bool = True) -> None:
        self.has_vectors = vectors               # False: the vectors stay in the stored blocks (see `semantic`)
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.reach = 0.0                                        # at least the longest row's length (by_dim)
        self.n = 0
        self.alive = np.zeros(0, dtype=bool)
        self.how = np.zeros(0, dtype=np.uint8)                  # per row: STORED, EMBEDDED, ...; EMPTY when empty
        self.kind = np.zeros(0, dtype=np.uint8)                 # per row: index in reducer.TYPES; EMPTY when empty
        self._id = np.zeros((0, 16), dtype=np.uint8)
        self.lengths = np.zeros(0, dtype=np.uint32)            # per row: its BM25 length (terms)
        self._texts: dict[int, tuple[np.ndarray, bytes]] = {}  # block -> (text ends, texts)
        self._rows: list[Row | None] | None = None
        self._masks: dict[tuple, np.ndarray] = {}

    def refresh(self, txn, index: MemoryIndex, vectors: bool = True) -> None:
        """Bring this copy up to the index's current change number. Without `vectors`, a first load leaves
        the vectors in the stored blocks: a process that searches once (the CLI) scans them in place, in its
        read transaction, instead of copying them all first; a later refresh with them loads them whole."""
        gen = index.gen(txn)
        model = index.model(txn)
        self._meta = index.meta
        if gen == self.gen and model == self.model and self.has_vectors >= vectors:
            return
        changed = index.changes(txn, self.gen) if model == self.model and self.gen >= 0 else None
        if changed is None or self.has_vectors < vectors:
            self.reset(vectors)
            self._grow(_get_u64(txn, index.meta, b"slots"))
            with txn.cursor(db=index.meta) as cur:
                found = cur.set_range(_BLOCK_KEY)
                while found and cur.key()[:1] == _BLOCK_KEY:
                    self._set(_U32.unpack_from(cur.key(), 1)[0], Block(self.dim, cur.value()))
                    found = cur.next()
        else:
            by_block: dict[int, set[int]] = {}
            for _, slot in changed:
                by_block.setdefault(slot // BLOCK, set()).add(slot % BLOCK)
            for number, slots in sorted(by_block.items()):
                raw = txn.get(block_key(number), db=index.meta)
                self._set(number, Block(self.dim, raw), sorted(slots))
        self.gen, self.model = gen, model
        self._masks.clear()

    def _grow(self, need: int) -> None:
        """Room for `need` rows and an eighth more: a new row rarely copies the whole matrix (doubling a
        150 MB one stalled a search for a second on a loaded machine)."""
        if need <= len(self.how):
            return
        size = max(need + need // 8, 64)
        if self.has_vectors:
            vectors = zeros(self.dim, size).T if self.by_dim else zeros(size, self.dim)
            vectors[: self.n] = self.vectors[: self.n]
            self.vectors = vectors
        for name, fill, shape in (("alive", False, ()), ("how", EMPTY, ()), ("kind", EMPTY, ()), ("_id", 0, (16,)),
                                   ("lengths", 0, ())):
            old = getattr(self, name)
            new = np.full((size, *shape), fill, dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def _set(self, number: int, block: Block, slots: list[int] | None = None) -> None:
        """Copy stored block `number` in: these slots of it (indexes within the block), or all of them."""
        lo = number * BLOCK
        filled = np.flatnonzero(block.how != EMPTY) if slots is None else \
            [j for j in slots if block.how[j] != EMPTY]
        top = lo + (int(filled[-1]) + 1 if len(filled) else 0)
        self._grow(top)
        self.n = max(self.n, top)
        self._texts[number] = (block.ends.copy(), block.texts)
        if slots is None:
            end = max(lo, min(lo + BLOCK, len(self.how)))
            js, rows = slice(0, end - lo), slice(lo, end)
        else:
            js = np.array([j for j in slots if lo + j < len(self.how)], dtype=np.intp)
            rows = lo + js
        if self.has_vectors:
            self.vectors[rows] = block.vectors[js]
            if self.by_dim and len(filled):
                given = block.vectors[js]
                self.reach = max(self.reach, float(np.sqrt(np.einsum("ij,ij->i", given, given).max())))
        self.how[rows], self.kind[rows], self._id[rows] = block.how[js], block.kind[js], block.ids[js]
        self.lengths[rows] = block.lengths[js]
        self.alive[rows] = (block.how[js] != EMPTY) & (block.how[js] != EXCLUDED)
        if self._rows is not None:
            self._rows.extend([None] * (self.n - len(self._rows)))
            for i in range(lo, min(lo + BLOCK, self.n)) if slots is None else rows.tolist():
                self._rows[i] = self._row(i)

    def _row(self, i: int) -> Row | None:
        if self.how[i] == EMPTY:
            return None
        number, j = divmod(i, BLOCK)
        ends, texts = self._texts[number]
        return unpack_text(int(self.kind[i]), int(self.how[i]), texts[(ends[j - 1] if j else 0) : ends[j]])

    def id_at(self, i: int) -> bytes:
        return self._id[i].tobytes()

    @property
    def rows(self) -> list[Row | None]:
        """Each row's type, how, scope, tags and content (None when empty), unpacked on first use."""
        if self._rows is None:
            self._rows = [self._row(i) for i in range(self.n)]
        return self._rows

    @property
    def ids(self) -> list[bytes | None]:
        """Each row's entry id, None when empty."""
        return [self.id_at(i) if self.how[i] != EMPTY else None for i in range(self.n)]

    @property
    def row_of(self) -> dict[bytes, int]:
        """Entry id -> row, of the rows in use."""
        return {self.id_at(i): i for i in np.flatnonzero(self.how[: self.n] != EMPTY).tolist()}

    # -- querying --

    def mask(self, type: str | None, tag: str | None, scope: str | None, vectors: bool = True) -> np.ndarray:
        """Rows passing the filters, and holding a usable vector when `vectors` (cached until the next change)."""
        key = (type, tag, scope, vectors)
        found = self._masks.get(key)
        if found is None:
            found = self.alive[: self.n].copy() if vectors else self.how[: self.n] != EMPTY
            if type is not None:
                found &= self.kind[: self.n] == (mr.TYPES.index(type) if type in mr.TYPES else EMPTY - 1)
            if tag is not None or scope is not None:
                keep = [r is not None and (scope is None or r.scope == scope) and (tag is None or tag in r.tags)
                        for r in self.rows]
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
        indexed = self.how[: self.n]
        return [int(np.count_nonzero(mask & (indexed == how))) for how in hows]

    def semantic(self, query: np.ndarray, k: int, mask: np.ndarray, txn=None) -> list[tuple[bytes, float]]:
        """The k rows nearest `query` (a unit vector) by cosine, best first, ties by entry id; rows with
        a similarity of MIN_SCORE or less are not near at all and are left out. Without vectors in memory,
        it reads the stored blocks in `txn` (the read transaction this copy was refreshed in).

        einsum scans the rows on one thread, each row summed alike (BLAS on all cores was slower on a
        loaded machine, and may sum a row in another order than its neighbours); a filter that keeps
        few rows scans only those. The rows that could be in the top k (within twice a sum's rounding
        error of the k-th) are scored again in one contiguous copy and ranked on those scores.
        By dimension, only the query's largest dims are read (`_by_dim`), and the rows that could be in
        the top k are those within twice that scan's error bound of the k-th: the ranking is the same.
        """
        query = np.asarray(query, dtype=np.float32)
        live = int(np.count_nonzero(mask)) if self.n else 0
        k = min(k, live)
        if k <= 0 or not query.any():              # a query of no words is near nothing
            return []
        slack = 2 * self.dim * float(np.finfo(np.float32).eps)
        if not self.has_vectors:
            picked, coarse = None, self._scan(txn, query)
            coarse[~mask] = -np.inf
        elif self.by_dim:
            coarse, spread = self._by_dim(query)
            picked = np.flatnonzero(mask) if live < self.n else None    # partition is slow over many -inf
            coarse = coarse[picked] if picked is not None else coarse
            slack = 2 * (spread + slack * max(1.0, self.reach))
        elif live * 4 < self.n:
            picked = np.flatnonzero(mask)
            coarse = np.einsum("ij,j->i", self.vectors[picked], query)
        else:
            picked = None
            coarse = np.einsum("ij,j->i", self.vectors[: self.n], query)
            coarse[~mask] = -np.inf
        kth = kth_largest(coarse, k) if k < len(coarse) else -np.inf
        rows = np.flatnonzero(coarse >= max(kth, MIN_SCORE) - slack)
        if picked is not None:
            rows = picked[rows]
        chosen = np.ascontiguousarray(self.vectors[rows]) if self.has_vectors else self._stored(txn, rows)
        exact = np.einsum("ij,j->i", chosen, query)
        best = sorted((-float(score), self.id_at(i)) for i, score in zip(rows.tolist(), exact) if score > MIN_SCORE)
        return [(entry_id, -neg) for neg, entry_id in best[:k]]

    def _by_dim(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """Each row's score over the query's largest dims, all but REST of its length (its nonzero ones when
        few), and how far that may lie from the row's cosine: the rest of the query's length times the
        longest row's (Cauchy-Schwarz). 16 dims at a time, each a contiguous copy of rows."""
        weight = np.abs(query.astype(np.float64))
        order = np.argsort(-weight, kind="stable")
        rest = np.sqrt(np.cumsum(np.square(weight[order])[::-1])[::-1])
        used = int(np.count_nonzero(rest > REST))
        left = float(rest[used]) if used < self.dim else 0.0
        columns = self.vectors[: self.n].T
        if 2 * used > self.dim:                             # a dense query: every dim, read in place
            return np.einsum("ji,j->i", columns, query), 0.0
        dims = np.sort(order[:used])
        coarse = np.zeros(self.n, dtype=np.float32)
        for at in range(0, used, 16):
            some = dims[at : at + 16]
            coarse += np.einsum("ji,j->i", columns[some], query[some])
        return coarse, left * self.reach * (1 + 1e-6)

    def _scan(self, txn, query: np.ndarray) -> np.ndarray:
        """Every row's cosine with `query`, each stored block's vectors scanned where the map holds them."""
        coarse = np.full(self.n, -np.inf, dtype=np.float32)
        with txn.cursor(db=self._meta) as cur:
            found = cur.set_range(_BLOCK_KEY)
            while found and cur.key()[:1] == _BLOCK_KEY:
                lo = _U32.unpack_from(cur.key(), 1)[0] * BLOCK
                if lo < self.n:
                    vectors = stored_vectors(cur.value(), self.dim)[: self.n - lo]
                    coarse[lo : lo + len(vectors)] = np.einsum("ij,j->i", vectors, query)
                found = cur.next()
        return coarse

    def _stored(self, txn, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of these rows, copied into one contiguous array."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        blocks: dict[int, np.ndarray] = {}
        for at, i in enumerate(rows.tolist()):
            number, j = divmod(i, BLOCK)
            if number not in blocks:
                blocks[number] = stored_vectors(txn.get(block_key(number), db=self._meta), self.dim)
            out[at] = blocks[number][j]
        return out


def drop_rows(dbs: dict, txn, entry_ids: list[bytes]) -> None:
    """Empty the index slots of these entries now (an erasure: their text and vectors must not outlive it),
    journaled for other processes' matrices, and mark them changed so a later sync indexes what remains."""
    meta = dbs["memory.index.meta"]
    raw = txn.get(b"dim", db=meta)
    slots = Slots(dbs, txn, int.from_bytes(raw, "big") if raw else 0)
    current = txn.get(b"layout", db=meta) == LAYOUT
    for entry_id in entry_ids:
        txn.put(entry_id, b"", db=dbs["memory.dirty"])
        if current:
            slots.drop(entry_id)
        else:                                   # rows of an older layout: the next sync clears the rest
            txn.delete(entry_id, db=dbs["memory.index"])
    if slots.changes:
        slots.write()
