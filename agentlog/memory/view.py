"""The memory view in LMDB: folded in the append's or ingest's own transaction, rebuilt by replay.

Databases (see docs/memory.md):
  views.memory            entry id(16) -> Entry bytes; b"\\0version" -> reducer version
  views.memory.vectors    write event id(32) -> model length(2) model float32 LE vector: live embeddings
  views.memory.conflicts  entry id(16) -> b"": entries with a field in conflict
  views.memory.past       author(32) -> (author(32) epoch(4) seq(8))*: the causal past of its newest event
  memory.dirty            entry id(16) -> b"": entries the local search index has not caught up with
  memory.index*           the local search index (agentlog/memory/index.py)
  memory.reads            entry id(16) -> time in ms (8): when this device last read the entry (search decay)
The memory.* databases are this device's bookkeeping, not part of the view or its digest.
numpy is imported only where vectors are read, so commands that only write stay quick to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Iterable

from agentlog.log import payloads
from agentlog.memory import reducer as mr
from agentlog.memory.reducer import Entry, Fact

DBS = ("views.memory", "views.memory.vectors", "views.memory.conflicts", "views.memory.past", "memory.dirty",
       "memory.index", "memory.index.journal", "memory.index.meta", "memory.reads")
VERSION_KEY = b"\0version"
_VERSION = mr.VERSION.to_bytes(4, "big")
_POS = struct.Struct(">IQ")


def vector_bytes(model: str, vector) -> bytes:
    """The stored form of an embedding: its model's name, then float32 little-endian values."""
    name = model.encode()
    return len(name).to_bytes(2, "big") + name + struct.pack(f"<{len(vector)}f", *vector)


def vector_from(raw: bytes):
    """(model, float32 numpy vector) from the stored form."""
    import numpy as np

    n = int.from_bytes(raw[:2], "big")
    return bytes(raw[2 : 2 + n]).decode(), np.frombuffer(bytes(raw[2 + n :]), dtype="<f4")


def _pack_past(past: mr.Clock) -> bytes:
    return b"".join(a + _POS.pack(*past[a]) for a in sorted(past))


def unpack_past(raw) -> mr.Clock:
    raw = bytes(raw or b"")
    return {raw[i : i + 32]: _POS.unpack_from(raw, i + 32) for i in range(0, len(raw), 44)}


def _advance(past: mr.Clock, f) -> None:
    """Extend an author's causal past by its next event `f` (its clock and itself)."""
    for c in f.clock:
        if past.get(c.author, (-1, -1)) < (c.epoch, c.seq):
            past[c.author] = (c.epoch, c.seq)
    past[f.author] = (f.epoch, f.seq)


def _embeddings_of(fact: Fact) -> list:
    p = fact.payload
    if fact.kind == "memory.put":
        return [p.embedding] if p.embedding is not None else []
    if fact.kind == "memory.update":
        return [f.embedding for f in p.fields if f.embedding is not None]
    return []


def _without_vectors(p):
    """The payload with each embedding's vector dropped (the reducer keeps only the model's name)."""
    if isinstance(p, payloads.MemoryPut):
        return dataclasses.replace(p, embedding=payloads.Embedding(model=p.embedding.model, vector=()))
    return dataclasses.replace(p, fields=tuple(
        dataclasses.replace(f, embedding=payloads.Embedding(model=f.embedding.model, vector=()))
        if f.embedding is not None else f for f in p.fields))


class MemoryView:
    """Folds events into the memory view and reads it, inside the store's transactions."""

    def __init__(self, dbs: dict):
        self.entries, self.vectors = dbs["views.memory"], dbs["views.memory.vectors"]
        self.conflicts, self.past, self.dirty = (
            dbs["views.memory.conflicts"],
            dbs["views.memory.past"],
            dbs["memory.dirty"],
        )
        self.read_at = dbs["memory.reads"]

    # -- folding --------------------------------------------------------------------------

    def fold(self, txn, batch: list, kept: dict | None = None, notes: dict | None = None) -> set[bytes]:
        """Fold a batch of newly stored events (pref_view.Folded), in their causal order; returns entries touched.

        `kept`: event id -> its author's causal past at it, for events a compaction snapshot's state folded without
        their payload (docs/compaction.md, "Sealed scopes"): only their payload is folded now, as of then.
        `notes`: event ids whose causal past to record there as they are folded."""
        pasts: dict[bytes, mr.Clock] = {}
        facts = []
        for f in batch:
            if kept is not None and f.eid in kept:
                at = kept[f.eid]              # its clock's effects are in the state already
            else:
                past = pasts.get(f.author)
                if past is None:
                    past = pasts[f.author] = unpack_past(txn.get(f.author, db=self.past))
                _advance(past, f)
                at = past
                if notes is not None and f.eid in notes:
                    notes[f.eid] = dict(past)
            if f.kind in mr.KINDS and f.payload is not None:
                facts.append(Fact(f.author, f.epoch, f.seq, f.lamport, f.time_ms, f.scope, f.kind, f.eid, f.payload,
                                  dict(at)))
        for author, past in pasts.items():
            txn.put(author, _pack_past(past), db=self.past)
        if not facts:
            return set()
        vectors = {fact.eid: vector_bytes(e.model, e.vector) for fact in facts for e in _embeddings_of(fact)}
        entries: dict[bytes, Entry] = {}
        live_before: dict[bytes, set[bytes]] = {}

        def load(entry_id: bytes) -> Entry | None:
            raw = txn.get(entry_id, db=self.entries)
            entry = Entry.from_bytes(entry_id, bytes(raw)) if raw else None
            live_before[entry_id] = {w.eid for w in entry.embedding_writes()} if entry else set()
            return entry

        touched = mr.fold(entries, facts, load)
        for entry_id in sorted(touched):
            entry = entries[entry_id]
            live = {w.eid for w in entry.embedding_writes()}
            for gone in live_before[entry_id] - live:
                txn.delete(gone, db=self.vectors)
            for new in live - live_before[entry_id]:
                txn.put(new, vectors[new], db=self.vectors)
            self._save(txn, entry)
        return touched

    def _save(self, txn, entry: Entry) -> None:
        txn.put(entry.id, entry.to_bytes(), db=self.entries)
        if entry.conflicts:
            txn.put(entry.id, b"", db=self.conflicts)
        else:
            txn.delete(entry.id, db=self.conflicts)
        txn.put(entry.id, b"", db=self.dirty)

    # -- rebuilding ---------------------------------------------------------------------------

    def clear(self, txn) -> None:
        for db in (self.entries, self.vectors, self.conflicts, self.past, self.dirty):
            txn.drop(db, delete=False)

    def rebuilder(self, txn) -> Rebuild:
        self.clear(txn)
        return Rebuild(self, txn)

    def rebuild(self, txn, events: Iterable, progress: Callable[[int], None] | None = None) -> int:
        """Fold the whole log again from scratch; returns the events read."""
        r = self.rebuilder(txn)
        n = 0
        for n, f in enumerate(events, 1):
            r.add(f)
            if progress and n % 10000 == 0:
                progress(n)
        r.finish()
        return n

    # -- reading --------------------------------------------------------------------------------

    def version(self, txn) -> int:
        return int.from_bytes(txn.get(VERSION_KEY, db=self.entries) or b"\0", "big")

    def current(self, txn) -> bool:
        return txn.get(VERSION_KEY, db=self.entries) == _VERSION

    def entry(self, txn, entry_id: bytes) -> Entry | None:
        raw = txn.get(entry_id, db=self.entries) if len(entry_id) == mr.ENTRY_ID_LEN else None
        return Entry.from_bytes(entry_id, bytes(raw)) if raw else None

    def vector(self, txn, write_eid: bytes):
        raw = txn.get(write_eid, db=self.vectors)
        return vector_from(raw) if raw else None

    def entry_ids(self, txn) -> list[bytes]:
        with txn.cursor(db=self.entries) as cur:
            return [bytes(k) for k in cur.iternext(keys=True, values=False) if len(k) == mr.ENTRY_ID_LEN]

    def reads(self, txn, entry_ids: Iterable[bytes]) -> dict[bytes, int]:
        """When this device last read each entry (ms), for those it has read."""
        found = ((i, txn.get(i, db=self.read_at)) for i in entry_ids)
        return {i: int.from_bytes(raw, "big") for i, raw in found if raw}

    def note_read(self, txn, entry_id: bytes, time_ms: int) -> None:
        """Record a read of the entry here (this device's bookkeeping: never in the log, nor in the digest)."""
        txn.put(entry_id, max(0, time_ms).to_bytes(8, "big"), db=self.read_at)

    def conflicted(self, txn) -> list[bytes]:
        with txn.cursor(db=self.conflicts) as cur:
            return [bytes(k) for k in cur.iternext(keys=True, values=False)]

    def digest(self, txn) -> bytes:
        """BLAKE2b-256 of the view's canonical bytes: every key and value of its databases, in order."""
        h, length = hashlib.blake2b(digest_size=32), struct.Struct(">I").pack
        for db in (self.entries, self.vectors, self.conflicts, self.past):
            h.update(b"\xff")
            with txn.cursor(db=db) as cur:
                h.update(b"".join([length(len(k)) + k + length(len(v)) + v for k, v in cur.iternext()]))
        return h.digest()


class Rebuild:
    """A from-scratch fold: takes every stored event (each author's in seq order), folds in lamport order."""

    def __init__(self, view: MemoryView, txn):
        self.view, self.txn = view, txn
        self.pasts: dict[bytes, mr.Clock] = {}
        self.facts: list[Fact] = []
        self.vectors: dict[bytes, bytes] = {}

    def add(self, f) -> None:
        """Take the next stored event; its embedding vectors are kept as bytes, not as Python floats."""
        past = self.pasts.setdefault(f.author, {})
        _advance(past, f)
        if f.kind in mr.KINDS and f.payload is not None:
            fact = Fact(f.author, f.epoch, f.seq, f.lamport, f.time_ms, f.scope, f.kind, f.eid, f.payload, dict(past))
            embeddings = _embeddings_of(fact)
            if embeddings:
                for e in embeddings:
                    self.vectors[fact.eid] = vector_bytes(e.model, e.vector)
                fact = fact._replace(payload=_without_vectors(fact.payload))
            self.facts.append(fact)

    def add_all(self, events: Iterable) -> None:
        """add() each event; an event with no clock entries that writes no memory only moves its author's
        own position in the author's past, done here without the call."""
        pasts, kinds, add = self.pasts, mr.KINDS, self.add
        for f in events:
            if f.clock or f.kind in kinds:
                add(f)
                continue
            past = pasts.get(f.author)
            if past is None:
                past = pasts[f.author] = {}
            past[f.author] = (f.epoch, f.seq)

    def finish(self) -> None:
        view, txn = self.view, self.txn
        self.facts.sort(key=lambda f: (f.lamport, f.author, f.epoch, f.seq, f.eid))
        entries: dict[bytes, Entry] = {}
        mr.fold(entries, self.facts, lambda _: None)
        live = sorted({w.eid for e in entries.values() for w in e.embedding_writes()})
        txn.cursor(db=view.vectors).putmulti([(eid, self.vectors[eid]) for eid in live], append=True)
        ids = sorted(entries)
        txn.cursor(db=view.entries).putmulti([(i, entries[i].to_bytes()) for i in ids], append=True)
        txn.cursor(db=view.conflicts).putmulti([(i, b"") for i in ids if entries[i].conflicts], append=True)
        txn.cursor(db=view.dirty).putmulti([(i, b"") for i in ids], append=True)
        txn.cursor(db=view.past).putmulti(sorted((a, _pack_past(p)) for a, p in self.pasts.items()), append=True)
        txn.put(VERSION_KEY, _VERSION, db=view.entries)
