"""One preference's or one memory's history, and the difference between two points, from a replay.

A history folds the held order (agentlog.store.scratch) one event at a time, as the device took them,
with the store's own PrefView or MemoryView in a scratch environment, and reads the setting
(as `store.prefs.get` does, at the event's arrival) or the entry after each event that touches
it. Events that do not touch it are folded without their payload: they still move the causal
past and the times each author had seen, which effective times and conflicts depend on.
An erased event of the setting or entry (docs/erasure.md) is a step of its own that shows who erased it,
when and why, never its content; the fold goes on without it, as the live views do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentlog.errors import NotFoundError, UsageError
from agentlog.gcpause import quiet_gc
from agentlog.log import payloads
from agentlog.log.validate import ROSTER_KINDS
from agentlog.memory import reducer as mr
from agentlog.memory import view as memory_view
from agentlog.memory.api import entry_of
from agentlog.prefs import reducer as pr
from agentlog.prefs import view as pref_view
from agentlog.prefs.view import Folded, PrefView
from agentlog.store.erasure import Erasure
from agentlog.store.retained import contexts
from agentlog.store.scratch import Log, Point, Scratch
from agentlog.text import iso

_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class Step:
    """The state of one setting or entry right after `event` (a Folded), held at `arrival`."""

    event: Folded
    arrival: int
    state: dict[str, Any]
    changed: bool
    start: bool = False             # the state at the compaction snapshot the history starts from
    erased: Erasure | None = None   # the event's content was erased: by which request, whose, when, why

    def to_json(self, name_of: Callable[[bytes], str]) -> dict:
        f = self.event
        return {"event": f.eid.hex(), "device": name_of(f.author), "author": f.author.hex(), "seq": f.seq,
                "kind": f.kind, "time": iso(f.time_ms), "held": iso(self.arrival), "changed": self.changed,
                "from_snapshot": self.start, "erased": erased_json(self.erased, name_of), **self.state}


def erased_json(erased: Erasure | None, name_of: Callable[[bytes], str]) -> dict | None:
    """An erasure as a replay shows it: the request's id (by), the requesting device, when and why."""
    if erased is None:
        return None
    return {"by": erased.request.hex(), "device": name_of(erased.by) if erased.by else "?",
            "time": iso(erased.time_ms), "reason": erased.reason}


def _stripped(f: Folded) -> Folded:
    return _new(Folded, (f.author, f.epoch, f.seq, f.lamport, f.time_ms, f.kind, f.clock, f.eid, None, f.scope))


def _history(log: Log, n: int, which: str, touches: Callable[[Folded], bool], read: Callable[[Any, Any, int], dict],
             same: Callable[[dict, dict], bool], erased: Callable[[Folded], Erasure | None]) -> list[Step]:
    """Fold the first n events of the held order one by one into the scratch's `which` view ("pref" or
    "memory"); a Step after each one `touches` accepts, from read(view, txn, arrival), and one (the state
    unchanged) for each erased event `erased` says was about it.

    An event that does not touch it and carries no clock entries is not folded at all: it would
    change neither the times its author had seen nor any causal past a later event of it reads.
    Such events are only counted as held (for the times and events the fold looks up), in bulk, before
    the next event that is folded: the loop visits only the events it folds or shows.
    On a compacted store (`log.base`) the fold starts from the snapshot's state, and the first Step
    is that state, read at the snapshot's time.
    """
    base = log.base
    events, order = log.events, log.order[:n]
    held = _Held(log, order)
    limits: dict[bytes, int] = {}

    def time_of(txn, author: bytes, epoch: int, seq: int) -> int | None:
        """A held event's time, as the store's own lookup gives it (None past a revocation)."""
        if seq > limits.get(author, seq):
            return None
        t = held.time_of(author, epoch, seq)
        return t if t is not None else log.time_of(txn, author, epoch, seq)

    def event_of(txn, eid: bytes):
        f = held.event_of(eid)
        return _as_event(f) if f is not None else log.event_of(txn, eid)

    newest, past = contexts(base.kept, log.events) if base is not None else ({}, {})   # kept beside the snapshot
    marks = [k for k, f in enumerate(map(events.__getitem__, order))
             if f.clock or f.kind in ROSTER_KINDS or (f.payload is None and f.eid in log.erased) or touches(f)]
    with quiet_gc(), Scratch(time_of, event_of, initial=base.rows() if base else None) as scratch:
        view = _HeldPrefView(scratch.db, time_of, event_of) if which == "pref" else scratch.memory
        names = pref_view.DBS if which == "pref" else memory_view.DBS
        kept = newest if which == "pref" else past

        def run(txn) -> list[Step]:
            _release(view)
            held.done = 0
            held.skipped.clear()
            limits.clear()
            limits.update(log.limits([]))                   # the base snapshot's roster (none: nothing)
            steps: list[Step] = []
            batch: list[Folded] = []
            folded: list[Folded] = []
            before: dict | None = None
            if base is not None:
                scratch.load(txn, [name for name in names if name in scratch.initial])
                before = read(view, txn, base.time_ms)
                steps.append(Step(base.event, base.time_ms, before, True, start=True))
            for k in marks:
                folded += held.take(k + 1, limits)
                i = order[k]
                f = events[i]
                if f.seq > limits.get(f.author, f.seq):
                    continue
                hit = touches(f)
                gone = erased(f) if f.payload is None else None
                if gone is not None:
                    steps.append(Step(f, log.arrival[i], {} if before is None else before, False, erased=gone))
                if hit:
                    batch.append(f)
                elif f.clock:
                    batch.append(_stripped(f))
                if f.kind in ROSTER_KINDS:
                    view.fold(txn, batch, kept=kept)
                    batch = []
                    limits.clear()
                    limits.update(log.limits(folded))
                    if any(g.seq > limits.get(g.author, g.seq) for g in folded):
                        folded = [g for g in folded if g.seq <= limits.get(g.author, g.seq)]
                        if base is None:
                            in_order = sorted(folded, key=lambda g: (g.author, g.epoch, g.seq, g.eid))
                            view.rebuild(txn, [g if touches(g) else _stripped(g) for g in in_order])
                            _release(view)
                        else:                           # again from the snapshot's state, in the held order
                            scratch.load(txn, [name for name in names if name in scratch.initial])
                            _release(view)
                            view.fold(txn, [g if touches(g) else _stripped(g) for g in folded], kept=kept)
                if hit:
                    view.fold(txn, batch, kept=kept)
                    batch = []
                    state = read(view, txn, log.arrival[i])
                    steps.append(Step(f, log.arrival[i], state, before is None or not same(before, state)))
                    before = state
            return steps
        return scratch.write(run)


class _HeldPrefView(PrefView):
    """A history's preference view: each setting's state kept here from one fold to the next instead of encoded
    and written after every event (a third of a --setting history's fold); nothing else reads the states."""

    def __init__(self, dbs: dict, time_of, event_of):
        super().__init__(dbs, time_of, event_of)
        self.held: dict[str, pr.Setting] = {}

    def _save(self, txn, open_settings: dict) -> None:
        self._flush(open_settings)
        for name, opened in open_settings.items():
            if opened is not None:
                if name not in self.held:            # a stored state (a snapshot's, a rebuild's) is old from now on
                    txn.delete(name.encode(), db=self.settings)
                self.held[name] = opened[0]

    def _setting(self, txn, name: str, open_settings: dict):
        """As PrefView's, with the held state in place of a stored one."""
        opened = super()._setting(txn, name, open_settings)
        if opened is not None and name in self.held and opened[0] is not self.held[name]:
            opened = open_settings[name] = (self.held[name], opened[1])
        return opened

    def state(self, txn, name: str) -> pr.Setting | None:
        """The setting's state after the events folded so far (None: none named it)."""
        if name in self.held:
            return self.held[name]
        raw = txn.get(name.encode(), db=self.settings)
        return None if raw is None else self.setting_of(name, raw)


def _release(view) -> None:
    """Forget a history's held states once the view's databases were written otherwise (a rebuild, a reload)."""
    if isinstance(view, _HeldPrefView):
        view.held.clear()


class _Held:
    """Which events of the held order (indices in `log.events`) a history has counted as held: the first
    `done`, less those `skipped` as past a revocation then; looked up only when the fold asks for one."""

    def __init__(self, log: Log, order: list[int]):
        self.log, self.order, self.done, self.skipped = log, order, 0, set()
        self._rank: dict[int, int] | None = None
        self._ids: dict[bytes, int] | None = None

    def take(self, upto: int, limits: dict[bytes, int]) -> list[Folded]:
        """Count the held order's events up to `upto` as held, but those past a revocation in `limits`;
        returns the ones counted."""
        events = self.log.events
        taken = list(map(events.__getitem__, self.order[self.done:upto]))
        if limits:
            self.skipped.update(i for i in self.order[self.done:upto]
                                if events[i].seq > limits.get(events[i].author, events[i].seq))
            taken = [f for f in taken if f.seq <= limits.get(f.author, f.seq)]
        self.done = upto
        return taken

    def _held(self, i: int) -> int | None:
        """Event i's place in the held order if it is counted as held, else None."""
        if self._rank is None:
            self._rank = dict(zip(self.order, range(len(self.order))))
        place = self._rank.get(i)
        return place if place is not None and place < self.done and i not in self.skipped else None

    def time_of(self, author: bytes, epoch: int, seq: int) -> int | None:
        """The time of the event held there (of a fork's branches, the one counted last), else None."""
        found = [(place, i) for i in self.log.at(author, epoch, seq) if (place := self._held(i)) is not None]
        return self.log.events[max(found)[1]].time_ms if found else None

    def event_of(self, eid: bytes) -> Folded | None:
        if self._ids is None:
            self._ids = {f.eid: i for i, f in enumerate(self.log.events)}
        i = self._ids.get(eid)
        return None if i is None or self._held(i) is None else self.log.events[i]


def _as_event(f: Folded | None):
    """(header, id, payload) as PrefView's event_of gives them; a Folded has the header fields it reads."""
    return None if f is None else (f, f.eid, f.payload)


def _erased_by(log: Log, about: Callable[[payloads.Erase], bool]) -> Callable[[Folded], Erasure | None]:
    """For _history: an event's erasure when a request `about` accepts erased it (it named the setting or
    entry), else None."""
    def erased(f: Folded) -> Erasure | None:
        gone = log.erased.get(f.eid)
        request = log.requests.get(gone.request) if gone is not None else None
        return gone if request is not None and about(request) else None
    return erased


# -- one setting ----------------------------------------------------------------------------------------

def setting_history(log: Log, point: Point, setting: str, device: bytes,
                    context: tuple[tuple[str, str], ...] = ()) -> list[Step]:
    """The setting's answer on `device` in `context` after each event of it held up to `point`.

    Raises:
        NotFoundError: no event up to the point names the setting.
    """
    n = log.prefix(point)
    decisions = {f.eid for f in log.events
                 if f.kind == "decision" and f.payload is not None and f.payload.setting == setting}
    base_rows = log.base.rows() if log.base else {}
    for eid, row in base_rows.get("views.pref.decisions", ()):      # decisions the snapshot keeps
        if pref_view.decision_in_row(row).setting == setting:
            decisions.add(bytes(eid))

    def touches(f: Folded) -> bool:
        p = f.payload
        if p is not None and f.kind == "snapshot":           # it folds the setting's old evidence into summaries
            return any(cut.setting == setting for cut in p.cuts)
        if p is None or f.kind not in pr.KINDS:
            return False
        return p.decision in decisions if f.kind == "correction" else p.setting == setting

    key, device_hex = setting.encode(), device.hex()

    def read(view, txn, now: int) -> dict:
        state = view.state(txn, setting)
        a = pr.default_answer(setting) if state is None else pr.answer(state, device_hex, context, now)
        return {"value": a.value, "confidence": round(a.confidence, 4), "source": a.source,
                "uncertain": a.uncertain, "stale_override": a.stale_override}

    steps = _history(log, n, "pref", touches, read,
                     lambda a, b: (a["value"], a["source"]) == (b["value"], b["source"]),
                     _erased_by(log, lambda request: request.setting == setting))
    known = any(k == key for k, _ in base_rows.get("views.pref", ()))
    if not [s for s in steps if not s.start] and not known:
        raise NotFoundError(f"no event held up to {point.text} names the setting {setting!r}")
    return steps


# -- one memory entry -----------------------------------------------------------------------------------

def entry_ids(log: Log) -> list[bytes]:
    """Every memory entry id the log (and the base snapshot it starts from) names, sorted."""
    found = {f.payload.entry for f in log.events if f.kind in mr.KINDS and f.payload is not None}
    erased = {request.entry for request in log.requests.values() if request.entry}
    return sorted(found | erased | _base_entries(log))


def _base_entries(log: Log) -> set[bytes]:
    if log.base is None:
        return set()
    return {bytes(k) for k, _ in log.base.rows()["views.memory"] if len(k) == mr.ENTRY_ID_LEN}


def entry_named(log: Log, text: str) -> bytes:
    """The entry id that `text` names: its hex, or a unique prefix of 4 or more hex digits.

    Raises:
        UsageError: malformed, unknown or ambiguous.
    """
    text = text.strip().lower()
    if not 4 <= len(text) <= 2 * mr.ENTRY_ID_LEN or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(f"memory id {text!r} must be 4 to {2 * mr.ENTRY_ID_LEN} hex digits")
    found = [i for i in entry_ids(log) if i.hex().startswith(text)]
    if not found:
        raise NotFoundError(f"no memory whose id starts with {text} in this device's log")
    if len(found) > 1:
        raise UsageError(f"memory id prefix {text} is ambiguous: give more digits")
    return found[0]


def memory_state(entry: mr.Entry | None) -> dict:
    """What a history or diff shows of an entry: its fields, tags, deletion and conflicts."""
    if entry is None or entry.origin is None:
        return {"exists": False}
    m = entry_of(entry)
    return {"exists": True, "type": m.type, "content": m.content, "tags": list(m.tags), "confidence": m.confidence,
            "scope": m.scope, "deleted": m.is_deleted,
            "conflicts": {name: [c.value for c in cs] for name, cs in sorted(m.conflicts.items())}}


def memory_history(log: Log, point: Point, entry_id: bytes) -> list[Step]:
    """The entry after each event of it held up to `point`.

    Raises:
        NotFoundError: no event up to the point names the entry.
    """
    def touches(f: Folded) -> bool:
        return f.kind in mr.KINDS and f.payload is not None and entry_id in (f.payload.entry,
                                                                             getattr(f.payload, "into", None))

    steps = _history(log, log.prefix(point), "memory", touches,
                     lambda view, txn, _now: memory_state(view.entry(txn, entry_id)), lambda a, b: a == b,
                     _erased_by(log, lambda request: request.entry == entry_id))
    if not [s for s in steps if not s.start] and entry_id not in _base_entries(log):
        raise NotFoundError(f"no event held up to {point.text} names memory {entry_id.hex()}")
    return steps


# -- the state at a point, and the difference between two ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class State:
    """Every setting's answer (no context) and every entry, as a replay left them."""

    answers: dict[str, pr.Answer]
    entries: dict[bytes, dict]


def state_of(scratch: Scratch, device: bytes, now_ms: int) -> State:
    """Read a replay's scratch views: answers on `device` at `now_ms`, entries as memory_state."""
    def read(txn):
        answers = {name: pr.answer(scratch.pref.setting(txn, name), device.hex(), (), now_ms)
                   for name in scratch.pref.names(txn)}
        entries = {i: memory_state(scratch.memory.entry(txn, i)) for i in scratch.memory.entry_ids(txn)}
        return State(answers, {i: e for i, e in entries.items() if e["exists"]})
    return scratch.read(read)


def diff(before: State, after: State) -> dict:
    """Settings whose value or source changed, and entries added, changed or deleted, from `before` to `after`."""
    settings = []
    for name in sorted(set(before.answers) | set(after.answers)):
        a = before.answers.get(name) or pr.default_answer(name)
        b = after.answers.get(name) or pr.default_answer(name)
        if (a.value, a.source) != (b.value, b.source):
            settings.append({"setting": name, "before": _answer(a), "after": _answer(b)})
    memory: dict[str, list] = {"added": [], "changed": [], "deleted": []}
    for i in sorted(set(before.entries) | set(after.entries)):
        a, b = before.entries.get(i), after.entries.get(i)
        if a == b or b is None:
            continue
        if a is None or a["deleted"] and not b["deleted"]:
            memory["added"].append({"id": i.hex(), "after": b})
        elif b["deleted"] and not a["deleted"]:
            memory["deleted"].append({"id": i.hex(), "before": a})
        else:
            memory["changed"].append({"id": i.hex(), "before": a, "after": b,
                                      "fields": sorted(k for k in b if a.get(k) != b[k])})
    return {"settings": settings, "memory": memory}


def _answer(a: pr.Answer) -> dict:
    return {"value": a.value, "confidence": round(a.confidence, 4), "source": a.source}
