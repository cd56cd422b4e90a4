"""The views inside the store's transactions: what the preference view asks of the log, the roster view,
revocation limits, digests, and folding every view again (from the whole log, or from the base snapshot).

Functions here take the store (its `dbs`, `pref_view` and `memory_view`) and an open transaction: the
Store, compaction and the scratch folds share them, so none of them reaches into another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from agentlog import crypto
from agentlog.errors import EventError
from agentlog.gcpause import quiet_gc
from agentlog.log import payloads, snapshot
from agentlog.log.epochs import fork_order
from agentlog.log.event import decode_record, peek_record, record_id
from agentlog.log.roster import Roster
from agentlog.log.validate import ROSTER_KINDS, check_payload
from agentlog.memory.reducer import KINDS as MEMORY_KINDS
from agentlog.memory.view import MemoryView
from agentlog.prefs.view import Folded, PrefView, folded_from_log
from agentlog.store.erasure import drop_forgotten
from agentlog.store.keyring import Opener, opener_in, save_unread
from agentlog.store.layout import POS, ROSTER_VERSION, event_key, head_from, limits_in, unpack_anchor
from agentlog.store.retained import contexts, covered_by_base, kept_beside
from agentlog.store.snapshots import base_in, load
from agentlog.watch.changelog import mark_refold


def time_of(dbs: dict, txn, author: bytes, epoch: int, seq: int) -> int | None:
    """The author's clock on a stored event that counts (or on the enrolment a join token vouched for):
    a revoked device's events past its revocation seq do not."""
    limit = limits_in(dbs, txn).get(author)
    if limit is not None and seq > limit:
        return None
    key = event_key(author, epoch, seq)
    raw = txn.get(key, db=dbs["events"])
    if txn.stat(dbs["branches"])["entries"]:
        t = _fork_time(dbs, txn, key, raw)
        if t is not None:
            return t
    if raw is not None:
        return peek_record(raw)[1]
    cut = txn.get(author, db=dbs["truncated"])
    if cut is not None and POS.unpack_from(cut) == (epoch, seq):
        return int.from_bytes(cut[44:52], "big")          # compaction dropped it and kept its time
    anchor = txn.get(b"anchor", db=dbs["meta"])
    if anchor:
        h = unpack_anchor(bytes(anchor))[0].header
        if (h.author, h.epoch, h.seq) == (author, epoch, seq):
            return h.time_ms
    return None


def _fork_time(dbs: dict, txn, key: bytes, raw) -> int | None:
    """The time of the event with the greatest id at `key`'s position, of the main chain's (`raw`, None where this
    device's main chain is shorter) and a fork's branches' (a clock names a position, not an id: every device picks
    the same one, as epochs.fork_order folds them); None when none is held there."""
    best = None if raw is None else (record_id(bytes(raw)), peek_record(raw)[1])
    with txn.cursor(db=dbs["events"]) as cur:
        found = cur.set_range(key + b"\0")
        while found and cur.key()[:len(key)] == key:
            here = (bytes(cur.key()[len(key):]), peek_record(cur.value())[1])
            best = here if best is None else max(best, here)
            found = cur.next()
    return None if best is None else best[1]


def event_of(dbs: dict, txn, eid: bytes):
    """(header, id, decoded payload or None) of a stored event, or None."""
    key = txn.get(eid, db=dbs["ids"])
    record = txn.get(key, db=dbs["events"]) if key else None
    if record is None:
        return None
    event = decode_record(bytes(record))
    raw = txn.get(key, db=dbs["payloads"])
    decoded = None
    if raw is not None and event.header.kind in payloads.KINDS and event.header.payload_codec == "plain":
        decoded = payloads.decode(event.header.kind, bytes(raw))
    return event.header, event.id, decoded


def view_digests(dbs: dict, txn) -> dict[str, dict]:
    """Each view's reducer version and digest in `txn` (the store's, or a scratch environment's)."""
    pref, memory = PrefView(dbs, None, None), MemoryView(dbs)
    state = txn.get(b"state", db=dbs["views.roster"]) or b""
    version = int.from_bytes(txn.get(b"version", db=dbs["views.roster"]) or b"\0", "big")
    return {"roster": {"version": version, "digest": crypto.blake2b256(bytes(state))},
            "pref": {"version": pref.version(txn), "digest": pref.digest(txn)},
            "memory": {"version": memory.version(txn), "digest": memory.digest(txn)}}


def folded_log(dbs: dict, txn, opener: Opener | None = None) -> Iterator[Folded]:
    """The stored events as the views fold them, leaving out a revoked device's past its revocation; sealed
    payloads opened by `opener` (none: not folded)."""
    return folded_from_log(txn, dbs["events"], dbs["payloads"], limits_in(dbs, txn), opener)


# -- the roster view -------------------------------------------------------------------------------------

def roster_in(dbs: dict, txn) -> Roster:
    """The roster view in `txn`, plus the enrolment a join token vouched for."""
    raw = txn.get(b"state", db=dbs["views.roster"])
    roster = Roster.from_bytes(bytes(raw)) if raw else Roster()
    roster.founder = txn.get(b"founder", db=dbs["meta"])
    anchor = txn.get(b"anchor", db=dbs["meta"])
    if anchor:
        event, enroll = unpack_anchor(bytes(anchor))
        roster.apply(event.header, event.id, enroll)
    return roster


def save_roster(dbs: dict, txn, roster: Roster) -> None:
    txn.put(b"state", roster.to_bytes(), db=dbs["views.roster"])
    txn.put(b"version", ROSTER_VERSION, db=dbs["views.roster"])


def rebuild_roster(dbs: dict, txn, keys: list[bytes] | None = None) -> None:
    """Fold the roster again from the log (or from the roster events at `keys`, when known)."""
    save_roster(dbs, txn, fold_roster(dbs, txn, keys))


def fold_roster(dbs: dict, txn, keys: list[bytes] | None = None) -> Roster:
    """The roster the log's roster events (or those at `keys`) fold to."""
    if keys is None:
        with txn.cursor(db=dbs["events"]) as cur:
            keys = [key for key, record in cur if _kind_or_none(record) in ROSTER_KINDS]
    found = []
    for key in keys:
        try:
            event = decode_record(txn.get(key, db=dbs["events"]), txn.get(key, db=dbs["payloads"]))
            found.append((event.header, event.id, check_payload(event)))
        except EventError:
            continue
    return Roster.replay(txn.get(b"founder", db=dbs["meta"]), found)


def _kind_or_none(record: bytes) -> str | None:
    try:
        return peek_record(record)[2]
    except EventError:
        return None


# -- folding again ---------------------------------------------------------------------------------------

def refold(store, txn, progress: Callable[[int], None] | None = None, roster: bool = True) -> int:
    """Fold the preference and memory views (and the roster, which counts every accepted event) again:
    from the base snapshot's state when compaction dropped events, else from the whole log."""
    mark_refold(store, txn)
    with quiet_gc():
        return _refold(store, txn, progress, roster)


def _refold(store, txn, progress: Callable[[int], None] | None, roster: bool) -> int:
    n = refold_from_base(store, txn, progress)
    if n is not None:
        return n
    dbs, roster_keys = store.dbs, []
    memory = store.memory_view.rebuilder(txn)
    opener = opener_in(store, txn)

    folded = folded_log(dbs, txn, opener)
    if txn.stat(dbs["branches"])["entries"]:
        folded = fork_order(folded)

    def events():
        """The log in chunks: each folded by the memory view first, then given to the preference view
        without the memory writes' payloads (it does not read them: their vectors need not stay held)."""
        read = iter(folded)
        while chunk := list(islice(read, 10_000)):
            memory.add_all(chunk)
            for i, f in enumerate(chunk):
                if f.kind in _SPECIAL_KINDS:
                    if f.kind in MEMORY_KINDS:
                        chunk[i] = f._replace(payload=None)
                    else:
                        roster_keys.append(event_key(f.author, f.epoch, f.seq))
            yield from chunk
    n = store.pref_view.rebuild(txn, events(), progress)
    memory.finish()
    save_unread(dbs, txn, opener)
    if roster:
        rebuild_roster(dbs, txn, None if limits_in(dbs, txn) else roster_keys)
    return n


_SPECIAL_KINDS = frozenset(ROSTER_KINDS) | MEMORY_KINDS     # the events a refold looks at one by one


def drop_past_revocations(store, txn) -> None:
    """After a revocation: if this store took the device's events past its revocation seq (before the
    revocation reached it), fold the views again without them, as every other device has them."""
    dbs = store.dbs
    for device, limit in limits_in(dbs, txn).items():
        raw = txn.get(device, db=dbs["heads"])
        if raw is not None and head_from(raw).seq > limit:
            refold(store, txn, roster=False)
            return


def refold_from_base(store, txn, progress: Callable[[int], None] | None = None) -> int | None:
    """Set every view to the base snapshot's state and fold the held events it does not cover (those past its
    frontier, and those kept beside it), in causal order; None when the store has no base. Returns the events
    folded."""
    dbs = store.dbs
    bundle = base_in(dbs, txn)
    if bundle is None:
        return None
    install_states(dbs, txn, bundle.states)
    store.pref_view.upgrade_base(txn)
    covered = covered_by_base(dbs, txn)
    opener = opener_in(store, txn)
    later = [f for f in folded_log(dbs, txn, opener) if not covered(event_key(f.author, f.epoch, f.seq))]
    save_unread(dbs, txn, opener)
    later.sort(key=lambda f: (f.lamport, f.author, f.epoch, f.seq, f.eid))   # eid: a fork's branches
    roster = Roster.from_bytes(bytes(txn.get(b"state", db=dbs["views.roster"]) or b""))
    roster.founder = txn.get(b"founder", db=dbs["meta"])
    changed = False
    for f in later:
        if f.kind in ("device.enroll", "device.revoke"):
            key = event_key(f.author, f.epoch, f.seq)
            event = decode_record(bytes(txn.get(key, db=dbs["events"])), bytes(txn.get(key, db=dbs["payloads"])))
            changed |= roster.apply(event.header, event.id, payloads.decode(f.kind, event.payload))
    if changed:
        save_roster(dbs, txn, roster)
    newest, past = contexts(kept_beside(dbs, txn), later)
    store.pref_view.fold(txn, later, kept=newest)
    store.memory_view.fold(txn, later, kept=past)
    drop_forgotten(store, txn)
    if progress:
        progress(len(later))
    return len(later)


def install_states(dbs: dict, txn, states: dict[str, bytes]) -> None:
    """Set every view's databases to a snapshot's states (the memory entries marked dirty for the index)."""
    for name, names in snapshot.VIEW_DBS.items():
        load(txn, [dbs[n] for n in names], states[name])
    txn.put(b"state", states["roster"], db=dbs["views.roster"])
    txn.put(b"version", ROSTER_VERSION, db=dbs["views.roster"])
    txn.drop(dbs["memory.dirty"], delete=False)
    with txn.cursor(db=dbs["views.memory"]) as cur:
        dirty = [(bytes(k), b"") for k in cur.iternext(keys=True, values=False) if len(k) == 16]
    txn.cursor(db=dbs["memory.dirty"]).putmulti(dirty)
