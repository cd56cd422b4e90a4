"""Compaction: write a snapshot, drop the events every device has seen, start a store from a snapshot.

The rules are in docs/compaction.md. This module works inside the Store's transactions and on its
databases (`read`, `write`, `dbs`); folding the views from the base snapshot is agentlog.store.views's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import SnapshotError, UsageError
from agentlog.log import payloads, snapshot
from agentlog.log.event import decode_record, peek_record, record_id
from agentlog.log.roster import Roster
from agentlog.log.validate import Head
from agentlog.memory.view import unpack_past
from agentlog.prefs import reducer as pref_reducer
from agentlog.prefs.view import VERSION_KEY, Folded
from agentlog.store import retained, scratch
from agentlog.store.append import append_in
from agentlog.store.erasure import Eraser, Forgotten, drop_entries
from agentlog.store.keyring import rebuild_scopes
from agentlog.store.layout import POS, event_key, head_from, head_value, heads_in, truncation_value
from agentlog.store.snapshots import base_in, dump, set_base, stored
from agentlog.store.store import Store
from agentlog.store.views import event_of, folded_log, limits_in, refold_from_base, roster_in, time_of

DAY_MS = 86_400_000
DEFAULT_HORIZON_MS = 30 * DAY_MS
CHUNK = 50_000                 # events dropped per write transaction: each step leaves a store that verifies


@dataclass(frozen=True, slots=True)
class Policy:
    """When `agentlog serve` compacts on its own: at `events` held or `bytes` in use (0: never by that)."""

    events: int = 1_000_000
    bytes: int = 1 << 30
    horizon_ms: int = DEFAULT_HORIZON_MS

    def due(self, store: Store) -> bool:
        return (bool(self.events and store.count() >= self.events)
                or bool(self.bytes and used_bytes(store) >= self.bytes))


def used_bytes(store: Store) -> int:
    """Bytes in use by the store's databases (LMDB keeps its file's size; freed pages are reused)."""
    def read(txn):
        total = 0
        for db in store.dbs.values():
            st = txn.stat(db)
            total += (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) * st["psize"]
        return total
    return store.read(read)


@dataclass(frozen=True, slots=True)
class Report:
    snapshot: bytes | None       # the snapshot event written (None: nothing new to cover)
    dropped: int                 # events truncated
    kept: int                    # events retained
    stable: dict                 # author -> (epoch, seq) every counted device had seen
    silent: list                 # devices left out of the minimum: silent past the horizon
    unacknowledged: int = 0      # own events kept: no other device has acknowledged them


def stable_frontier(store: Store, txn, now_ms: int,
                    horizon_ms: int) -> tuple[dict[bytes, tuple[int, int]], list[bytes]]:
    """Author -> the (epoch, seq) every enrolled, not revoked device had seen at its newest event here,
    leaving out devices silent for longer than the horizon; and the devices left out.

    This device counts with everything it holds: the snapshot it is about to write acknowledges it; its
    own chain only as far as another device acknowledged it (`acknowledged_own`).
    """
    db = store.dbs
    roster = roster_in(store.dbs, txn)
    heads = heads_in(db, txn)
    limits = limits_in(db, txn)
    me = store.device
    stable: dict[bytes, tuple[int, int]] | None = None
    silent = []
    for device, member in sorted(roster.members.items()):
        if not member.active:
            continue
        if device == me:
            seen = {a: (h.epoch, h.seq) for a, h in heads.items()}
        else:
            t = _last_heard(store, txn, device, heads.get(device), member)
            if t is not None and now_ms - t > horizon_ms:
                silent.append(device)
                continue
            seen = unpack_past(txn.get(device, db=db["views.memory.past"]))
        stable = dict(seen) if stable is None else {a: min(p, seen[a]) for a, p in stable.items() if a in seen}
    stable = stable or {}
    acked = acknowledged_own(store, txn, roster)
    if acked is not None and me in stable:
        stable[me] = min(stable[me], acked)
    for device, limit in limits.items():
        if device in stable and stable[device][1] > limit:
            stable[device] = (stable[device][0], limit)
    return {a: p for a, p in stable.items() if p[1] > 0}, silent


def acknowledged_own(store: Store, txn, roster: Roster | None = None) -> tuple[int, int] | None:
    """The furthest position of this device's own chain that some other enrolled, not revoked device had seen
    at its newest event here ((0, 0): none), silent or not; None when the group has no other such device.

    Compaction keeps this device's events past it: no other device holds them, and snapshots written apart
    cannot be merged (docs/compaction.md, "The only copy of an event")."""
    roster = roster if roster is not None else roster_in(store.dbs, txn)
    me, db = store.device, store.dbs
    others = [d for d, m in roster.members.items() if m.active and d != me]
    if not others:
        return None
    return max(unpack_past(txn.get(d, db=db["views.memory.past"])).get(me, (0, 0)) for d in others)


def unacknowledged_own(store: Store) -> int:
    """How many of this device's own events no other enrolled, not revoked device has acknowledged (0 in a group
    of one device): compaction keeps them."""
    def read(txn):
        acked = acknowledged_own(store, txn)
        raw = txn.get(store.device, db=store.dbs["heads"])
        if acked is None or raw is None:
            return 0
        head = head_from(raw)
        return head.seq - acked[1] if head.epoch == acked[0] else head.seq
    return store.read(read)


def _last_heard(store: Store, txn, device: bytes, head: Head | None, member) -> int | None:
    """The time of a device's newest event held here (or of its truncation point, or of its enrolment
    when it has written nothing; of the enroller's truncation point when compaction dropped the enrolment:
    no earlier than it, so the device never counts silent too soon)."""
    db = store.dbs
    if head is not None:
        raw = txn.get(event_key(device, head.epoch, head.seq), db=db["events"])
        if raw is not None:
            return peek_record(raw)[1]
        cut = txn.get(device, db=db["truncated"])
        if cut is not None and len(cut) >= 52:
            return int.from_bytes(cut[44:52], "big")
    for position, _ in member.enrollments:
        raw = txn.get(event_key(position.author, position.epoch, position.seq), db=store.dbs["events"])
        if raw is not None:
            return peek_record(raw)[1]
        cut = txn.get(position.author, db=db["truncated"])      # dropped: it was no later than the truncation point
        if cut is not None and len(cut) >= 52 and (position.epoch, position.seq) <= POS.unpack_from(cut):
            return int.from_bytes(cut[44:52], "big")
    return None


def _point(store: Store, txn, author: bytes, epoch: int, seq: int) -> tuple[bytes, int, int]:
    """The id, lamport and time of a held event, or of the author's truncation point there."""
    raw = txn.get(event_key(author, epoch, seq), db=store.dbs["events"])
    if raw is not None:
        return record_id(raw), *peek_record(raw)[:2]
    cut = txn.get(author, db=store.dbs["truncated"])
    if cut is not None and head_from(cut)[:2] == (epoch, seq):
        return head_from(cut).id, int.from_bytes(cut[52:60], "big"), int.from_bytes(cut[44:52], "big")
    raise SnapshotError(f"no event of {author.hex()[:16]} at seq {seq} to name in a snapshot")


def write_snapshot(store: Store, *, horizon_ms: int = DEFAULT_HORIZON_MS, now_ms: int | None = None):
    """Sign a snapshot of every view at this device's frontier, in one write transaction.

    Returns (snapshot id, stable frontier, silent devices); the id is None when the newest snapshot
    already covers everything held.
    """
    if store.key is None:
        raise UsageError("this store was opened without the device key; it cannot write a snapshot")
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000

    def write(txn):
        db = store.dbs
        stable, silent = stable_frontier(store, txn, now_ms, horizon_ms)
        for author, raw in txn.cursor(db=db["truncated"]):    # a device back from silence may lag what is gone
            cut = head_from(raw)
            if bytes(author) in stable and stable[bytes(author)] < (cut.epoch, cut.seq):
                stable[bytes(author)] = (cut.epoch, cut.seq)
        limits = limits_in(db, txn)
        frontier = {}
        for author, h in heads_in(db, txn).items():
            seq = min(h.seq, limits[author]) if author in limits else h.seq
            if seq > 0:
                frontier[author] = (h.epoch, seq)
        base = txn.get(b"base", db=db["meta"])
        if base is not None and _covers(txn, store, bytes(base), frontier):
            return None, stable, silent
        def points(positions):
            return tuple(payloads.LogPoint(author=a, epoch=e, seq=s, id=eid, lamport=lamport, time=t)
                         for a, (e, s) in sorted(positions.items())
                         for eid, lamport, t in [_point(store, txn, a, e, s)])
        snap = payloads.Snapshot(frontier=points(frontier), stable=points(stable))
        states = {"roster": bytes(txn.get(b"state", db=db["views.roster"]) or b"")}
        kept = retained.kept_keys(db, txn, frontier)
        sealed = any(retained.sealed_record(txn.get(k, db=db["events"])) for k in kept)
        if sealed:               # the state it signs folds their headers, not their payloads
            views, kept, snap = _without_payloads(store, txn, kept, snap)
            states.update(views)
        else:                    # scope and erase events only: no payload of theirs folds, the views are the state
            kept = [(k, retained.NO_CONTEXT) for k in kept]
            snap = dataclasses.replace(snap, cuts=_cuts(store.pref_view, txn))
        if kept:
            snap = dataclasses.replace(snap, retained=snapshot.retained_digest(
                (record_id(txn.get(k, db=db["events"])), ctx) for k, ctx in kept))
        store.pref_view.summarize(txn, snap)         # the state it signs holds the summaries, not the rows
        if not sealed:
            for name, names in snapshot.VIEW_DBS.items():
                states[name] = dump(txn, [db[n] for n in names])
        versions = {"roster": int.from_bytes(txn.get(b"version", db=db["views.roster"]) or b"\0", "big"),
                    "pref": store.pref_view.version(txn), "memory": store.memory_view.version(txn)}
        snap = dataclasses.replace(snap, views=tuple(
            payloads.ViewState(name=n, version=versions[n], digest=crypto.blake2b256(states[n]), state=b"")
            for n in snapshot.VIEWS))
        [sid] = append_in(store, txn, [(snap, "user")], roster_in(store.dbs, txn))
        key = event_key(store.device, *POS.unpack_from(txn.get(store.device, db=db["heads"])))
        set_base(store.dbs, txn, sid, snapshot.Bundle(bytes(txn.get(key, db=db["events"])),
                                                   bytes(txn.get(key, db=db["payloads"])), states), kept)
        return sid, stable, silent

    result = store.write(write)
    store.nudge()
    return result


def _cuts(view, txn) -> tuple[payloads.SettingCut, ...]:
    """Each setting's summary cut in `view`: its newest evidence less SUMMARY_AGE_MS (docs/compaction.md)."""
    cuts = []
    for name in view.names(txn):
        s = view.setting(txn, name)
        if s is not None and s.tmax is not None and s.tmax > pref_reducer.SUMMARY_AGE_MS:
            cuts.append(payloads.SettingCut(setting=name, before=s.tmax - pref_reducer.SUMMARY_AGE_MS))
    return tuple(cuts)


def _without_payloads(store: Store, txn, kept: list[bytes], snap: payloads.Snapshot
                      ) -> tuple[dict[str, bytes], list[tuple[bytes, bytes]], payloads.Snapshot]:
    """The preference and memory views' state at the frontier folded with no sealed payload (as a device that
    reads no sealed scope folds it), with the snapshot's summaries; each kept event's fold context, in key
    order; and the snapshot with its cuts, taken from that state (a setting only sealed evidence names is not
    named in the plain snapshot event). Folded in a scratch environment from the base snapshot's state (when
    there is one); the store's views stay as they are. No sealed payload is opened: the state holds no sealed
    content."""
    db = store.dbs
    base = base_in(db, txn)
    before = retained.kept_beside(db, txn)           # the base's kept events: their contexts are known
    covered = {} if base is None else {p.author: (p.epoch, p.seq) for p in base.snapshot().frontier}
    events = sorted((f for f in folded_log(db, txn) if (f.epoch, f.seq) > covered.get(f.author, (-1, -1))),
                    key=lambda f: (f.lamport, f.author, f.epoch, f.seq))
    wanted = {event_key(f.author, f.epoch, f.seq): f.eid for f in events}
    eids = {wanted[k]: k for k in kept if k not in before and k in wanted}
    newest, past = dict.fromkeys(eids), dict.fromkeys(eids)
    before = {k: before.get(k, retained.NO_CONTEXT) for k in kept if k not in wanted}   # below a base from before
    # events were kept, its state holds them: erase requests, whose payloads no view folds
    with scratch.Scratch(lambda _t, *at: time_of(db, txn, *at), lambda _t, eid: event_of(db, txn, eid),
                         None if base is None else scratch.initial_rows(base.states)) as fold:
        def run(stxn):
            for name in ("views.pref", "views.memory"):       # folded from nothing: the reducers' versions
                stxn.put(VERSION_KEY, txn.get(VERSION_KEY, db=db[name]) or b"", db=fold.db[name])
            fold.pref.fold(stxn, events, notes=newest)
            fold.memory.fold(stxn, events, notes=past)
            forgotten = Forgotten(db, txn)
            if base is not None and forgotten.ids:    # as the store's fold from its base does
                drop_entries(fold.db, stxn, fold.memory, forgotten)
            cut = dataclasses.replace(snap, cuts=_cuts(fold.pref, stxn))
            fold.pref.summarize(stxn, cut)
            return cut, {name: dump(stxn, [fold.db[n] for n in names]) for name, names in snapshot.VIEW_DBS.items()}
        snap, states = fold.write(run)
    contexts = {**before, **{k: snapshot.pack_context(newest[eid], past[eid]) for eid, k in eids.items()}}
    return states, [(k, contexts[k]) for k in kept], snap


def _covers(txn, store: Store, base: bytes, frontier: dict) -> bool:
    """Whether the base snapshot's frontier (plus its own event) already covers `frontier`."""
    bundle = stored(txn, store.dbs["snapshots"], base)
    if bundle is None:
        return False
    h = bundle.event.header
    covered = {p.author: (p.epoch, p.seq) for p in bundle.snapshot().frontier}
    covered[h.author] = (h.epoch, h.seq)
    return all(covered.get(a, (-1, -1)) >= p for a, p in frontier.items())


def base_bundle(store: Store) -> snapshot.Bundle | None:
    """The store's base snapshot, its views' state and the events kept beside it, as a bootstrap hands it over
    (None: no base)."""
    def read(txn):
        bundle = base_in(store.dbs, txn)
        if bundle is None:
            return None
        kept = retained.kept_beside(store.dbs, txn)
        return dataclasses.replace(bundle, retained=retained.pack(store.dbs, txn, kept)) if kept else bundle
    return store.read(read)


def truncate(store: Store, progress: Callable[[int, int], None] | None = None) -> int:
    """Drop the events at or below the base snapshot's stable frontier, one bounded step per transaction.

    Each step deletes one author's oldest events and moves its truncation point, so a crash between
    steps leaves a store that verifies. Kept events (agentlog.store.retained) stay below it. Returns the events
    dropped.
    """
    bundle = base_bundle(store)
    if bundle is None:
        return 0
    stable = {h.author: (h.epoch, h.seq) for h in bundle.snapshot().stable}
    total = sum(_count_below(store, a, e, s) for a, (e, s) in stable.items())
    dropped = 0
    for author, (epoch, seq) in sorted(stable.items()):
        n = CHUNK
        while n == CHUNK:                    # a step short of CHUNK reached the stable point
            n, gone = store.write(lambda txn, a=author, e=epoch, s=seq: _drop_step(store, txn, a, e, s))
            dropped += gone
            if progress and gone:
                progress(dropped, total)
    return dropped


def _count_below(store: Store, author: bytes, epoch: int, seq: int) -> int:
    """How many of `author`'s events at or below (epoch, seq) a truncation drops (for progress)."""
    def read(txn):
        n = 0
        with txn.cursor(db=store.dbs["events"]) as cur:
            found = cur.set_range(author)
            while found and cur.key()[:32] == author and POS.unpack_from(cur.key(), 32) <= (epoch, seq):
                n += not retained.kept_record(cur.value())
                found = cur.next()
        return n
    return store.read(read)


def _drop_step(store: Store, txn, author: bytes, epoch: int, seq: int) -> tuple[int, int]:
    """Delete `author`'s events among the next CHUNK at or below (epoch, seq) past its truncation point, but the
    kept ones, and move the truncation point to the last of them; (events passed, events deleted)."""
    cut = txn.get(author, db=store.dbs["truncated"])
    rows = _events_of(store, txn, author, (epoch, seq), CHUNK, None if cut is None else POS.unpack_from(cut))
    if not rows:
        return 0, 0
    key, last_id = rows[-1]
    last_lamport, last_time = peek_record(txn.get(key, db=store.dbs["events"]))[:2]
    gone = [(k, eid) for k, eid in rows if not retained.kept_record(txn.get(k, db=store.dbs["events"]))]
    _delete_events(store, txn, gone)
    txn.put(author, truncation_value(*POS.unpack_from(key, 32), last_id, last_time, last_lamport),
            db=store.dbs["truncated"])
    return len(rows), len(gone)


def _events_of(store: Store, txn, author: bytes, upto: tuple[int, int] | None = None,
               limit: int | None = None, after: tuple[int, int] | None = None) -> list[tuple[bytes, bytes]]:
    """(key, id) of `author`'s oldest stored events, past `after` and at or below `upto` (epoch, seq), at most
    `limit`."""
    rows = []
    with txn.cursor(db=store.dbs["events"]) as cur:
        found = cur.set_range(author if after is None else event_key(author, after[0], after[1] + 1))
        while found and (limit is None or len(rows) < limit):
            key = bytes(cur.key())
            if key[:32] != author or (upto is not None and POS.unpack_from(key, 32) > upto):
                break
            rows.append((key, record_id(cur.value())))
            found = cur.next()
    return rows


def _delete_events(store: Store, txn, rows: list[tuple[bytes, bytes]]) -> None:
    """Delete stored events, given as (key, id), with their payload, id-index and bookkeeping rows."""
    db = store.dbs
    for key, eid in rows:
        txn.delete(eid, db=db["ids"])
        for name in ("events", "payloads", "withheld", "uncarried", "unverified", "damaged", "erased"):
            txn.delete(key, db=db[name])


def compact(store: Store, *, horizon_ms: int = DEFAULT_HORIZON_MS, now_ms: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Report:
    """Write a snapshot (when there is anything new to cover), then truncate what it makes stable."""
    sid, stable, silent = write_snapshot(store, horizon_ms=horizon_ms, now_ms=now_ms)
    dropped = truncate(store, progress)
    return Report(sid, dropped, store.count(), stable, silent, unacknowledged_own(store))


def bootstrap(store: Store, bundle: snapshot.Bundle,
              dropped: dict[bytes, tuple[int, int]] | None = None) -> payloads.Snapshot:
    """Start this store from a peer's snapshot: check it, install every view's state and take its frontier
    as held and truncated, so the ordinary protocol sends only the events after it.

    The snapshot's author must be the founder, or the device whose enrolment of this one a join token
    vouched for, or enrolled and not revoked in the snapshot's own roster when this store's roster
    already knows it as such. It must agree with the history this store holds (`_check_held`):
    `dropped` is the peer's truncation points, author -> (epoch, seq) (None: the snapshot's own stable
    frontier, for a bundle the caller took from a store it trusts). Events this store holds past the
    frontier (its own unsent ones, a returning device's) are kept and folded on top.

    Raises:
        SnapshotError: the bundle does not hold; nothing is changed.
    """
    trusted_now = store.roster()
    founder, anchor = store.founder, store.anchor()
    vouched = anchor[0].header.author if anchor else None

    def trusted(author: bytes, roster_state: bytes) -> bool:
        roster = Roster.from_bytes(roster_state) if roster_state else Roster()
        member = roster.members.get(author)
        if member is None or not member.active:
            return author == founder
        known = trusted_now.members.get(author)
        return author in (founder, vouched) or (known is not None and known.active)

    snap = snapshot.check(bundle, trusted)
    event = bundle.event
    kept_events = retained.checked(bundle, event.header.group)
    if dropped is None:
        dropped = {p.author: (p.epoch, p.seq) for p in snap.stable}

    def write(txn):
        db = store.dbs
        group = txn.get(b"group", db=db["meta"])
        if event.header.group != group:
            raise SnapshotError("snapshot belongs to another group")
        _check_reach(store, snap, dropped)
        _check_held(store, txn, snap, dropped, event.header.author)
        for h in snap.frontier:
            raw = txn.get(h.author, db=db["heads"])
            held = head_from(raw) if raw else None
            if held is None or (held.epoch, held.seq) < (h.epoch, h.seq):
                _delete_events(store, txn, _events_of(store, txn, h.author))   # it held less than the snapshot
                txn.put(h.author, head_value(Head(h.epoch, h.seq, h.id)), db=db["heads"])
                txn.put(h.author, truncation_value(h.epoch, h.seq, h.id, h.time, h.lamport), db=db["truncated"])
        kept = _install_kept(store, txn, kept_events)
        set_base(store.dbs, txn, event.id, bundle, kept)
        lamport = int.from_bytes(txn.get(b"lamport", db=db["meta"]) or b"\0", "big")
        txn.put(b"lamport", max(lamport, event.header.lamport - 1).to_bytes(8, "big"), db=db["meta"])
        if kept:
            txn.put(b"state", bundle.states["roster"], db=db["views.roster"])    # the readers' revocation limits
            rebuild_scopes(db, txn, limits_in(db, txn))
            _carry_out_erasures(store, txn, kept)
        refold_from_base(store, txn)
    store.write(write)
    return snap


def _install_kept(store: Store, txn,
                  events: list[tuple[bytes, bytes, bytes | None, bytes]]) -> list[tuple[bytes, bytes]]:
    """Store the kept events a bundle brings that this store lacks (one held header-only is withheld: asked of
    peers); (key, fold context) of each, in key order.

    Raises:
        SnapshotError: this store holds another event at one of their positions.
    """
    db = store.dbs
    for key, record, payload, _ in events:
        held = txn.get(key, db=db["events"])
        if held is not None:
            if record_id(bytes(held)) != record_id(record):
                raise SnapshotError(f"a kept event beside the snapshot is not the one this device holds at seq "
                                    f"{POS.unpack_from(key, 32)[1]} of {key[:32].hex()[:16]}")
            continue
        txn.put(key, record, db=db["events"])
        txn.put(record_id(record), key, db=db["ids"])
        if payload is None:
            txn.put(key, b"", db=db["withheld"])
        else:
            txn.put(key, payload, db=db["payloads"])
    return [(key, ctx) for key, _, _, ctx in events]


def _carry_out_erasures(store: Store, txn, kept: list[tuple[bytes, bytes]]) -> None:
    """Carry out the erase requests among the kept events just installed, as their ingest would have."""
    db, folded = store.dbs, []
    for key, _ in kept:
        record = bytes(txn.get(key, db=db["events"]))
        if peek_record(record)[2] == "erase" and (raw := txn.get(key, db=db["payloads"])) is not None:
            event = decode_record(record)
            folded.append(Folded.of(event.header, event.id, payloads.decode("erase", bytes(raw))))
    if folded:
        Eraser(store, txn, folded).carry_out()


def _check_held(store: Store, txn, snap: payloads.Snapshot, dropped: dict[bytes, tuple[int, int]],
                signer: bytes) -> None:
    """Refuse a snapshot that disagrees with the history this store holds (docs/compaction.md, Bootstrap).

    For each author this store holds anything of: a covered position it holds must be the very event
    (or truncation point) held there; the snapshot may not end below what this store compacted (the
    views would lose those events); it may cover past the head only where the peer dropped the events
    in between (`dropped` is past the head too) or where it needs the snapshot anyway (the peer dropped
    events it lacks of an author other than this device and the snapshot's `signer`), and never this
    device's own chain.

    Raises:
        SnapshotError: naming the author and positions.
    """
    db = store.dbs
    covered = {p.author: p for p in snap.frontier}
    cuts, heads = heads_in(db, txn, "truncated"), heads_in(db, txn)
    at_head = {a: (h.epoch, h.seq) for a, h in heads.items()}
    # the signer's own chain does not count: a rogue signer could claim that alone to move this device past
    # another author's head
    needed = any(a not in (store.device, signer) and cut > at_head.get(a, (0, 0)) for a, cut in dropped.items())
    for author, held in sorted(heads.items()):
        p = covered.get(author)
        at, have, name = (p.epoch, p.seq) if p else (0, 0), (held.epoch, held.seq), author.hex()[:16]
        cut = cuts.get(author)
        if cut is not None and at < (cut.epoch, cut.seq):
            raise SnapshotError(f"the snapshot covers {name} to seq {at[1]}, below seq {cut.seq}, which this "
                                f"device compacted: its views would lose those events")
        if p is None:
            continue
        if at <= have:
            if _held_id(store, txn, author, at) != p.id:
                raise SnapshotError(f"the snapshot names another event of {name} at seq {p.seq} than the one "
                                    f"this device holds")
        elif author == store.device:
            raise SnapshotError(f"the snapshot covers this device's own log to seq {p.seq}, past its head "
                                f"(seq {held.seq}): only this device can have written those events")
        elif dropped.get(author, (-1, -1)) <= have and not needed:
            raise SnapshotError(f"the snapshot covers {name} to seq {p.seq}, past seq {held.seq} held here, "
                                f"but the peer has not dropped the events in between: this device takes them "
                                f"as events, not from a snapshot")


def _check_reach(store: Store, snap: payloads.Snapshot, dropped: dict[bytes, tuple[int, int]]) -> None:
    """Refuse a snapshot that stops short of a truncation point of the peer's: it cannot stand in for the
    events the peer dropped (an honest peer's snapshot covers all it truncated). This device's own
    chain is left out: no peer holds an event of it that this device lacks."""
    covered = {p.author: (p.epoch, p.seq) for p in snap.frontier}
    for author, cut in sorted(dropped.items()):
        if author != store.device and covered.get(author, (-1, -1)) < cut:
            raise SnapshotError(f"the snapshot does not reach the peer's truncation point of {author.hex()[:16]} "
                                f"(seq {cut[1]}): it cannot stand in for the events the peer dropped")


def _held_id(store: Store, txn, author: bytes, at: tuple[int, int]) -> bytes | None:
    """The id of the author's event held at `at` (epoch, seq), or of its truncation point there; else None."""
    raw = txn.get(event_key(author, *at), db=store.dbs["events"])
    if raw is not None:
        return record_id(raw)
    cut = txn.get(author, db=store.dbs["truncated"])
    return head_from(cut).id if cut is not None and head_from(cut)[:2] == at else None
