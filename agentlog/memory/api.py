"""The memory API: put, update, delete and resolve entries; get, list and search what the agent knows.

`store.memory` (a `Memory`) checks every argument before anything is written
(InvalidValueError, naming what and where). The merge rules are in docs/memory.md.
An entry id is its 16 bytes or the 32 hex digits the CLI prints.
Embeddings are optional on write: without one, this home's embedder embeds the content
for its own search index, so the log does not carry vectors every device can recompute.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentlog.errors import InvalidValueError, NotFoundError, StoreError
from agentlog.ids import id_bytes
from agentlog.log import payloads
from agentlog.log.event import MAX_SCOPE_LEN
from agentlog.memory import pending, tidy
from agentlog.memory import reducer as mr
from agentlog.memory.embedding import DEFAULT_EMBEDDER, MODEL2VEC_PREFIX, Embedder, check_vector, embedder_for
from agentlog.memory.index import EXCLUDED, REEMBEDDED, Matrix, MemoryIndex
from agentlog.memory.lexical import query_terms
from agentlog.memory.lexical import search as bm25
from agentlog.memory.ranking import POOL, fuse, ordered
from agentlog.memory.ranking import decay as decay_factor
from agentlog.memory.reducer import Entry, Write

EMBEDDER_META = "embedder"                   # meta key: the embedder this home's search index uses
MODEL_CACHE = "models"                       # beside the store: embedding models fetched once
MAX_K = 1000
RANKINGS = ("hybrid", "lexical", "vector")
MIN_ID_PREFIX = 4                            # hex digits
INDEXER = "indexer"                          # memory_cache key: the thread indexing changed entries durably
INDEX_DELAY = 1.0                            # seconds a search's changed entries wait to be indexed, batched


@dataclass(frozen=True, slots=True)
class Candidate:
    """One standing value of a field (the shown one or a concurrent one that lost), and who wrote it."""

    value: Any
    author: bytes
    lamport: int
    time_ms: int
    event: bytes

    @classmethod
    def of(cls, w: Write, value: Any = None) -> Candidate:
        return cls(w.value if value is None else value, w.author, w.lamport, w.time_ms, w.eid)


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """What this device knows about one entry. `conflicts` maps a field to all its standing values, shown one first."""

    id: bytes
    type: str
    content: str
    tags: tuple[str, ...]
    confidence: float
    scope: str
    embedding_model: str | None
    author: bytes
    created_ms: int
    updated_ms: int
    deleted: tuple[Candidate, ...] = ()
    conflicts: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    merged_into: bytes | None = None

    @property
    def is_deleted(self) -> bool:
        return bool(self.deleted)

    def to_json(self, names: dict[bytes, str] | None = None) -> dict:
        names = names or {}

        def who(author: bytes) -> str:
            return names.get(author, author.hex()[:16])

        def candidate(c: Candidate) -> dict:
            return {"value": c.value, "device": who(c.author), "author": c.author.hex(), "lamport": c.lamport,
                    "time_ms": c.time_ms, "event": c.event.hex()}
        gone = self.is_deleted
        return {
            "id": self.id.hex(),
            "type": None if gone else self.type,
            "content": None if gone else self.content,
            "tags": list(self.tags),
            "confidence": None if gone else self.confidence,
            "scope": self.scope,
            "embedding_model": self.embedding_model,
            "device": who(self.author),
            "author": self.author.hex(),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "deleted": [candidate(c) for c in self.deleted],
            "conflicts": {f: [candidate(c) for c in cs] for f, cs in self.conflicts.items()},
            "merged_into": self.merged_into.hex() if self.merged_into else None,
        }


def _shown(name: str, w: Write) -> Any:
    return w.value / 10000 if name == "confidence" else w.value


def entry_of(e: Entry) -> MemoryEntry:
    origin = e.origin
    return MemoryEntry(
        id=e.id, type=e.value("type", ""), content=e.value("content", ""), tags=e.tag_set,
        confidence=e.value("confidence", 0) / 10000, scope=e.scope, embedding_model=e.value("embedding"),
        author=origin.author if origin else b"", created_ms=origin.time_ms if origin else 0,
        updated_ms=max([e.updated_ms, *(w.time_ms for w in e.deleted)]),
        deleted=tuple(Candidate.of(w) for w in e.deleted),
        conflicts={name: tuple(Candidate.of(w, _shown(name, w)) for w in e.fields[name]) for name in e.conflicts},
        merged_into=e.into,
    )


@dataclass(frozen=True, slots=True)
class Hit:
    entry: MemoryEntry
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits best first; `model` embedded the query; the counts say which entries were embedded here
    because their own embedding came from another model, or left out because theirs has the wrong size."""

    hits: tuple[Hit, ...]
    model: str
    mode: str                          # lexical, hybrid or semantic: what the ranking can match on
    searched: int
    reembedded: int
    excluded: int
    ranking: str = "hybrid"            # lexical (BM25), vector or hybrid (both, fused)
    decay: bool = True


def _bp(confidence: float) -> int:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise InvalidValueError(f"confidence {confidence!r} must be between 0 and 1")
    return round(confidence * 10000)


def _check(problem: str | None) -> None:
    if problem:
        raise InvalidValueError(problem)


def _tags(tags: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(tags, Iterable) and not isinstance(tags, (str, bytes, Mapping)):
        tags = tuple(tags)
    if not isinstance(tags, tuple) or any(not isinstance(t, str) for t in tags):
        raise InvalidValueError(f"{what} must be a list of strings")
    for t in tags:
        _check(mr.tag_problem(t))
    if len(set(tags)) != len(tags):
        raise InvalidValueError(f"{what} names a tag twice")
    return tags


class Memory:
    """Memory operations on one store (this device's log)."""

    def __init__(self, store, now_ms=None, embedder: Embedder | None = None):
        self._store = store
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """This home's embedder: the one given, else the one configured for the home, else the default."""
        if self._embedder is None:
            name = self._store.meta(EMBEDDER_META)
            self._embedder = embedder_for(name.decode() if name else DEFAULT_EMBEDDER, self.model_cache)
        return self._embedder

    @property
    def model_cache(self) -> Path:
        """Where this home keeps the embedding models it fetched (beside its store)."""
        return Path(self._store.path).parent / MODEL_CACHE

    def use_embedder(self, spec: str) -> Embedder:
        """Make `spec` this home's embedder (it must load first; nothing changes otherwise); the next search
        embeds every entry again. A model2vec directory is kept by its absolute path."""
        if isinstance(spec, str) and spec.startswith(MODEL2VEC_PREFIX) and spec != MODEL2VEC_PREFIX:
            where = Path(spec[len(MODEL2VEC_PREFIX):]).expanduser()
            if where.is_dir():
                spec = MODEL2VEC_PREFIX + str(where.resolve())
        embedder = embedder_for(spec, self.model_cache)
        self._store.set_meta({EMBEDDER_META: spec.encode()})
        self._embedder = embedder
        return self._embedder

    # -- writing ---------------------------------------------------------------------------

    def _embedding(self, embedding: Sequence[float] | None, model: str | None, where: str) -> payloads.Embedding | None:
        if embedding is None:
            if model is not None:
                raise InvalidValueError(f"{where}: a model name goes with an embedding")
            return None
        model = model or self.embedder.name
        if not model or len(model) > mr.MAX_MODEL_LEN or not model.isprintable():
            raise InvalidValueError(
                f"{where}: the embedding's model name must be 1 to {mr.MAX_MODEL_LEN} printable characters")
        dim = self.embedder.dim if model == self.embedder.name else None
        vector = check_vector(embedding, dim, where)
        if len(vector) > mr.MAX_EMBEDDING_DIM:
            raise InvalidValueError(
                f"{where}: embedding has {len(vector)} dimensions, over the limit of {mr.MAX_EMBEDDING_DIM}")
        return payloads.Embedding(model=model, vector=tuple(float(x) for x in vector))

    def put(self, content: str, *, type: str = "fact", tags: Iterable[str] = (), confidence: float = 1.0,
            scope: str = "user", embedding: Sequence[float] | None = None, model: str | None = None) -> bytes:
        """Add a new entry; returns its id (16 bytes, minted here). `embedding` comes from `model`
        (default: this home's embedder); without one the search index embeds the content itself."""
        _check(mr.content_problem(content) if isinstance(content, str) else "memory content must be text")
        _check(mr.type_problem(type))
        if not isinstance(scope, str) or not scope or len(scope) > MAX_SCOPE_LEN or not scope.isprintable():
            raise InvalidValueError(f"scope must be 1 to {MAX_SCOPE_LEN} printable characters, e.g. user or topic:home")
        tags = _tags(tags, "tags")
        if len(tags) > mr.MAX_TAGS:
            raise InvalidValueError(f"an entry holds at most {mr.MAX_TAGS} tags, not {len(tags)}")
        entry_id = os.urandom(mr.ENTRY_ID_LEN)
        payload = payloads.MemoryPut(
            entry=entry_id,
            type=type,
            content=content,
            tags=tags,
            confidence_bp=_bp(confidence),
            embedding=self._embedding(embedding, model, "memory put"),
        )
        self._store.append(payload, scope=scope)
        return entry_id

    def update(self, entry_id: bytes | str, *, content: str | None = None, type: str | None = None,
               confidence: float | None = None, add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (),
               embedding: Sequence[float] | None = None, model: str | None = None) -> bytes:
        """Change some fields of a visible entry; returns the update's event id. Each field written
        here replaces every value this device holds for it, so it also resolves that field's conflict."""
        entry = self._visible(entry_id)
        where = f"memory {entry.id.hex()}"
        fields = []
        if type is not None:
            _check(mr.type_problem(type))
            fields.append(payloads.MemoryField(type=type))
        if content is not None:
            _check(mr.content_problem(content) if isinstance(content, str) else "memory content must be text")
            fields.append(payloads.MemoryField(content=content))
        if confidence is not None:
            fields.append(payloads.MemoryField(confidence_bp=_bp(confidence)))
        vector = self._embedding(embedding, model, where)
        if vector is not None:
            fields.append(payloads.MemoryField(embedding=vector))
        adds, removes = _tags(add_tags, "tags to add"), _tags(remove_tags, "tags to remove")
        if set(adds) & set(removes):
            raise InvalidValueError(f"{where}: tag {sorted(set(adds) & set(removes))[0]!r} is both added and removed")
        missing = [t for t in removes if t not in entry.tag_set]
        if missing:
            raise InvalidValueError(f"{where} has no tag {missing[0]!r}")
        if len(set(entry.tag_set) | set(adds)) - len(removes) > mr.MAX_TAGS:
            raise InvalidValueError(f"{where}: an entry holds at most {mr.MAX_TAGS} tags")
        if not fields and not adds and not removes:
            raise InvalidValueError(f"{where}: nothing to update: give a content, type, confidence, tag or embedding")
        return self._store.append(payloads.MemoryUpdate(entry=entry.id, fields=tuple(fields), tags_add=adds,
                                                        tags_remove=removes), scope=entry.scope)

    def resolve(self, entry_id: bytes | str, field_name: str, value: Any) -> bytes:
        """Settle a conflict: write `value` for the field over every standing value. For `embedding`,
        `value` names the standing write to keep (its event id, or hex prefix)."""
        entry = self._visible(entry_id)
        where = f"memory {entry.id.hex()}"
        if field_name not in mr.FIELDS:
            raise InvalidValueError(f"{where}: field {field_name!r} is not one of {', '.join(mr.FIELDS)}")
        standing = entry.fields.get(field_name, [])
        if len(standing) < 2:
            raise InvalidValueError(f"{where}: field {field_name} has no conflict to resolve")
        if field_name == "embedding":
            chosen = [w for w in standing if w.eid.hex().startswith(str(value).lower())] if value else []
            if len(chosen) != 1:
                raise InvalidValueError(f"{where}: {value!r} names none or several of the standing embeddings")
            model, vector = self._store.read(lambda txn: self._store.memory_view.vector(txn, chosen[0].eid))
            return self.update(entry.id, embedding=vector, model=model)
        if field_name == "confidence":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidValueError(f"{where}: confidence {value!r} is not a number") from None
        return self.update(entry.id, **{field_name: value})

    def delete(self, entry_id: bytes | str, reason: str = "") -> bytes:
        """Tombstone an entry on every device: a delete is final (docs/memory.md says why)."""
        entry = self._visible(entry_id)
        if len(reason) > mr.MAX_REASON_LEN:
            raise InvalidValueError(f"a reason is at most {mr.MAX_REASON_LEN} characters")
        return self._store.append(payloads.MemoryDelete(entry=entry.id, reason=reason), scope=entry.scope)

    def merge(self, into: bytes | str, entry_id: bytes | str, content: str | None = None) -> bytes:
        """Fold entry `entry_id` into `into` on every device: its tags join `into`'s, its content still finds
        `into`, `content` (if given) becomes `into`'s content, and it is deleted pointing at `into`; the event id."""
        keep, gone = self._visible(into), self._visible(entry_id)
        if keep.id == gone.id:
            raise InvalidValueError(f"memory {keep.id.hex()} cannot be merged into itself")
        if keep.scope != gone.scope:
            raise InvalidValueError(f"memory {gone.id.hex()} is in scope {gone.scope}, memory {keep.id.hex()} in "
                                    f"scope {keep.scope}: only entries of one scope merge")
        if content is not None:
            _check(mr.content_problem(content) if isinstance(content, str) else "memory content must be text")
        tags = tuple(t for t in gone.tag_set if t not in keep.tag_set)
        if len(keep.tag_set) + len(tags) > mr.MAX_TAGS:
            raise InvalidValueError(f"memory {keep.id.hex()} would hold more than {mr.MAX_TAGS} tags")
        text = gone.search_text()
        if len(text.encode()) > mr.MAX_CONTENT_BYTES:
            text = text.encode()[: mr.MAX_CONTENT_BYTES].decode(errors="ignore")
        payload = payloads.MemoryMerge(entry=gone.id, into=keep.id, content=text, tags=tags, rewrite=content or "")
        return self._store.append(payload, scope=keep.scope)

    def forget(self, entry_id: bytes | str, reason: str = "") -> bytes:
        """Erase an entry's content from the whole history on every device (docs/erasure.md): an erase request
        naming every event of the entry this device holds, and a rule for the ones it does not; its id."""
        entry_id = id_bytes(entry_id, "memory id", mr.ENTRY_ID_LEN)
        earlier = self._store.erasure_rule(entry=entry_id)
        if earlier is not None:
            return earlier                   # forgotten already: its rule catches every event of the entry
        self._entry(entry_id)
        return self._store.erase([], entry=entry_id, reason=reason)[0]

    def _entry(self, entry_id: bytes | str) -> Entry:
        entry_id = id_bytes(entry_id, "memory id", mr.ENTRY_ID_LEN)
        entry = self._store.read(lambda txn: self._store.memory_view.entry(txn, entry_id))
        if entry is None or entry.origin is None:
            raise NotFoundError(f"no memory {entry_id.hex()} on this device{self._unreadable()}")
        return entry

    def _unreadable(self) -> str:
        """What a 'not found' adds when this device holds sealed events it cannot read: the entry may be there."""
        names = self._store.scopes.unread()
        if not names:
            return ""
        return (f"; it may be in a scope this device cannot read: this device cannot read scope "
                f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")

    def _visible(self, entry_id: bytes | str) -> Entry:
        entry = self._entry(entry_id)
        if entry.into:
            raise InvalidValueError(f"memory {entry.id.hex()} was merged into {entry.into.hex()}")
        if entry.deleted:
            raise InvalidValueError(f"memory {entry.id.hex()} was deleted; put a new entry instead")
        return entry

    # -- reading -------------------------------------------------------------------------------

    def id(self, text: str) -> bytes:
        """The entry id that `text` (its hex, or a unique prefix of at least 4 hex digits) names."""
        text = text.strip().lower()
        if (
            len(text) < MIN_ID_PREFIX
            or len(text) > 2 * mr.ENTRY_ID_LEN
            or any(c not in "0123456789abcdef" for c in text)
        ):
            raise InvalidValueError(f"memory id {text!r} must be {MIN_ID_PREFIX} to {2 * mr.ENTRY_ID_LEN} hex digits")
        if len(text) == 2 * mr.ENTRY_ID_LEN:
            return bytes.fromhex(text)
        low = bytes.fromhex(text.ljust(2 * mr.ENTRY_ID_LEN, "0"))

        def read(txn):
            found = []
            with txn.cursor(db=self._store.memory_view.entries) as cur:
                ok = cur.set_range(low)
                while ok and len(found) < 2 and bytes(cur.key()).hex().startswith(text):
                    found.append(bytes(cur.key()))
                    ok = cur.next()
            return found
        found = self._store.read(read)
        if not found:
            raise NotFoundError(f"no memory whose id starts with {text} on this device{self._unreadable()}")
        if len(found) > 1:
            raise InvalidValueError(f"memory id prefix {text} is ambiguous: give more digits")
        return found[0]

    def get(self, entry_id: bytes | str) -> MemoryEntry:
        """The entry as this device sees it, deleted or not; InvalidValueError if it was never put here."""
        return entry_of(self._entry(entry_id))

    def note_read(self, entry_id: bytes) -> None:
        """Record that a person or agent read the entry on this device now: a use, so it does not decay."""
        now = self._now_ms()
        self._store.write(lambda txn: self._store.memory_view.note_read(txn, entry_id, now))

    def vector(self, entry_id: bytes | str) -> tuple[str, np.ndarray] | None:
        """The entry's shown embedding (model, vector) as written, or None."""
        entry = self._entry(entry_id)
        writes = entry.fields.get("embedding")
        return self._store.read(lambda txn: self._store.memory_view.vector(txn, writes[0].eid)) if writes else None

    def list(self, *, type: str | None = None, tag: str | None = None, scope: str | None = None,
             deleted: bool = False) -> list[MemoryEntry]:
        """Entries matching every filter given, newest change first (deleted ones only when asked)."""
        if type is not None:
            _check(mr.type_problem(type))

        def read(txn):
            view = self._store.memory_view
            return [view.entry(txn, i) for i in view.entry_ids(txn)]
        out = []
        for e in self._store.read(read):
            if e.origin is None or bool(e.deleted) != deleted:
                continue
            if (type and e.value("type") != type) or (tag and tag not in e.tag_set) or (scope and e.scope != scope):
                continue
            out.append(entry_of(e))
        out.sort(key=lambda m: (-m.updated_ms, m.id))
        return out

    def conflicts(self) -> list[MemoryEntry]:
        """Visible entries with a field in conflict, by id."""
        def read(txn):
            view = self._store.memory_view
            return [view.entry(txn, i) for i in view.conflicted(txn)]
        return [entry_of(e) for e in self._store.read(read) if e.visible]

    def search(self, query: str, k: int = 10, *, type: str | None = None, tag: str | None = None,
               scope: str | None = None, lexical: bool = False, ranking: str = "hybrid",
               decay: bool = True) -> SearchResult:
        """The k entries best matching `query`, filtered by type, tag and scope (docs/memory.md, "Search").

        `ranking`: "hybrid" fuses BM25 and the vector ranking, "lexical" (or `lexical`) is BM25 alone,
        "vector" the embedder's cosine alone. With `decay`, entries long unused lose rank."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidValueError("a search needs a query")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidValueError(f"k must be between 1 and {MAX_K}")
        ranking = "lexical" if lexical else ranking
        if ranking not in RANKINGS:
            raise InvalidValueError(f"ranking {ranking!r} is not one of {', '.join(RANKINGS)}")
        if type is not None:
            _check(mr.type_problem(type))
        pool = min(MAX_K, max(k, POOL))
        near = (self.embedder.embed([query])[0], pool, type, tag, scope) if ranking != "lexical" else None
        table = self._rows(query_terms(query) if ranking != "vector" else [], near)
        rows = table.mask(type, tag, scope, vectors=False)
        rankings = []
        if ranking != "vector":
            rankings.append(bm25(table.corpus(rows), query, pool))
        if ranking != "lexical":
            rankings.append(table.nearest)
        found = fuse(rankings) if len(rankings) > 1 else rankings[0]
        hits = tuple(Hit(entry_of(e), score) for e, score in self._top(found, k, decay))
        meaning = getattr(self.embedder, "meaning", False)
        mode = "lexical" if ranking == "lexical" or not meaning else ("semantic" if ranking == "vector" else "hybrid")
        return SearchResult(hits, self.embedder.name, mode, int(np.count_nonzero(rows)),
                            *table.count(rows, (REEMBEDDED, EXCLUDED)), ranking=ranking, decay=decay)

    def duplicates(self, threshold: float = tidy.DEFAULT_THRESHOLD) -> list[tuple[MemoryEntry, MemoryEntry, float]]:
        """Pairs of visible entries of one scope that say nearly the same thing (agentlog.memory.tidy), the
        most similar first: (entry, entry, similarity), the smaller id first."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise InvalidValueError(f"threshold {threshold!r} must be above 0 and at most 1")
        found = tidy.pairs(self.matrix(), float(threshold))
        store = self._store

        def read(txn):
            return {i: store.memory_view.entry(txn, i) for pair in found for i in pair[:2]}
        entries = store.read(read)
        return [(entry_of(entries[a]), entry_of(entries[b]), score) for a, b, score in found
                if entries[a] is not None and entries[a].visible and entries[b] is not None and entries[b].visible]

    def _top(self, found: list[tuple[bytes, float]], k: int, decay: bool) -> list[tuple[Entry, float]]:
        """The k best of `found` (best first) that are visible, rescored by decay when asked. Entries are read
        in growing chunks, and no further once the next score, which decay can only lower, is below the k-th."""
        view, now = self._store.memory_view, self._now_ms()
        kept: dict[bytes, tuple[Entry, float]] = {}
        at, step = 0, k
        while at < len(found):
            chunk = found[at:at + step]
            at, step = at + step, 2 * step

            def read(txn, chunk=chunk):
                entries = [(view.entry(txn, i), score) for i, score in chunk]
                return entries, view.reads(txn, [i for i, _ in chunk]) if decay else {}
            entries, reads = self._store.read(read)
            for entry, score in entries:
                if entry is not None and entry.visible:
                    used = max(entry.updated_ms, reads.get(entry.id, 0))
                    kept[entry.id] = (entry, score * decay_factor(now - used) if decay else score)
            best = ordered({i: score for i, (_, score) in kept.items()})[:k]
            if len(best) == k and (at >= len(found) or found[at][1] < best[-1][1]):
                break
        return [(kept[i][0], score) for i, score in ordered({i: s for i, (_, s) in kept.items()})[:k]]

    def _rows(self, words: list[str], near: tuple | None) -> pending.Rows:
        """What a search ranks, read in one transaction: this process's matrix of the index, brought up to date,
        and the entries the index has not caught up with (indexed durably in the background meanwhile), with
        the postings of the query's terms `words` and the vector ranking `near` asks for (pending.read)."""
        store, embedder = self._store, self.embedder
        index, matrix, made = MemoryIndex(store.dbs, embedder), self._matrix(), self._made()

        def read(txn):
            return pending.read(txn, index, store.memory_view, matrix, made, words, near)
        rows = store.read(read, buffers=True)
        if rows is None:
            self.matrix()
            rows = store.read(read, buffers=True)
        if rows.behind:
            self._index_later(index, made)
        return rows

    def _made(self) -> dict:
        """Rows searches made of changed entries (agentlog.memory.pending), for this embedder."""
        return self._store.memory_cache.setdefault(("pending", self.embedder.name, self.embedder.dim), {})

    def catch_up(self) -> None:
        """Index every changed entry durably now (what searches leave to the background), after any indexing
        this process has under way."""
        running = self._store.memory_cache.get(INDEXER)
        if running is not None:
            running.join()
        self.matrix()

    def _index_later(self, index: MemoryIndex, made: dict) -> None:
        """Have the changed entries indexed durably off the search path, by one thread of this process at a time."""
        running = self._store.memory_cache.get(INDEXER)
        if running is None or not running.is_alive():
            self._store.memory_cache[INDEXER] = Indexer(self._store, index, made)

    def _matrix(self) -> Matrix:
        store, embedder = self._store, self.embedder
        matrix = store.memory_cache.get(embedder.name)
        if matrix is None or matrix.dim != embedder.dim:        # another size under the same name: a new copy
            matrix = store.memory_cache[embedder.name] = Matrix(embedder.dim, getattr(embedder, "sparse", False))
        return matrix

    def matrix(self) -> Matrix:
        """This process's copy of the search index, brought up to date (embedding what changed first)."""
        store, embedder = self._store, self.embedder
        index, matrix = MemoryIndex(store.dbs, embedder), self._matrix()
        if store.read(index.needs_sync):
            store.write(lambda txn: index.sync(txn, store.memory_view, self._made()))
        store.read(lambda txn: matrix.refresh(txn, index), buffers=True)      # blocks copied straight from the map
        return matrix


class Indexer:
    """A thread that indexes the changed entries durably INDEX_DELAY after a search found them (so the
    entries of a busy writer go in a few write transactions, not one each), or at once when joined (the
    store's close, `catch_up`)."""

    def __init__(self, store, index: MemoryIndex, made: dict):
        self._store, self._index, self._made = store, index, made
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentlog memory index", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._wake.wait(INDEX_DELAY)
        store, index = self._store, self._index
        try:
            if store.read(index.needs_sync):
                store.write(lambda txn: index.sync(txn, store.memory_view, self._made))
        except StoreError:
            pass                    # closed, or failing: a later search tries again, and at MAX_PENDING waits

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._wake.set()
        self._thread.join()
