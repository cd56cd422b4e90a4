"""The preference view in LMDB: folded in the append's or ingest's own transaction, rebuilt by replay.

Databases (keys big-endian, see docs/preferences.md):
  views.pref           setting name -> Setting bytes; b"\\0version" -> reducer version
  views.pref.evidence  skey(16) eff(8) event id(32) role(1) -> Evidence bytes   (skey = BLAKE2b-128 of the name)
  views.pref.pending   decision id(32) correction id(32) -> effective time(8) author(32) epoch(4) seq(8)
                       lamport(8) time(8) payload: corrections whose decision has not arrived (whole, so
                       compaction may drop the correction's event)
  views.pref.seen      author(32) -> newest time(8) the author had seen from another device
  views.pref.decisions decision id(32) -> author(32) epoch(4) seq(8) lamport(8) time(8) payload: every
                       decision, so a correction still finds its decision after compaction drops it
  views.pref.early     author(32) -> the witness cap (8) on its unwitnessed evidence (docs/preferences.md);
                       author(32) 0x00 witness(32) -> b"": the witness has named the author in a clock;
                       author(32) 0x01 time(8) event id(32) -> effective time(8) time(8) then b"s" setting name or b"c"
                       decision id: each observation, decision and correction the author wrote before it had
                       seen another device (never summarized: a later witness may move its effective time)
A snapshot event folds its covered old evidence into day summaries (docs/compaction.md).
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from operator import itemgetter
from typing import Any, NamedTuple

from agentlog import crypto
from agentlog.errors import EventError
from agentlog.limits import MAX_TIME_MS, MIN_TIME_MS
from agentlog.log import payloads
from agentlog.log.event import PEEK_READER, Header, decode_header
from agentlog.log.kinds import MEMORY_KINDS
from agentlog.prefs import reducer as pr
from agentlog.prefs.rows import ROLE_BYTE, Index, evidence_from, evidence_rows, setting_key

DBS = ("views.pref", "views.pref.evidence", "views.pref.pending", "views.pref.seen", "views.pref.decisions",
       "views.pref.early")
_DECISION = struct.Struct(">32sIQQQ")
VERSION_KEY = b"\0version"
_VERSION = pr.VERSION.to_bytes(4, "big")
_U64 = struct.Struct(">Q")
_PACK_U64 = _U64.pack
_U32 = struct.Struct(">I")
_POS = struct.Struct(">IQ")
_CACHED_PAYLOAD, _CACHED_PAYLOADS = 256, 100_000
_UNOPENED = object()                # a setting a batch has not opened yet (None: not a setting name)


class Folded(NamedTuple):
    """One stored event as the views fold it: header fields, id and decoded payload (None if not decoded).

    `scope` is read only where a view needs it (memory.put); elsewhere it may be "".
    """

    author: bytes
    epoch: int
    seq: int
    lamport: int
    time_ms: int
    kind: str
    clock: tuple
    eid: bytes
    payload: Any
    scope: str

    @classmethod
    def of(cls, h: Header, eid: bytes, payload: Any) -> Folded:
        return _tuple_new(cls, (h.author, h.epoch, h.seq, h.lamport, h.time_ms, h.kind, h.clock, eid, payload, h.scope))


_tuple_new = tuple.__new__           # builds a NamedTuple without its Python-level __new__
_POSITION, _CLOCK = itemgetter(0, 1, 2), itemgetter(6)     # a Folded's fields


def _summary_step(rows: list[pr.Evidence], stable: dict[bytes, int], before: int, early: Callable[[pr.Evidence], bool]):
    """What a snapshot does to one setting's `rows`: (the rows it covers, the summaries that change, the
    existing summaries by (cell, id)). Covered: an observation's or decision's, effective at or before
    `before`, at or below its author's stable lamport, and not unwitnessed (`early`). A correction's is
    never covered: its decision may arrive after the snapshot, and its rows only then."""
    gone = [ev for ev in rows if ev.kind in _SUMMARIZED and ev.eff <= before and ev.lamport <= stable.get(ev.author, -1)
            and not early(ev)]
    existing = {(ev.eff, ev.eid): ev for ev in rows if ev.kind == "summary"}
    return gone, (pr.summarize(gone, existing) if gone else {}), existing


_SUMMARIZED = frozenset({"observation", "decision"})


def _summarized(rows: list[pr.Evidence], stable: dict[bytes, int], before: int,
                early: Callable[[pr.Evidence], bool]) -> list[pr.Evidence]:
    """`rows` after a snapshot's summary step (the rebuild's form of `PrefView._summarize`)."""
    gone, changed, _ = _summary_step(rows, stable, before, early)
    if not gone:
        return rows
    dropped = set(gone)
    return [ev for ev in rows if ev not in dropped and (ev.kind != "summary" or (ev.eff, ev.eid) not in changed)] \
        + list(changed.values())


def _by_key(name: str) -> tuple[bytes, str]:
    return setting_key(name), name


def _cap(raw) -> int | None:
    return _U64.unpack(raw)[0] if raw else None


def _early_row(fact: pr.Fact) -> bytes:
    """An unwitnessed evidence event's row in views.pref.early: its effective time and where its evidence lies."""
    ref = b"c" + fact.payload.decision if fact.kind == "correction" else b"s" + fact.payload.setting.encode()
    return _EARLY.pack(fact.eff, pr.clamp_time(fact.time_ms)) + ref


def _early_key(author: bytes, time_ms: int, eid: bytes) -> bytes:
    """The key of an unwitnessed event's row: by its (clamped) time, so that a batch's rows lie together."""
    return author + _UNWITNESSED + _PACK_U64(time_ms) + eid


_EARLY = struct.Struct(">QQ")
_WITNESS, _UNWITNESSED = b"\x00", b"\x01"
_EARLY_EID = 41                     # where the event id begins in an unwitnessed event's key


def _pending_row(fact: pr.Fact) -> bytes:
    return _U64.pack(fact.eff) + _decision_row(fact)


def _fact_from_row(eid: bytes, kind: str, raw: bytes, eff: int = 0) -> pr.Fact:
    """A decision (or a pending correction) as the pref view keeps it: its place, times and payload."""
    author, epoch, seq, lamport, time_ms = _DECISION.unpack_from(raw)
    return pr.Fact(
        author, epoch, seq, lamport, time_ms, eff, kind, eid, payloads.decode(kind, bytes(raw[_DECISION.size :]))
    )


def decision_in_row(raw: bytes) -> payloads.Decision:
    """The decision a `views.pref.decisions` row keeps (its payload, after its place and times)."""
    return payloads.decode("decision", bytes(raw[_DECISION.size :]))


def _decision_row(fact: pr.Fact, encode: Callable[[Any], bytes] = payloads.encode) -> bytes:
    return _DECISION.pack(fact.author, fact.epoch, fact.seq, fact.lamport, fact.time_ms) + encode(fact.payload)


def _rows_under(txn, db, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of `db` whose key begins with `prefix`, copied."""
    with txn.cursor(db=db) as cur:
        rows, found = [], cur.set_range(prefix)
        while found and cur.key()[: len(prefix)] == prefix:
            rows.append((bytes(cur.key()), bytes(cur.value())))
            found = cur.next()
    return rows


class PrefView:
    """Folds events into the preference view and reads it, inside the store's transactions."""

    def __init__(self, dbs: dict, time_of: Callable[[Any, bytes, int, int], int | None],
                 event_of: Callable[[Any, bytes], tuple[Header, bytes, Any] | None]):
        """`time_of(txn, author, epoch, seq)` gives a stored event's time; `event_of(txn, id)` an event's
        header, id and decoded payload (both None when not held)."""
        self.settings, self.evidence = dbs["views.pref"], dbs["views.pref.evidence"]
        self.pending, self.seen = dbs["views.pref.pending"], dbs["views.pref.seen"]
        self.decisions, self.early = dbs["views.pref.decisions"], dbs["views.pref.early"]
        self._time_of, self._event_of = time_of, event_of
        # setting -> (bytes written, their state): reused while those bytes are stored (an abort leaves others)
        self._folded: dict[str, tuple[bytes, pr.Setting]] = {}

    def setting_of(self, name: str, raw: bytes) -> pr.Setting:
        """The state a setting's stored bytes `raw` encode: the fold's own parse when it just wrote them."""
        return self.folded(name, raw) or pr.Setting.from_bytes(name, bytes(raw))

    def folded(self, name: str, raw: bytes) -> pr.Setting | None:
        """The fold's own state of a setting when it just wrote `raw` (unchanged since, so `only` holds), else None."""
        hit = self._folded.get(name)
        return hit[1] if hit is not None and hit[0] == raw else None

    # -- folding ----------------------------------------------------------------

    def fold(self, txn, batch: list[Folded], kept: dict | None = None, notes: dict | None = None) -> None:
        """Fold a batch of newly stored events, in their causal order, in O(batch).

        `kept`: event id -> the newest time its author had seen at it, for events a compaction snapshot's state
        folded without their payload (docs/compaction.md, "Sealed scopes"): only their payload is folded now,
        as of then, in whatever order. `notes`: event ids whose newest time to record there as they are folded.
        """
        times, facts = None, {}
        open_settings: dict[str, tuple[pr.Setting, Index] | None] = {}
        seen: dict[bytes, int | None] = {}
        caps: dict[bytes, int | None] = {}          # an author's witness cap, read once (a witness changes them)
        early_rows: list[tuple[bytes, bytes]] = []   # views.pref.early rows, written before anything reads them
        kinds, evidence_kinds, new, direct = pr.KINDS, pr.EVIDENCE_KINDS, tuple.__new__, pr.direct_evidence
        lo, hi, lead = MIN_TIME_MS, MAX_TIME_MS, pr.LEAD_MS
        for f in batch:
            author, epoch, seq, lamport, time_ms, kind, clock, eid, payload, _ = f
            if not lo <= time_ms <= hi:
                time_ms = pr.clamp_time(time_ms)
            if kept is not None and eid in kept:
                newest = kept[eid]           # its clock's effects are in the state already
            else:
                try:
                    newest = seen[author]
                except KeyError:
                    raw = txn.get(author, db=self.seen)
                    newest = _U64.unpack(raw)[0] if raw else None
                if clock:
                    if times is None:
                        times = {(e.author, e.epoch, e.seq): e.time_ms for e in batch}
                    newest = self._newest_seen(txn, f, times, newest)
                    self._put_early(txn, early_rows)
                    self._witness(txn, f, facts, open_settings)
                    caps.clear()
                seen[author] = newest
                if notes is not None and eid in notes:
                    notes[eid] = newest
            if kind not in kinds or payload is None:
                if kind == "snapshot" and payload is not None:
                    self._put_early(txn, early_rows)
                    self._summarize(txn, payload, open_settings)
                continue
            early = newest is None and kind in evidence_kinds
            if newest is not None:                       # pr.effective_time, inline
                eff = time_ms if time_ms <= newest + lead else newest + lead
            elif early:
                if author not in caps:
                    caps[author] = _cap(txn.get(author, db=self.early))
                cap = caps[author]
                eff = time_ms if cap is None or time_ms <= cap else cap
            else:
                eff = time_ms
            if kind == "observation":       # the common case, without a Fact: none reads it
                if early:
                    row = _EARLY.pack(eff, time_ms) + b"s" + payload.setting.encode()       # as _early_row
                    early_rows.append((_early_key(author, time_ms, eid), row))
                ev = direct(kind, payload, eff, eid, lamport, author, time_ms)
                if ev is not None:
                    opened = open_settings.get(payload.setting, _UNOPENED)
                    if opened is _UNOPENED:
                        opened = self._setting(txn, payload.setting, open_settings)
                    if opened is not None:
                        opened[1].waiting.append(ev)
                continue
            fact = new(pr.Fact, (author, epoch, seq, lamport, time_ms, eff, kind, eid, payload))
            facts[eid] = fact
            if early:
                early_rows.append((_early_key(author, time_ms, eid), _early_row(fact)))
            self._apply(txn, fact, facts, open_settings)
        self._put_early(txn, early_rows)
        if len(self._folded) > 4096:
            self._folded.clear()
        for author, newest in seen.items():
            if newest is not None:
                txn.put(author, _U64.pack(newest), db=self.seen)
        self._save(txn, open_settings)

    def _put_early(self, txn, rows: list[tuple[bytes, bytes]]) -> None:
        """Write the unwitnessed events' rows a batch has gathered so far (one LMDB call, not one per row)."""
        if rows:
            rows.sort()
            txn.cursor(db=self.early).putmulti(rows)
            rows.clear()

    @staticmethod
    def _flush(open_settings: dict) -> None:
        """Fold every open setting's waiting evidence: before anything reads a setting's sums or evidence
        other than to add to them (a statement, a witness, a snapshot, saving)."""
        for opened in open_settings.values():
            if opened and opened[1].waiting:
                s, index = opened
                s.add_many(index.waiting, index)
                index.waiting = []

    def _save(self, txn, open_settings: dict) -> None:
        """Write the open states, each deleted first: LMDB merges the leaf an outgrown state left nearly empty."""
        self._flush(open_settings)
        for name, opened in open_settings.items():
            if opened is not None:
                key, raw = name.encode(), opened[0].to_bytes()
                txn.delete(key, db=self.settings)            # an update in place never merges: more pages a commit
                txn.put(key, raw, db=self.settings)
                self._folded[name] = (raw, opened[0])

    def _witness(self, txn, f: Folded, facts: dict, open_settings: dict) -> None:
        """For each author `f`'s clock names for the first time from `f`'s author: raise that author's witness
        cap to `f`'s if higher, and move its unwitnessed evidence to its new effective time (in its setting's
        sums, which are folded again)."""
        cap = pr.witness_cap(f.time_ms)
        for c in f.clock:
            first = c.author + _WITNESS + f.author
            if txn.get(first, db=self.early) is not None:
                continue
            txn.put(first, b"", db=self.early)
            old = _cap(txn.get(c.author, db=self.early))
            if old is not None and old >= cap:
                continue
            txn.put(c.author, _U64.pack(cap), db=self.early)
            self._flush(open_settings)
            moved = {}
            for key, raw in _rows_under(txn, self.early, c.author + _UNWITNESSED):
                eff, time_ms = _EARLY.unpack_from(raw)
                new = pr.effective_time(time_ms, None, cap)
                if new != eff:
                    eid = key[_EARLY_EID:]
                    if eid in facts:             # a pending correction of this batch is read from here
                        facts[eid] = facts[eid]._replace(eff=new)
                    opened = self._move(txn, eid, raw, new, facts, open_settings)
                    if opened is not None:
                        moved[opened[0].name] = opened
                    txn.put(key, _EARLY.pack(new, time_ms) + raw[_EARLY.size :], db=self.early)
            for s, index in moved.values():
                s.recompute(index.everything())

    def _move(self, txn, eid: bytes, row: bytes, new: int, facts: dict,
              open_settings: dict) -> tuple[pr.Setting, Index] | None:
        """Move one unwitnessed event's evidence (or its pending correction) to effective time `new`; returns
        the setting whose sums must be folded again, if any."""
        eff, ref = _EARLY.unpack_from(row)[0], row[_EARLY.size + 1 :]
        name = ref.decode() if row[_EARLY.size : _EARLY.size + 1] == b"s" else None
        if name is None:
            decision = self._decision(txn, ref, facts)
            if decision is None:
                pending = txn.get(ref + eid, db=self.pending)
                if pending is not None:
                    txn.put(ref + eid, _U64.pack(new) + bytes(pending)[8:], db=self.pending)
                return None
            name = decision.payload.setting
        if pr.setting_problem(name):
            return None
        skey = setting_key(name)
        found = [(key, bytes(raw)) for key in (skey + _U64.pack(eff) + eid + ROLE_BYTE[role] for role in (0, 1))
                 if (raw := txn.get(key, db=self.evidence)) is not None]
        if not found:
            return None             # evidence of no weight left no row: the setting stays as a rebuild leaves it
        opened = self._setting(txn, name, open_settings)
        for key, raw in found:
            txn.delete(key, db=self.evidence)
            opened[1].put(evidence_from(key, raw)._replace(eff=new))
        return opened

    def _newest_seen(self, txn, f: Folded, times: dict, newest: int | None) -> int | None:
        """The newest time of another device's event its author had seen at `f`: `newest` (as of its
        previous event) or a time its clock names, from the batch (`times`) or the store."""
        for c in f.clock:
            t = times.get((c.author, c.epoch, c.seq))
            if t is None:
                t = self._time_of(txn, c.author, c.epoch, c.seq)
            if t is not None and (newest is None or t > newest):
                newest = pr.clamp_time(t)
        return newest

    def _setting(self, txn, name: str, open_settings: dict) -> tuple[pr.Setting, Index] | None:
        """The setting `name` names, and its evidence, as this batch folds them (None: not a setting name)."""
        try:
            return open_settings[name]
        except KeyError:
            pass
        if pr.setting_problem(name):
            opened = None
        else:
            raw = txn.get(name.encode(), db=self.settings)
            hit = self._folded.pop(name, None)
            if raw is None:
                s = pr.Setting(name)
            elif hit is not None and hit[0] == raw:
                s = hit[1]
            else:
                s = pr.Setting.from_bytes(name, bytes(raw))
            opened = (s, Index(txn, self.evidence, setting_key(name)))
        open_settings[name] = opened
        return opened

    def _apply(self, txn, fact: pr.Fact, facts: dict, open_settings: dict) -> None:
        """Fold a decision, correction or statement (`fold` folds an observation itself)."""
        if fact.kind == "correction":
            decision = self._decision(txn, fact.payload.decision, facts)
            if decision is None:
                txn.put(fact.payload.decision + fact.eid, _pending_row(fact), db=self.pending)
                return
            self._add(txn, decision.payload.setting, pr.evidence_of(fact, decision), open_settings)
            return
        if fact.kind == "decision":
            txn.put(fact.eid, _decision_row(fact), db=self.decisions)
            self._add(txn, fact.payload.setting, pr.evidence_of(fact), open_settings)
            for correction in self._pending_for(txn, fact.eid, facts):
                self._add(txn, fact.payload.setting, pr.evidence_of(correction, fact), open_settings)
            return
        opened = self._setting(txn, fact.payload.setting, open_settings)
        self._flush({None: opened})
        if opened is not None and opened[0].state(fact) == "recompute":
            s, index = opened
            everything = index.everything()
            for ev in everything:
                if ev.lamport < s.forget:
                    index.delete(ev)
            s.recompute(everything)

    def _add(self, txn, name: str, evidence: list[pr.Evidence], open_settings: dict) -> None:
        opened = self._setting(txn, name, open_settings) if evidence else None
        if opened is not None:
            opened[1].waiting += evidence

    def _decision(self, txn, did: bytes, facts: dict) -> pr.Fact | None:
        """The decision a correction names, if folded here (its event may since have been compacted away)."""
        fact = facts.get(did)
        if fact is None:
            raw = txn.get(did, db=self.decisions)
            if raw is None:
                return None
            fact = _fact_from_row(did, "decision", bytes(raw))
        return fact if fact.kind == "decision" and fact.payload is not None else None

    def decision(self, txn, did: bytes) -> payloads.Decision | None:
        fact = self._decision(txn, did, {})
        return fact.payload if fact is not None else None

    def _pending_for(self, txn, did: bytes, facts: dict) -> list[pr.Fact]:
        """Corrections that arrived before decision `did`, removed from the pending list."""
        rows = _rows_under(txn, self.pending, did)
        for key, _ in rows:
            txn.delete(key, db=self.pending)
        return [facts.get(key[32:]) or _fact_from_row(key[32:], "correction", raw[8:], _U64.unpack_from(raw)[0])
                for key, raw in rows]

    # -- snapshots ------------------------------------------------------------------

    def summarize(self, txn, snap: payloads.Snapshot) -> None:
        """What folding the snapshot does to the evidence, done ahead (its writer signs the state after
        it); folding the snapshot event afterwards finds nothing left to summarize."""
        open_settings: dict = {}
        self._summarize(txn, snap, open_settings)
        self._save(txn, open_settings)

    def _summarize(self, txn, snap: payloads.Snapshot, open_settings: dict) -> None:
        """Fold a snapshot: each setting's evidence at or below its stable frontier and cut becomes day summaries."""
        stable = {p.author: p.lamport for p in snap.stable}     # an author's lamports grow with its seq
        self._flush(open_settings)
        for cut in snap.cuts:
            opened = self._setting(txn, cut.setting, open_settings)
            if opened is None:
                continue
            s, index = opened
            rows = list(index.scan(0, cut.before + 1))
            gone, changed, existing = _summary_step(rows, stable, cut.before, partial(self._is_early, txn))
            if not gone:
                continue
            s.swap(gone, [ev._replace(weight=ev.weight - existing[k].weight) if k in existing else ev
                          for k, ev in changed.items()])
            for ev in gone:
                index.delete(ev)
            for ev in changed.values():
                index.put(ev)

    def _is_early(self, txn, ev: pr.Evidence) -> bool:
        return txn.get(_early_key(ev.author, ev.time_ms, ev.eid), db=self.early) is not None

    # -- rebuilding -----------------------------------------------------------------

    def clear(self, txn) -> None:
        for db in (self.settings, self.evidence, self.pending, self.seen, self.decisions, self.early):
            txn.drop(db, delete=False)

    def rebuild(self, txn, events: Iterable[Folded], progress: Callable[[int], None] | None = None) -> int:
        """Fold the whole log again from scratch, in memory, then write the view; returns events read.

        `events` yields the events in key order (author, epoch, seq), a fork's branches side by side.
        """
        self.clear(txn)
        folded: list[Folded] = []
        read = iter(events)
        while chunk := list(islice(read, 10_000)):
            folded += chunk
            if progress and len(chunk) == 10_000:
                progress(len(folded))
        clocked = list(filter(_CLOCK, folded))
        times, witnessed = {}, {}      # the times clocks name (by bisection); author 0x00 witness -> its first naming
        for f in clocked:
            for c in f.clock:
                witnessed.setdefault(c.author + _WITNESS + f.author, f.time_ms)
                i = bisect_right(folded, (c.author, c.epoch, c.seq), key=_POSITION)
                if i and _POSITION(folded[i - 1]) == (c.author, c.epoch, c.seq):     # a fork's: its last branch's
                    times[c.author, c.epoch, c.seq] = folded[i - 1].time_ms
        caps: dict[bytes, int] = {}
        for key, time_ms in witnessed.items():
            caps[key[:32]] = max(caps.get(key[:32], 0), pr.witness_cap(time_ms))
        early: dict[bytes, pr.Fact] = {}                  # author 0x01 event id -> an unwitnessed evidence fact
        seen, facts, snapshots = {}, [], []             # author -> newest time seen; the non-observation facts
        evidence: dict[str, list[pr.Evidence]] = {}        # observations' and decisions', taken here directly
        observed: dict[int, tuple | None] = {}             # id of an observation's payload -> how its evidence reads
        kinds, evidence_kinds, new, direct = pr.KINDS, pr.EVIDENCE_KINDS, tuple.__new__, pr.direct_evidence
        lo, hi, lead = MIN_TIME_MS, MAX_TIME_MS, pr.LEAD_MS
        for f in folded:
            author, epoch, seq, lamport, time_ms, kind, clock, eid, payload, _ = f
            if clock:
                newest = self._newest_seen(txn, f, times, seen.get(author))
                if newest is not None:
                    seen[author] = newest
            else:
                newest = seen.get(author)
            if kind not in kinds or payload is None:
                if kind == "snapshot" and payload is not None:
                    snapshots.append(f)
                continue
            if not lo <= time_ms <= hi:
                time_ms = pr.clamp_time(time_ms)
            if newest is not None:                       # pr.effective_time, inline
                eff = time_ms if time_ms <= newest + lead else newest + lead
            elif kind in evidence_kinds:
                eff = pr.effective_time(time_ms, None, caps.get(author))
                early[_early_key(author, time_ms, eid)] = new(pr.Fact, (author, epoch, seq, lamport, time_ms, eff,
                                                                        kind, eid, payload))
            else:
                eff = time_ms
            if kind == "observation":                     # pr.direct_evidence, its rule read once per payload
                how = observed.get(id(payload), False)
                if how is False:
                    ev = direct(kind, payload, eff, eid, lamport, author, time_ms)
                    how = observed[id(payload)] = None if ev is None else (
                        evidence.setdefault(payload.setting, []).append, ev.value, ev.context, ev.weight)
                if how is not None:
                    how[0](new(pr.Evidence, (eff, eid, 0, kind, how[1], how[2], how[3], lamport, author, time_ms)))
                continue
            if kind == "decision":
                ev = direct(kind, payload, eff, eid, lamport, author, time_ms)
                if ev is not None:
                    evidence.setdefault(payload.setting, []).append(ev)
            facts.append(new(pr.Fact, (author, epoch, seq, lamport, time_ms, eff, kind, eid, payload)))
        snapshots.sort(key=lambda f: (f.lamport, f.author, f.epoch, f.seq))
        txn.cursor(db=self.early).putmulti(sorted([(a, _U64.pack(cap)) for a, cap in caps.items()]
                                                  + [(key, b"") for key in witnessed]
                                                  + [(key, _early_row(f)) for key, f in early.items()]))
        self._write_rebuilt(txn, facts, seen, evidence, [f.payload for f in snapshots],
                            lambda ev: _early_key(ev.author, ev.time_ms, ev.eid) in early)
        return len(folded)

    def _write_rebuilt(self, txn, facts: list[pr.Fact], seen: dict[bytes, int],
                       evidence: dict[str, list[pr.Evidence]], snapshots: list[payloads.Snapshot],
                       early: Callable[[pr.Evidence], bool]) -> None:
        """Write the view from the non-observation facts and the evidence rebuild took directly; each
        snapshot (in causal order) summarizes what it covers, as folding it does (`_summarize`)."""
        decisions = {f.eid: f for f in facts if f.kind == "decision"}
        by_setting: dict[str, list[pr.Fact]] = {}
        pending = []
        for f in facts:
            if f.kind == "correction":
                d = decisions.get(f.payload.decision)
                if d is None:
                    pending.append((f.payload.decision + f.eid, _pending_row(f)))
                elif not pr.setting_problem(d.payload.setting):
                    evidence.setdefault(d.payload.setting, []).extend(pr.evidence_of(f, d))
            elif f.kind in pr.EVIDENCE_KINDS:
                continue
            elif not pr.setting_problem(f.payload.setting):
                by_setting.setdefault(f.payload.setting, []).append(f)
        rows, states, order = [], [], {"pref.config": 0, "pref.forget": 1}
        for name in sorted(set(by_setting) | {n for n, evs in evidence.items() if evs}, key=_by_key):
            s = pr.Setting(name)
            for f in sorted(by_setting.get(name, ()), key=lambda f: (order.get(f.kind, 2), f.author, f.epoch, f.seq,
                                                                       f.eid)):
                s.state(f)
            kept = evidence.get(name, [])
            if s.forget:
                kept = [ev for ev in kept if ev.lamport >= s.forget]
            for snap in snapshots:
                for cut in snap.cuts:
                    if cut.setting == name:
                        kept = _summarized(kept, {p.author: p.lamport for p in snap.stable}, cut.before, early)
            s.recompute(kept)
            ordered = evidence_rows(setting_key(name), kept)
            ordered.sort()                  # the settings in key order: their rows, each sorted, are in order whole
            rows += ordered
            states.append((name.encode(), s.to_bytes()))
        txn.cursor(db=self.evidence).putmulti(rows, append=True)
        txn.cursor(db=self.settings).putmulti(sorted(states))
        txn.cursor(db=self.decisions).putmulti(sorted((eid, _decision_row(d, payloads.encode_decoded))
                                                      for eid, d in decisions.items()), append=True)
        txn.cursor(db=self.pending).putmulti(sorted(pending))
        txn.cursor(db=self.seen).putmulti(sorted((a, _U64.pack(t)) for a, t in seen.items()), append=True)
        txn.put(VERSION_KEY, _VERSION, db=self.settings)

    def upgrade_base(self, txn) -> None:
        """A compaction base's states written by an older reducer version (whose dropped events cannot be
        folded again: the state is kept as it is) re-encoded in this version's encoding, and the view stamped
        current: else every open would refold, and the digest would differ from a peer's that folded the same
        events. A base from a newer version is left alone."""
        if self.version(txn) >= pr.VERSION:
            return
        with txn.cursor(db=self.settings) as cur:
            rows = [(bytes(k), bytes(v)) for k, v in cur if k != VERSION_KEY]
        for key, raw in rows:
            txn.put(key, pr.Setting.from_bytes(key.decode(), raw).to_bytes(), db=self.settings)
        with txn.cursor(db=self.early) as cur:          # before version 5: author 0x01 event id, not by time
            moved = [(bytes(k), bytes(v)) for k, v in cur if len(k) == 65 and k[32:33] == _UNWITNESSED]
        for key, raw in moved:
            txn.delete(key, db=self.early)
            txn.put(_early_key(key[:32], _EARLY.unpack_from(raw)[1], key[33:]), raw, db=self.early)
        txn.put(VERSION_KEY, _VERSION, db=self.settings)

    # -- reading ------------------------------------------------------------------------

    def version(self, txn) -> int:
        return int.from_bytes(txn.get(VERSION_KEY, db=self.settings) or b"\0", "big")

    def current(self, txn) -> bool:
        return txn.get(VERSION_KEY, db=self.settings) == _VERSION

    def raw_setting(self, txn, name: str) -> bytes | None:
        return txn.get(name.encode(), db=self.settings)

    def setting(self, txn, name: str) -> pr.Setting | None:
        raw = txn.get(name.encode(), db=self.settings)
        return pr.Setting.from_bytes(name, bytes(raw)) if raw else None

    def names(self, txn) -> list[str]:
        with txn.cursor(db=self.settings) as cur:
            return [bytes(k).decode() for k in cur.iternext(keys=True, values=False) if k != VERSION_KEY]

    def evidence_of(self, txn, name: str) -> list[pr.Evidence]:
        return Index(txn, self.evidence, setting_key(name)).everything()

    def digest(self, txn) -> bytes:
        """BLAKE2b-256 of the view's canonical bytes: every key and value of its databases, in order."""
        h, length = hashlib.blake2b(digest_size=32), _U32.pack
        for db in (self.settings, self.evidence, self.pending, self.seen, self.decisions, self.early):
            h.update(b"\xff")
            with txn.cursor(db=db) as cur:
                h.update(b"".join([length(len(k)) + k + length(len(v)) + v for k, v in cur.iternext()]))
        return h.digest()


def folded_from_log(txn, events_db, payloads_db, limits: dict[bytes, int] | None = None,
                    opener: Callable[[bytes, bytes, bytes], bytes | None] | None = None) -> Iterator[Folded]:
    """Every stored event as the view folds it, in key order (author, epoch, seq); undecodable ones skipped,
    and so are a revoked device's events past its revocation seq (`limits`: device -> last seq that counts).
    A sealed payload is folded when `opener(event key, header bytes, envelope)` gives its plain bytes.
    Records were validated when stored, so only the fields the view folds are read. Payloads repeat, so each
    distinct small one is decoded once; an author's events share one author object, each kind one string."""
    kinds, new, author = pr.KINDS | MEMORY_KINDS | {"snapshot"}, tuple.__new__, b""
    named, decoded = {kind: kind for kind in kinds}, {}
    peek, unpack, blake2b, sig = PEEK_READER.read_stored, _POS.unpack_from, hashlib.blake2b, crypto.SIG_LEN
    with txn.cursor(db=events_db) as cur, txn.cursor(db=payloads_db) as pcur:
        stored = iter(pcur)                          # payloads share the events' keys: read them alongside
        pkey, pvalue = next(stored, (None, None))
        for key, record in cur:
            if limits and key[:32] in limits and unpack(key, 32)[1] > limits[key[:32]]:
                continue
            while pkey is not None and pkey < key:
                pkey, pvalue = next(stored, (None, None))
            header = record[:-sig]
            try:
                lamport, time_ms, kind, codec, clock = peek(header, "header")
                kind, payload = named.get(kind, kind), None
                if kind in kinds and codec == "sealed" and pkey == key and opener is not None:
                    plain = opener(key, header, pvalue)
                    payload = None if plain is None else payloads.decode(kind, plain)
                elif kind in kinds and codec == "plain" and pkey == key:
                    payload = decoded.get((kind, pvalue))
                    if payload is None:
                        payload = payloads.decode_stored(kind, pvalue)
                        if len(pvalue) <= _CACHED_PAYLOAD and len(decoded) < _CACHED_PAYLOADS:
                            decoded[kind, pvalue] = payload
            except EventError:
                continue
            author = author if key[:32] == author else key[:32]
            epoch, seq = unpack(key, 32)
            eid = blake2b(header, digest_size=32).digest()
            yield new(Folded, (author, epoch, seq, lamport, time_ms, kind, clock, eid, payload,
                               decode_header(header).scope if kind == "memory.put" else ""))
