"""The views as this device held them at a point, folded again in a scratch LMDB environment.

It lives in the store part, not in agentlog.replay: `agentlog verify` folds every view again this way
too, and the store may not import the replay feature (points in time, histories, diffs) built on it.

The live store is opened read-only and never written. Which events a device held at a
time comes from when each one arrived (docs/replay.md): its own events at their author
time, received ones at the end of the replication-ledger range that recorded them
(agentlog.store.ledger), events with no ledger row at their author time. Each event's arrival
is raised to its causal past's (prev and clock), so every cut by arrival is causally
closed. The *held order* sorts events by (arrival, lamport, author, epoch, seq); every
prefix of it is a set the view can be folded from, and a point names a prefix.
The views are folded by the store's own PrefView and MemoryView into a `Scratch`.
An erased event (docs/erasure.md) is held header-only: every point folds without its payload, and the log
says which request erased it (`Log.erased`) so that a replay shows it as erased.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import tempfile
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from operator import itemgetter
from pathlib import Path

import lmdb

from agentlog.errors import EventError, NotFoundError, StoreError, UsageError
from agentlog.gcpause import quiet_gc
from agentlog.log import payloads, snapshot
from agentlog.log.epochs import fork_order
from agentlog.log.event import decode_record, record_id
from agentlog.log.roster import Roster
from agentlog.log.validate import ROSTER_KINDS, check_payload
from agentlog.memory import view as memory_view
from agentlog.memory.view import MemoryView
from agentlog.prefs import view as pref_view
from agentlog.prefs.view import Folded, PrefView, folded_from_log
from agentlog.store import erasure, ledger
from agentlog.store.arrivals import Positions, arrivals, raised, received_at
from agentlog.store.env import Env, check_data_file
from agentlog.store.erasure import Forgotten, drop_entries
from agentlog.store.keyring import Keyring, Opener, has_scopes, scopes_in
from agentlog.store.layout import LAYOUT_VERSION, MAX_DBS, POS, ROSTER_VERSION, event_key, unpack_anchor
from agentlog.store.retained import contexts
from agentlog.store.snapshots import kept_in, stored
from agentlog.store.views import save_roster, view_digests
from agentlog.text import iso

VIEW_DBS = ("views.roster", *pref_view.DBS, *memory_view.DBS)
_LIVE_DBS = ("events", "payloads", "branches", "heads", "truncated", "meta", "views.roster", "ledger.received",
             "snapshots", "views.scopes", "erase.rules", "erased")
_SCRATCH_MAP = 1 << 30
_PROGRESS_EVERY = 10_000                 # events read between progress reports
ProgressFn = Callable[[int, int], None]


# -- points in the held order ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Point:
    """A prefix of the held order: through time `until` (ms), or through the event at `at` (author, seq)."""

    until: int | None = None
    at: tuple[bytes, int] | None = None
    text: str = "now"


# -- the live log, read-only ----------------------------------------------------------------------

class LiveLog:
    """A home's store opened read-only: its events as the views fold them, with their arrival times."""

    def __init__(self, store_path: Path, env: Env | None = None, keyring: Keyring | None = None):
        """`env`: the environment of a Store open on it (LMDB opens a store once per process), left open
        by `close`; else the store is opened read-only here. `keyring`: the device's content keys, to fold
        sealed payloads as the live views do (None: sealed payloads are not folded)."""
        self.keyring = keyring
        self.unread: list[tuple[bytes, bytes, bool]] = []     # after `read`: sealed events not opened
        self.forgotten = None                  # after `read`: which memory entries erase rules forget (or None)
        self._owned = env is None
        self._frozen = False
        if env is None:
            check_data_file(store_path)
            env = Env(Path(store_path), f"the store at {store_path}", max_dbs=MAX_DBS, readonly=True, create=False,
                      readahead=False, max_readers=126)
        self._env, self.env = env, env.env
        self.db = {}
        for name in _LIVE_DBS:
            try:
                self.db[name] = self._env.open_dbs([name], create=False)[name]
            except lmdb.NotFoundError:
                self.db[name] = None
        with self._env.txn() as txn:
            meta = self.db["meta"]
            if txn.get(b"layout", db=meta) != LAYOUT_VERSION.to_bytes(4, "big"):
                self.close()
                raise UsageError(f"the store at {store_path} is not in layout {LAYOUT_VERSION}, the one this "
                                 "agentlog reads")
            self.device = bytes(txn.get(b"device", db=meta) or b"")
            self.founder = txn.get(b"founder", db=meta)
            self.founder = bytes(self.founder) if self.founder else None
            raw = txn.get(b"anchor", db=meta)
            self.anchor = unpack_anchor(bytes(raw))[0].header if raw else None
            state = txn.get(b"state", db=self.db["views.roster"]) if self.db["views.roster"] else None
            self.roster = Roster.from_bytes(bytes(state)) if state else Roster(self.founder)
            self.truncated = self._rows(txn, "truncated")
            sid = txn.get(b"base", db=meta)
            self.base = _read_base(txn, self.db["snapshots"], bytes(sid), self.roster) \
                if sid is not None and self.db["snapshots"] is not None else None

    def _rows(self, txn, name: str) -> dict[bytes, bytes]:
        if self.db[name] is None:
            return {}
        with txn.cursor(db=self.db[name]) as cur:
            return {bytes(k): bytes(v) for k, v in cur}

    def read(self, progress: ProgressFn | None = None) -> Log:
        """Every stored event (key order) and its arrival, from one read snapshot.

        The log's objects are then frozen out of the cyclic garbage collector's walks (gc.freeze) until `close`:
        hundreds of thousands of acyclic objects, held while this is open, that each collection would walk again.
        """
        with quiet_gc():
            log = self._read(progress)
            gc.freeze()
            self._frozen = True
        return log

    def _read(self, progress: ProgressFn | None) -> Log:
        with self._env.txn() as txn:
            total = txn.stat(self.db["events"])["entries"]
            opener = self._opener(txn)
            folded = folded_from_log(txn, self.db["events"], self.db["payloads"], None, opener)
            events: list[Folded] = []
            while chunk := list(islice(folded, _PROGRESS_EVERY)):
                events += chunk
                if progress:
                    progress(len(events), total)
            if self.db["branches"] is not None and txn.stat(self.db["branches"])["entries"]:
                events = list(fork_order(events))     # a fork's branches fold alike on every device
            special = [i for i, f in enumerate(events) if f[5] in _SPECIAL_KINDS]
            for i in special:
                f = events[i]
                if f.kind in _EMBEDDING_KINDS and f.payload is not None:
                    events[i] = _compact(f)
            self.unread = opener.unread if opener is not None else []
            self.forgotten = Forgotten(self.db, txn) if self.db["erase.rules"] is not None else None
            received = ledger.ranges(txn, self.db["ledger.received"]) if self.db["ledger.received"] else []
            roster_events = _roster_events(txn, self.db, [events[i] for i in special if events[i].kind in ROSTER_KINDS])
            erased, requests = _erasures(txn, self.db)
        base = self.base if self.truncated else None       # with the whole log held, fold it all: every point works
        cuts = {(a, *POS.unpack_from(v)): int.from_bytes(v[44:52], "big") for a, v in self.truncated.items()
                if len(v) >= 52}
        index = Positions(events)
        return Log(events, received_at(events, index, received), roster_events, self.founder, self.anchor,
                   base, cuts, erased, requests, index)

    def _opener(self, txn) -> Opener | None:
        """The opener of sealed payloads by the live store's scopes view and this device's keys (None: the
        group has no sealed scope)."""
        if self.db["views.scopes"] is None or not has_scopes(self.db, txn):
            return None
        return Opener(self.keyring.keys(scopes_in(self.db, txn)) if self.keyring else {})

    def views(self) -> dict[str, dict] | None:
        """The live views' versions and digests (as Store.views gives them), or None if a view database is missing."""
        try:
            db = self._env.open_dbs(VIEW_DBS, create=False)
        except lmdb.NotFoundError:
            return None
        return self._env.read(lambda txn: view_digests(db, txn))

    def device_named(self, ref: str) -> bytes:
        member = self.roster.find(ref)
        if member is None:
            raise NotFoundError(f"no device is named or has id {ref!r}: see `agentlog devices list`")
        return member.device

    def name_of(self, device: bytes) -> str:
        return self.roster.name_of(device)

    def close(self) -> None:
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self._owned:
            self.env.close()

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Base:
    """A compacted store's base snapshot: the views' state it keeps and the frontier that state covers.

    A replay of a store that dropped events starts from this state and folds the held events after
    `covered` (each author's (epoch, seq)); points before the snapshot cannot be replayed there.
    """

    sid: bytes
    event: Folded                   # the snapshot event's header fields (payload None)
    name: str                       # AUTHOR:SEQ of the snapshot event
    covered: dict[bytes, tuple[int, int]]
    states: dict[str, bytes]
    kept: dict[bytes, bytes] = dataclasses.field(default_factory=dict)   # event key -> fold context: the events
                                    # at or below `covered` its state folded without their payload (retained)

    @property
    def time_ms(self) -> int:
        return self.event.time_ms

    @property
    def text(self) -> str:
        return f"the compaction snapshot {self.name} ({self.sid.hex()[:12]}) of {iso(self.time_ms)}"

    def covers(self, f: Folded) -> bool:
        return ((f.epoch, f.seq) <= self.covered.get(f.author, (-1, -1))
                and event_key(f.author, f.epoch, f.seq) not in self.kept)

    def rows(self) -> dict[str, list[tuple[bytes, bytes]]]:
        """The scratch's initial rows: each view database's rows at the snapshot, and the roster (parsed
        once; not to be changed)."""
        return self._rows

    @cached_property
    def _rows(self) -> dict[str, list[tuple[bytes, bytes]]]:
        return initial_rows(self.states)

    def roster(self, founder: bytes | None) -> Roster:
        roster = Roster.from_bytes(self.states["roster"]) if self.states["roster"] else Roster(founder)
        roster.founder = founder
        return roster


def initial_rows(states: dict[str, bytes]) -> dict[str, list[tuple[bytes, bytes]]]:
    """A scratch's initial rows for a snapshot's view states: each view database's rows, and the roster."""
    out = {"views.roster": [(b"state", states["roster"]), (b"version", ROSTER_VERSION)]}
    for view, names in snapshot.VIEW_DBS.items():
        out.update(zip(names, snapshot.rows(states[view], len(names))))
    return out


def _read_base(txn, db, sid: bytes, roster: Roster) -> Base | None:
    """The base snapshot as compaction keeps it in the `snapshots` database `db`."""
    bundle = stored(txn, db, sid)
    if bundle is None:
        return None
    event, h = bundle.event, bundle.event.header
    return Base(sid, Folded.of(h, event.id, None), f"{roster.name_of(h.author)}:{h.seq}",
                {p.author: (p.epoch, p.seq) for p in bundle.snapshot().frontier}, bundle.states,
                kept_in({"snapshots": db}, txn, sid))


_EMBEDDING_KINDS = frozenset({"memory.put", "memory.update"})
_SPECIAL_KINDS = _EMBEDDING_KINDS | set(ROSTER_KINDS)    # the events `LiveLog.read` looks at one by one
_AUTHOR, _AUTHOR_EPOCH, _SEQ = itemgetter(0), itemgetter(0, 1), itemgetter(2)         # a Folded's fields
_LAMPORT = itemgetter(3)


def _compact(f: Folded) -> Folded:
    """A memory write with its embedding vectors held as float32 arrays instead of tuples of floats:
    the same values (they are float32 in the payload) and the same packed bytes, in a sixth of the
    memory, since a replay holds every event at once."""
    def small(e):
        return None if e is None else dataclasses.replace(e, vector=array("f", e.vector))
    p = f.payload
    if isinstance(p, payloads.MemoryPut):
        if p.embedding is None:
            return f
        p = dataclasses.replace(p, embedding=small(p.embedding))
    elif any(field.embedding is not None for field in p.fields):
        p = dataclasses.replace(p, fields=tuple(dataclasses.replace(field, embedding=small(field.embedding))
                                                for field in p.fields))
    else:
        return f
    return f._replace(payload=p)


def _roster_events(txn, db: dict, found: list[Folded]) -> dict[bytes, tuple]:
    """Event id -> (header, id, payload) of the roster events, decoded as the store's roster rebuild does."""
    out = {}
    for f in found:
        key = event_key(f.author, f.epoch, f.seq)
        try:
            event = decode_record(bytes(txn.get(key, db=db["events"])), txn.get(key, db=db["payloads"]))
            out[f.eid] = (event.header, event.id, check_payload(event))
        except EventError:
            continue
    return out


def _erasures(txn, db: dict) -> tuple[dict[bytes, erasure.Erasure], dict[bytes, payloads.Erase]]:
    """Event id -> its Erasure, of every event held header-only because erased; request id -> its payload."""
    if db["erased"] is None:
        return {}, {}
    erased, requests = {}, {}
    with txn.cursor(db=db["erased"]) as cur:
        for key, rid in cur:
            record = txn.get(key, db=db["events"])
            if record is None:
                continue
            rid = bytes(rid)
            if rid not in requests:
                requests[rid] = erasure.request_at(db, txn, rid)
            req = requests[rid]
            erased[record_id(bytes(record))] = erasure.Erasure(rid, req.author, req.time_ms, req.payload.reason) \
                if req is not None else erasure.Erasure(rid, b"", 0, "")
    return erased, {rid: req.payload for rid, req in requests.items() if req is not None}


@dataclass
class Log:
    """The events a store holds (key order) with their arrivals; `order` is the held order (indices).

    `arrival` and `order` are computed when first read from `received_at` (`arrivals` before the causal past
    raises them): a replay of everything held needs neither, only the latest arrival, which raising leaves as
    it was. Erased events are held header-only (payload None) and named in `erased`, with the `requests` that
    erased them. With a `base` (a compacted store), `order` holds only the events after the snapshot's frontier:
    the ones a replay folds on top of the snapshot's state; `cuts` are the truncation points'
    times ((author, epoch, seq) -> ms), which the live store still answers for.
    """

    events: list[Folded]
    received_at: list[int]
    roster_events: dict[bytes, tuple]
    founder: bytes | None
    anchor: object | None
    base: Base | None = None
    cuts: dict[tuple, int] = dataclasses.field(default_factory=dict)
    erased: dict[bytes, erasure.Erasure] = dataclasses.field(default_factory=dict)    # event id -> its erasure
    requests: dict[bytes, payloads.Erase] = dataclasses.field(default_factory=dict)   # the erase requests, by id
    positions: Positions | None = dataclasses.field(default=None, repr=False)    # of `events`, if made already

    def __post_init__(self):
        self._arrival: list[int] | None = None
        self._order: list[int] | None = None
        self._covered: dict | None = None
        self._by_id: dict | None = None

    @property
    def arrival(self) -> list[int]:
        """Each event's arrival (as `arrivals` gives it), aligned with `events`."""
        if self._arrival is None:
            self._arrival = raised(self.events, self._index(), list(self.received_at))
        return self._arrival

    @property
    def order(self) -> list[int]:
        """The held order: indices in `events` by (arrival, lamport), ties in key order (author, epoch, seq)."""
        if self._order is None:
            keys = [a << 64 | lamport for a, lamport in zip(self.arrival, map(_LAMPORT, self.events))]
            order = sorted(range(len(keys)), key=keys.__getitem__)    # a stable sort keeps the key order of ties
            base, events = self.base, self.events
            self._order = order if base is None else [i for i in order if not base.covers(events[i])]
        return self._order

    def arrival_of(self, n: int) -> int:
        """The arrival of the nth event (from 1) of the held order; of the last, with every event held and no base,
        the latest arrival before raising (raising takes each arrival up to another's, never past the latest)."""
        if self._order is None and self.base is None and n == len(self.events):
            return max(self.received_at)
        return self.arrival[self.order[n - 1]]

    def _index(self) -> Positions:
        if self.positions is None:
            self.positions = Positions(self.events)
        return self.positions

    def prefix(self, point: Point) -> int:
        """How many events of the held order `point` takes.

        Raises:
            NotFoundError: an event not held.
            UsageError: a point before the base snapshot.
        """
        base = self.base
        if point.at is not None:
            author, seq = point.at
            for n, i in enumerate(self.order, 1):
                f = self.events[i]
                if f.author == author and f.seq == seq:
                    return n
            if base is not None and seq <= base.covered.get(author, (0, 0))[1]:
                raise UsageError(f"{point.text} is at or below the frontier of {base.text}: this store dropped "
                                 f"the events before it, so a replay starts there (points from {iso(base.time_ms)})")
            raise NotFoundError(f"this device holds no event {point.text}")
        if point.until is None:
            return len(self.events) if base is None else len(self.order)
        if base is not None and point.until < base.time_ms:
            raise UsageError(f"{point.text} is before {base.text}: this store dropped the events before it, so "
                             f"a replay starts there (points from {iso(base.time_ms)})")
        lo, hi = 0, len(self.order)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.arrival[self.order[mid]] <= point.until:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def held(self, n: int, key_order: bool = True) -> list[Folded]:
        """The first n events of the held order, in key order (as the view rebuild takes them) or in the
        held order, less any revoked device's events past its revocation seq by the roster they give."""
        if key_order and n == len(self.events) and (self.base is None or len(self.order) == n):
            events = self.events                   # every event: key order is the log's own (not to be changed)
        else:
            chosen = sorted(self.order[:n]) if key_order else self.order[:n]
            events = [self.events[i] for i in chosen]
        limits = self.limits(events)
        if limits:
            events = [f for f in events if f.seq <= limits.get(f.author, f.seq)]
        return events

    def roster(self, events: Iterable[Folded]) -> Roster:
        """The roster of the base (or of nothing) and the roster events among `events`, in lamport order."""
        if events is self.events:                  # every event: their roster events, in key order
            found = list(self.roster_events.values())
        else:
            found = [self.roster_events[f.eid] for f in events
                     if f.kind in ROSTER_KINDS and f.eid in self.roster_events]
        if self.base is None:
            return Roster.replay(self.founder, found)
        roster = self.base.roster(self.founder)
        for header, event_id, payload in sorted(found, key=lambda e: (e[0].lamport, e[0].author, e[0].epoch, e[0].seq,
                                                                             e[1])):
            roster.apply(header, event_id, payload)
        return roster

    def limits(self, events: list[Folded]) -> dict[bytes, int]:
        roster = self.roster(events)
        return {d: m.until_seq for d, m in roster.members.items() if m.until_seq is not None}

    def at(self, author: bytes, epoch: int, seq: int) -> list[int]:
        """The indices in `events` of the held events at (author, epoch, seq): one, or a fork's branches."""
        return self._index().at(author, epoch, seq)

    def covered(self) -> dict[tuple, Folded]:
        """(author, epoch, seq) -> the held events the base snapshot covers (empty without a base)."""
        if self._covered is None:
            base = self.base
            self._covered = {} if base is None else \
                {(f.author, f.epoch, f.seq): f for f in self.events if base.covers(f)}
        return self._covered

    def time_of(self, _txn, author: bytes, epoch: int, seq: int) -> int | None:
        """For PrefView: the time of a clock entry not among the events folded, as the live store gives it
        (the join anchor's; on a compacted store also an event the snapshot covers, held or the
        truncation point), else None."""
        a = self.anchor
        if a is not None and (a.author, a.epoch, a.seq) == (author, epoch, seq):
            return a.time_ms
        if self.base is not None:
            f = self.covered().get((author, epoch, seq))
            return f.time_ms if f is not None else self.cuts.get((author, epoch, seq))
        return None

    def event_of(self, _txn, eid: bytes):
        """For PrefView: (header, id, payload) of a held event the base snapshot covers, else None
        (a pending correction's, when its decision arrives after the snapshot)."""
        if self.base is None:
            return None
        if self._by_id is None:
            self._by_id = {f.eid: f for f in self.covered().values()}
        f = self._by_id.get(eid)
        return None if f is None else (f, f.eid, f.payload)


# -- the scratch environment ------------------------------------------------------------------------

class Scratch:
    """A temporary LMDB environment holding only the view databases, removed by `close`.

    `initial` (database name -> (key, value) rows) seeds it with a view state to `fold` on from
    (a compaction snapshot's); `rebuild` clears the views and folds from nothing.
    """

    def __init__(self, time_of, event_of=None, initial: dict[str, list[tuple[bytes, bytes]]] | None = None):
        self.dir = tempfile.mkdtemp(prefix="agentlog-replay-")
        try:
            self._env = Env(Path(self.dir), f"the scratch store in {self.dir}", map_size=_SCRATCH_MAP, max_dbs=MAX_DBS,
                            sync=False, metasync=False, lock=False, writemap=True, readahead=False)
            self.env = self._env.env
            self.db = self._env.open_dbs(VIEW_DBS)
        except (lmdb.Error, StoreError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise UsageError(f"cannot make a scratch store in {tempfile.gettempdir()}: {exc}") from None
        self.pref = PrefView(self.db, time_of, event_of or (lambda _txn, _eid: None))
        self.memory = MemoryView(self.db)
        self.initial = initial or {}
        if initial:
            self.write(lambda txn: self.load(txn))

    def load(self, txn, names: Iterable[str] | None = None) -> None:
        """Set databases (`names`, else every one `initial` names) to their initial rows (a base's preference
        states of an older reducer re-encoded, as the store's refold from its base does)."""
        names = list(self.initial if names is None else names)
        for name in names:
            txn.drop(self.db[name], delete=False)
            rows = self.initial.get(name)
            if rows:
                txn.cursor(db=self.db[name]).putmulti(rows, append=True)
        if "views.pref" in names:
            self.pref.upgrade_base(txn)

    def write(self, fn):
        """fn(txn) in one write transaction, growing the map when it fills."""
        return self._env.write(fn)

    def read(self, fn):
        return self._env.read(fn)

    def rebuild(self, events: list[Folded], roster: Roster) -> int:
        """Fold `events` (each author's in seq order, authors one after another) from nothing, as
        Store.rebuild_views does, and store `roster`."""
        def fold(txn):
            memory = self.memory.rebuilder(txn)
            memory.add_all(events)
            memory.finish()
            n = self.pref.rebuild(txn, events)
            self.save_roster(txn, roster)
            return n
        return self.write(fold)

    def fold(self, batch: list[Folded], roster: Roster | None = None, kept: dict[bytes, bytes] | None = None) -> None:
        """Fold newly held events (in a causal order) incrementally, as an append or ingest does; store
        `roster` if given. `kept`: a base snapshot's kept events (event key -> fold context), whose payloads
        only are folded now, as of then."""
        newest, past = contexts(kept or {}, batch)

        def fold(txn):
            self.pref.fold(txn, batch, kept=newest)
            self.memory.fold(txn, batch, kept=past)
            if roster is not None:
                self.save_roster(txn, roster)
        self.write(fold)

    def save_roster(self, txn, roster: Roster) -> None:
        save_roster(self.db, txn, roster)

    def views(self) -> dict[str, dict]:
        return self.read(lambda txn: view_digests(self.db, txn))

    def close(self) -> None:
        self.env.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- replays ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Replayed:
    """A replay's outcome: events folded of those held in all, the point's time, frontier and digests;
    `base` names the compaction snapshot it started from (None: from nothing)."""

    events: int
    held: int
    time_ms: int | None
    frontier: dict[bytes, int]
    views: dict[str, dict]
    base: str | None = None


def check_truncation(live: LiveLog, names: Callable[[bytes], str]) -> None:
    """Refuse to replay a store that dropped events but keeps no base snapshot to start from.

    Raises:
        UsageError: naming the boundary (each author's last dropped seq).
    """
    if live.truncated and live.base is None:
        boundary = ", ".join(f"{names(a)}:{POS.unpack_from(v)[1]}" for a, v in sorted(live.truncated.items()))
        raise UsageError(f"this store was compacted: events up to {boundary} were dropped and it keeps no "
                         "compaction snapshot to replay from, so no point can be replayed here")


def replay(live: LiveLog, point: Point, log: Log | None = None, progress: ProgressFn | None = None,
           keep: Callable[[Scratch], object] | None = None) -> tuple[Replayed, object]:
    """Fold the views as this device held them at `point` in a scratch environment; `keep(scratch)`
    reads what else the caller needs before the scratch is removed."""
    check_truncation(live, live.name_of)
    log = log or live.read(progress)
    n = log.prefix(point)
    base = log.base
    events = log.held(n, key_order=base is None)
    frontier = _frontier(events, base is None, {} if base is None else {a: s for a, (_, s) in base.covered.items()})
    if base is None:
        with quiet_gc(), Scratch(log.time_of) as scratch:
            scratch.rebuild(events, log.roster(events))
            views = scratch.views()
            kept = keep(scratch) if keep else None
    else:
        limits = log.limits(events)

        def time_of(txn, author: bytes, epoch: int, seq: int) -> int | None:
            return None if seq > limits.get(author, seq) else log.time_of(txn, author, epoch, seq)
        with quiet_gc(), Scratch(time_of, log.event_of, initial=base.rows()) as scratch:
            scratch.fold(events, log.roster(events), base.kept)     # on the snapshot's state, in the held order
            if live.forgotten is not None and live.forgotten.ids:     # as the store's fold from its base does
                scratch.write(lambda txn: drop_entries(scratch.db, txn, scratch.memory, live.forgotten))
            views = scratch.views()
            kept = keep(scratch) if keep else None
    when = log.arrival_of(n) if n else (base.time_ms if base else None)
    return Replayed(len(events), len(log.events), when, frontier, views, base.text if base else None), kept


def _frontier(events: list[Folded], key_order: bool, start: dict[bytes, int]) -> dict[bytes, int]:
    """Each author's greatest seq among `events` (in key order, or not) and `start`."""
    frontier = dict(start)
    if key_order:                                  # each (author, epoch)'s last event, found by bisection
        pairs: Iterable = []
        lo = 0
        while lo < len(events):
            lo = bisect_right(events, events[lo][:2], lo, key=_AUTHOR_EPOCH)
            pairs.append((events[lo - 1][0], events[lo - 1][2]))
    else:
        pairs = zip(map(_AUTHOR, events), map(_SEQ, events))
    for author, seq in pairs:
        if seq > frontier.get(author, 0):
            frontier[author] = seq
    return frontier


__all__ = ["Base", "LiveLog", "Log", "Point", "Replayed", "Scratch", "arrivals", "check_truncation", "replay"]
