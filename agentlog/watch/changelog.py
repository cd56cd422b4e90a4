"""The change log: each setting and memory entry a write changed, recorded in the writer's own transaction.

Database `watch.changes` (docs/format.md section 10): position(8, big-endian) -> one row per changed setting or
entry: view(1: p, m, or * for "folded again, re-read everything") time(8) name, state before, state after (the
view's stored bytes, length-prefixed; absent: 0xffffffff; a setting's cut down to the buckets its answer with no
context reads, so a row stays small) and the events behind it (how many, and the last REFS_KEPT of them).
Positions count up from 1 and are never reused; the oldest rows go once more than RETAIN are kept, and every
row goes when the views are folded again (one `*` row stands for all of it). Rows are written only when a
state's bytes changed, so a duplicate or an event that moved nothing leaves none. The writer does no work per watcher:
watchers read the rows after their position when woken.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from agentlog.log.kinds import MEMORY_KINDS, PREF_KINDS
from agentlog.prefs.canonical import only
from agentlog.prefs.reducer import lookup_buckets

DBS = ("watch.changes",)
ANSWERED = frozenset(lookup_buckets(()))
"""The buckets a setting's answer with no context reads: all of its state a preference row keeps."""
RETAIN = 10_000
"""Rows kept: a watcher further behind than this is told it missed changes (a `gap`)."""
TRIM_EVERY = 256
REFS_KEPT = 16
"""A row names the last this many events behind its change (and how many there were)."""

_POS = struct.Struct(">Q")
_HEAD = struct.Struct(">cQH")            # view, time, name length
_LEN = struct.Struct(">I")
_REF = struct.Struct(">32sIQ32sBB")      # author, epoch, seq, event id, kind length, scope length
_ABSENT = 0xFFFFFFFF
PREF, MEMORY, REFOLD = b"p", b"m", b"*"


class Ref(NamedTuple):
    """One event behind a change."""

    author: bytes
    epoch: int
    seq: int
    eid: bytes
    kind: str
    scope: str


class Row(NamedTuple):
    """One change as stored: `old`/`new` are the view's state bytes (None: absent); `refs` the last REFS_KEPT of
    the `events` events behind it."""

    position: int
    view: bytes
    time_ms: int
    name: bytes
    old: bytes | None
    new: bytes | None
    refs: tuple[Ref, ...]
    events: int = 0


def _named(store, txn, folded) -> tuple[dict[str, list], dict[bytes, list]]:
    """The settings and memory entries the batch's readable events name, each with those events."""
    prefs: dict[str, list] = {}
    memory: dict[bytes, list] = {}
    decisions = None
    for f in folded:
        p, kind = f.payload, f.kind
        if p is None:
            continue
        if kind in MEMORY_KINDS:
            memory.setdefault(p.entry, []).append(f)
            if kind == "memory.merge":                # it changes the entry merged into too
                memory.setdefault(p.into, []).append(f)
        elif kind == "correction":
            if decisions is None:
                decisions = {g.eid: g.payload.setting for g in folded if g.kind == "decision" and g.payload}
            name = decisions.get(p.decision)
            if name is None:
                decision = store.pref_view.decision(txn, p.decision)
                name = decision.setting if decision is not None else None
            if name is not None:
                prefs.setdefault(name, []).append(f)
        elif kind in PREF_KINDS:
            prefs.setdefault(p.setting, []).append(f)
    return prefs, memory


class Capture:
    """One write transaction's changes: the named states read before the fold, compared after it (`record`)."""

    def __init__(self, store, txn, folded):
        self.store, self.txn = store, txn
        self.db = store.dbs.get(DBS[0])
        self.prefs, self.memory = _named(store, txn, folded) if self.db is not None else ({}, {})
        view, entries = store.pref_view, store.dbs["views.memory"]
        self.old_prefs = {name: _copy(view.raw_setting(txn, name)) for name in self.prefs}
        self.old_memory = {entry: _copy(txn.get(entry, db=entries)) for entry in self.memory}
        self.last = _last(txn, self.db) if self.prefs or self.memory else 0

    def record(self) -> None:
        """Write a row for each named state whose bytes the fold changed; none when the views were folded again
        meanwhile (the refold row says it all, and an old state may hold what an erasure just erased)."""
        if not (self.prefs or self.memory) or _last(self.txn, self.db) != self.last:
            return
        txn, view, entries = self.txn, self.store.pref_view, self.store.dbs["views.memory"]
        rows = []
        for name, events in self.prefs.items():
            new = _copy(view.raw_setting(txn, name))
            old = self.old_prefs[name]
            if new != old:
                rows.append((PREF, name.encode(), _answered(name, old), _answered(name, new, view), events))
        for entry, events in self.memory.items():
            new = _copy(txn.get(entry, db=entries))
            if new != self.old_memory[entry]:
                rows.append((MEMORY, entry, self.old_memory[entry], new, events))
        if rows:
            append(txn, self.db, self.store.now_ms(), rows)


def mark_refold(store, txn) -> None:
    """Record that the views were folded again: every row kept goes (an erasure may be why: no old state may
    keep what it erased), and one refold row says to re-read what is shown (docs/watching.md)."""
    db = store.dbs.get(DBS[0])
    if db is not None:
        last = _last(txn, db)
        txn.drop(db, delete=False)
        append(txn, db, store.now_ms(), [(REFOLD, b"", None, None, ())], last)


def append(txn, db, time_ms: int, rows: list[tuple], last: int | None = None) -> None:
    """Put (view, name, old, new, events) rows after the last position, and trim the oldest now and then."""
    last = _last(txn, db) if last is None else last
    puts = []
    for view, name, old, new, events in rows:
        last += 1
        kept = events[-REFS_KEPT:]
        parts = [_HEAD.pack(view, time_ms, len(name)), name, _state(old), _state(new), _LEN.pack(len(events)),
                 bytes((len(kept),))]
        for f in kept:
            kind, scope = f.kind.encode(), (f.scope or "").encode()
            parts.append(_REF.pack(f.author, f.epoch, f.seq, f.eid, len(kind), len(scope)) + kind + scope)
        puts.append((_POS.pack(last), b"".join(parts)))
    txn.cursor(db=db).putmulti(puts, append=True)
    if last % TRIM_EVERY < len(rows):
        _trim(txn, db, last - RETAIN)


def _last(txn, db) -> int:
    with txn.cursor(db=db) as cur:
        return _POS.unpack(cur.key())[0] if cur.last() else 0


def _trim(txn, db, upto: int) -> None:
    with txn.cursor(db=db) as cur:
        while cur.first() and _POS.unpack(cur.key())[0] <= upto:
            cur.delete()


def _state(raw: bytes | None) -> bytes:
    return _LEN.pack(_ABSENT) if raw is None else _LEN.pack(len(raw)) + raw


_CUTS: dict[str, tuple[bytes, bytes]] = {}
"""Setting -> (a state, its cut): a batch's state after is the next one's before, cut once. Pure, so shared."""


def _answered(name: str, raw: bytes | None, view=None) -> bytes | None:
    """The part of a setting's state its answer with no context reads (see `only`); `view`: the pref view
    whose fold may just have written `raw` (its pieces give the part without parsing the bytes)."""
    if raw is None:
        return None
    hit = _CUTS.get(name)
    if hit is not None and hit[0] == raw:
        return hit[1]
    if len(_CUTS) >= 4096:
        _CUTS.clear()
    folded = view.folded(name, raw) if view is not None else None
    cut = only(raw, ANSWERED) if folded is None else folded.only(ANSWERED)
    _CUTS[name] = (raw, cut)
    return cut


def _copy(raw) -> bytes | None:
    return None if raw is None else bytes(raw)


# -- reading ---------------------------------------------------------------------------------------------

def bounds(txn, db) -> tuple[int, int]:
    """(first position held, last position written); (0, 0) when nothing was ever recorded."""
    with txn.cursor(db=db) as cur:
        if not cur.last():
            return 0, 0
        last = _POS.unpack(cur.key())[0]
        cur.first()
        return _POS.unpack(cur.key())[0], last


def rows_after(txn, db, position: int, limit: int) -> Iterator[Row]:
    """Up to `limit` rows after `position`, in order."""
    with txn.cursor(db=db) as cur:
        found = cur.set_range(_POS.pack(position + 1))
        n = 0
        while found and n < limit:
            yield decode(_POS.unpack(cur.key())[0], bytes(cur.value()))
            n += 1
            found = cur.next()


def decode(position: int, raw: bytes) -> Row:
    view, time_ms, n = _HEAD.unpack_from(raw)
    at = _HEAD.size
    name = raw[at : at + n]
    at += n
    old, at = _read_state(raw, at)
    new, at = _read_state(raw, at)
    total = _LEN.unpack_from(raw, at)[0]
    count, at = raw[at + _LEN.size], at + _LEN.size + 1
    refs = []
    for _ in range(count):
        author, epoch, seq, eid, nk, ns = _REF.unpack_from(raw, at)
        at += _REF.size
        kind, scope = raw[at : at + nk].decode(), raw[at + nk : at + nk + ns].decode()
        at += nk + ns
        refs.append(Ref(author, epoch, seq, eid, kind, scope))
    return Row(position, view, time_ms, name, old, new, tuple(refs), total)


def _read_state(raw: bytes, at: int) -> tuple[bytes | None, int]:
    n = _LEN.unpack_from(raw, at)[0]
    at += _LEN.size
    if n == _ABSENT:
        return None, at
    return raw[at : at + n], at + n
