"""The memory reducer: entries written on any device merged field by field. Pure.

The rules are in docs/memory.md. Each field (type, content, confidence, embedding) is
a multi-value register: a write replaces the writes it causally follows (by the
events' clocks) and stands beside the ones it is concurrent with. When several stand,
that is a conflict: the greatest (lamport, author) is shown, the rest are kept. Tags
are an add-wins set. A delete is final; a merge deletes one entry and folds its tags and
content into another. The state is a function of the set of events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agentlog.log import kinds

VERSION = 1
# the kinds, enumerations and limits the log checks payloads against (agentlog/log/kinds.py)
KINDS = kinds.MEMORY_KINDS
TYPES = kinds.MEMORY_TYPES
MAX_CONTENT_BYTES = kinds.MAX_CONTENT_BYTES
MAX_TAGS = kinds.MAX_TAGS
MAX_TAG_LEN = kinds.MAX_TAG_LEN
MAX_REASON_LEN = kinds.MAX_REASON_LEN
MAX_EMBEDDING_DIM = kinds.MAX_EMBEDDING_DIM
MAX_MODEL_LEN = kinds.MAX_MODEL_LEN
FIELDS = ("type", "content", "confidence", "embedding")
ENTRY_ID_LEN = 16

Clock = dict[bytes, tuple[int, int]]          # author -> (epoch, seq): an event's whole causal past


class Write(NamedTuple):
    """One event's write of a value (a field's value, a put's scope, a delete's reason)."""

    lamport: int
    author: bytes
    epoch: int
    seq: int
    time_ms: int
    eid: bytes
    value: Any

    def to_json(self) -> list:
        return [self.lamport, self.author.hex(), self.epoch, self.seq, self.time_ms, self.eid.hex(), self.value]

    @classmethod
    def from_json(cls, row: list) -> Write:
        """A write from its stored row (tuple.__new__ directly: a get decodes several per entry)."""
        return _new(cls, (row[0], _hex(row[1]), row[2], row[3], row[4], _hex(row[5]), row[6]))


_new, _hex = tuple.__new__, bytes.fromhex


class Fact(NamedTuple):
    """A memory event as the reducer folds it: where it sits, what it saw, what it says."""

    author: bytes
    epoch: int
    seq: int
    lamport: int
    time_ms: int
    scope: str
    kind: str
    eid: bytes
    payload: Any
    past: Clock

    def write(self, value: Any) -> Write:
        return Write(self.lamport, self.author, self.epoch, self.seq, self.time_ms, self.eid, value)


def _order(w: Write) -> tuple:
    return (w.lamport, w.author, w.epoch, w.seq, w.eid)     # eid: the branches of a fork share a position


def before(w: Write | tuple, past: Clock) -> bool:
    """Whether the event of `w` (or an (author, epoch, seq) dot) lies in the causal past `past`."""
    author, epoch, seq = (w.author, w.epoch, w.seq) if isinstance(w, Write) else w
    return past.get(author, (-1, -1)) >= (epoch, seq)


# -- checks shared by the API (before writing) and docs ---------------------------------------

def content_problem(content: str) -> str | None:
    if not content.strip():
        return "memory content cannot be empty"
    size = len(content.encode())
    if size > MAX_CONTENT_BYTES:
        return f"memory content is {size} bytes, over the limit of {MAX_CONTENT_BYTES}"
    return None


def tag_problem(tag: str) -> str | None:
    if not tag or len(tag) > MAX_TAG_LEN or not tag.isprintable() or any(c.isspace() for c in tag):
        return f"tag {tag[:MAX_TAG_LEN]!r} must be 1 to {MAX_TAG_LEN} printable characters without spaces"
    return None


def type_problem(kind: str) -> str | None:
    return None if kind in TYPES else f"memory type {kind!r} is not one of {', '.join(TYPES)}"


# -- the state of one entry ----------------------------------------------------------------

@dataclass(slots=True)
class Entry:
    """One memory entry: its origin put, live writes per field, tag dots, tombstones."""

    id: bytes
    origin: Write | None = None                                   # the put; value = the put's scope
    fields: dict[str, list[Write]] = field(default_factory=dict)  # winner first
    tags: dict[str, list[tuple[bytes, int, int]]] = field(default_factory=dict)  # tag -> add dots
    deleted: list[Write] = field(default_factory=list)            # tombstones; value = reason
    merged_into: list[Write] = field(default_factory=list)        # merges of this entry; value = the other's id hex
    absorbed: list[Write] = field(default_factory=list)           # entries merged into this; value = [id hex, content]

    # -- reading --

    @property
    def visible(self) -> bool:
        return self.origin is not None and not self.deleted

    def value(self, name: str, default: Any = None) -> Any:
        versions = self.fields.get(name)
        return versions[0].value if versions else default

    @property
    def scope(self) -> str:
        return self.origin.value if self.origin else ""

    @property
    def tag_set(self) -> tuple[str, ...]:
        return tuple(sorted(t for t, dots in self.tags.items() if dots))

    @property
    def conflicts(self) -> dict[str, list[Write]]:
        """Field -> the concurrent writes that lost (the winner is `value(field)`)."""
        return {name: versions[1:] for name, versions in sorted(self.fields.items()) if len(versions) > 1}

    @property
    def updated_ms(self) -> int:
        times = [w.time_ms for versions in self.fields.values() for w in versions]
        return max(times, default=self.origin.time_ms if self.origin else 0)

    @property
    def into(self) -> bytes | None:
        """The entry this one was merged into (the greatest merge, when several were concurrent), or None."""
        return bytes.fromhex(self.merged_into[-1].value) if self.merged_into else None

    def search_text(self) -> str:
        """What search matches this entry by: its content and the content of entries merged into it."""
        return "\n".join([self.value("content", ""), *(w.value[1] for w in self.absorbed)])

    def embedding_writes(self) -> list[Write]:
        return list(self.fields.get("embedding", ()))

    # -- folding --

    def apply(self, fact: Fact) -> None:
        """Fold one memory event; events arrive in a causal order (never before one they follow)."""
        p = fact.payload
        if fact.kind == "memory.merge":
            if p.entry != self.id:
                self._absorb(fact)
                return
            self.merged_into.append(fact.write(p.into.hex()))
            self.merged_into.sort(key=_order)
        if fact.kind in ("memory.delete", "memory.merge"):
            self.deleted.append(fact.write(p.reason if fact.kind == "memory.delete" else f"merged into {p.into.hex()}"))
            self.deleted.sort(key=_order)
            self.fields.clear()
            self.tags.clear()
            self.absorbed.clear()
            return
        if fact.kind == "memory.put":
            origin = fact.write(fact.scope)
            if self.origin is None or _order(origin) < _order(self.origin):
                self.origin = origin
        if self.deleted:
            return
        if fact.kind == "memory.put":
            self._write("type", fact, p.type)
            self._write("content", fact, p.content)
            self._write("confidence", fact, p.confidence_bp)
            if p.embedding is not None:
                self._write("embedding", fact, p.embedding.model)
            adds, removes = p.tags, ()
        else:
            for f in p.fields:
                if f.type is not None:
                    self._write("type", fact, f.type)
                elif f.content is not None:
                    self._write("content", fact, f.content)
                elif f.confidence_bp is not None:
                    self._write("confidence", fact, f.confidence_bp)
                elif f.embedding is not None:
                    self._write("embedding", fact, f.embedding.model)
            adds, removes = p.tags_add, p.tags_remove
        for tag in removes:
            kept = [d for d in self.tags.get(tag, ()) if not before(d, fact.past)]
            if kept:
                self.tags[tag] = kept
            else:
                self.tags.pop(tag, None)
        dot = (fact.author, fact.epoch, fact.seq)
        for tag in adds:
            dots = self.tags.setdefault(tag, [])
            if dot not in dots:
                dots.append(dot)
                dots.sort()

    def _absorb(self, fact: Fact) -> None:
        """Take in an entry merged into this one: its tags and content, and the merge's new content if any."""
        p = fact.payload
        if not self.visible:
            return
        self.absorbed.append(fact.write([p.entry.hex(), p.content]))
        self.absorbed.sort(key=_order)
        if p.rewrite:
            self._write("content", fact, p.rewrite)
        dot = (fact.author, fact.epoch, fact.seq)
        for tag in p.tags:
            dots = self.tags.setdefault(tag, [])
            if dot not in dots:
                dots.append(dot)
                dots.sort()

    def _write(self, name: str, fact: Fact, value: Any) -> None:
        new = fact.write(value)
        versions = [w for w in self.fields.get(name, ()) if w.eid != fact.eid and not before(w, fact.past)]
        versions.append(new)
        versions.sort(key=_order, reverse=True)
        self.fields[name] = versions

    # -- canonical bytes --

    def to_bytes(self) -> bytes:
        doc = {
            "o": self.origin.to_json() if self.origin else None,
            "f": {name: [w.to_json() for w in self.fields[name]] for name in sorted(self.fields)},
            "t": {tag: [[a.hex(), e, s] for a, e, s in self.tags[tag]] for tag in sorted(self.tags)},
            "d": [w.to_json() for w in self.deleted],
        }
        if self.merged_into:                   # only then: entries never merged keep their bytes (and digests)
            doc["m"] = [w.to_json() for w in self.merged_into]
        if self.absorbed:
            doc["a"] = [w.to_json() for w in self.absorbed]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, entry_id: bytes, raw: bytes) -> Entry:
        doc = json.loads(raw)
        return cls(
            entry_id,
            Write.from_json(doc["o"]) if doc["o"] else None,
            {name: [Write.from_json(w) for w in rows] for name, rows in doc["f"].items()},
            {tag: [(bytes.fromhex(a), e, s) for a, e, s in dots] for tag, dots in doc["t"].items()},
            [Write.from_json(w) for w in doc["d"]],
            [Write.from_json(w) for w in doc.get("m", ())],
            [Write.from_json(w) for w in doc.get("a", ())],
        )


def fold(entries: dict[bytes, Entry], facts: list[Fact], entry_of) -> set[bytes]:
    """Fold facts (in causal order) into `entries`, loading missing ones with `entry_of(id)`; returns ids touched."""
    touched = set()
    for fact in facts:
        ids = (fact.payload.entry, fact.payload.into) if fact.kind == "memory.merge" else (fact.payload.entry,)
        for eid in ids:
            entry = entries.get(eid)
            if entry is None:
                entry = entries[eid] = entry_of(eid) or Entry(eid)
            entry.apply(fact)
            touched.add(eid)
    return touched
