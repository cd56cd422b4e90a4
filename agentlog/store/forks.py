"""Forked logs in the store: keeping both branches, naming them to peers, and healing this device's own.

A fork is two signed events of one author at one (epoch, seq). The event the author's chain holds stays at
its key in `events`; each event of another branch is kept beside it under author(32) epoch(4) seq(8) id(32),
so every fold, count and export that walks `events` takes both branches like concurrent events. `branches`
names each branch: branch id (agentlog.log.epochs.branch_id) -> author(32) epoch(4) fork seq(8) side(1)
head seq(8) head id(32); side 1 is the main chain's own side of the fork (its head is the last event of the
main chain in that epoch). Replication shows each branch as a frontier entry under its branch id, so peers ask
for the branch they lack by a range like any author's. `suspects` (author -> epoch(4) seq(8)) lowers the
frontier this device shows for an author whose chain may have forked above that point: it then asks its peers
for that author's events again from there (a restored home for its own, a chain that did not link for any).
The author heals its own fork with an epoch.start naming every branch head (docs/format.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import ChainError, ForkError, SequenceError, SignatureError
from agentlog.log import payloads
from agentlog.log.epochs import START_KIND, branch_id
from agentlog.log.event import decode_record, peek_record, record_id
from agentlog.log.validate import FORK_CLAIM, LAMPORT_STEP, TRUNCATED, Head, check_event
from agentlog.store.append import append_in
from agentlog.store.layout import POS, event_key, head_from
from agentlog.store.views import roster_in

BRANCHABLE = (ForkError, ChainError, SequenceError)     # the refusals a branch of a fork meets on the main chain
_ROW = struct.Struct(">32sIQBQ32s")                     # author, epoch, fork seq, side, head seq, head id
HEAL_FLAG = b"fork.heal"                                # meta: this device's own log forked and is not healed
RESTORE_LAMPORT_BUMP = LAMPORT_STEP // 2                # a restored device's next lamports pass those it lost


@dataclass(frozen=True, slots=True)
class Branch:
    bid: bytes
    author: bytes
    epoch: int
    fork_seq: int
    main: bool          # the main chain's own side of the fork
    head_seq: int
    head_id: bytes


def branches_in(dbs: dict, txn, author: bytes | None = None) -> list[Branch]:
    out = []
    with txn.cursor(db=dbs["branches"]) as cur:
        for bid, raw in cur:
            a, epoch, fork_seq, side, head_seq, head_id = _ROW.unpack(bytes(raw))
            if author is None or a == author:
                out.append(Branch(bytes(bid), a, epoch, fork_seq, bool(side), head_seq, head_id))
    return out


def _put(dbs: dict, txn, b: Branch) -> None:
    txn.put(b.bid, _ROW.pack(b.author, b.epoch, b.fork_seq, int(b.main), b.head_seq, b.head_id), db=dbs["branches"])


def _main_last(dbs: dict, txn, author: bytes, epoch: int) -> Head | None:
    """The last event of `author`'s main chain in `epoch`."""
    with txn.cursor(db=dbs["events"]) as cur:
        found = cur.prev() if cur.set_range(event_key(author, epoch + 1, 0)) else cur.last()
        while found:
            key = cur.key()
            if key[:32] != author or POS.unpack_from(key, 32)[0] != epoch:
                return None
            if len(key) == 44:
                return Head(epoch, POS.unpack_from(key, 32)[1], record_id(cur.value()))
            found = cur.prev()
    return None


# -- the validator's questions (agentlog.log.validate.LogView) ------------------------------------------

def branch_of(dbs: dict, txn, log, author: bytes, epoch: int, seq: int, eid: bytes) -> bytes | None:
    """The branch id holding `eid` at (author, epoch, seq) past its fork point, or None."""
    rows = [b for b in branches_in(dbs, txn, author) if b.epoch == epoch and b.fork_seq <= seq]
    if log.id_at(author, epoch, seq) == eid:
        sides = sorted((b.fork_seq, b.bid) for b in rows if b.main)
        return sides[-1][1] if sides else None
    if txn.get(event_key(author, epoch, seq) + eid, db=dbs["events"]) is None:
        return None
    return _branch_holding(dbs, txn, log, [b for b in rows if not b.main], author, epoch, seq, eid)


def _branch_holding(dbs, txn, log, rows: list[Branch], author: bytes, epoch: int, seq: int,
                    eid: bytes) -> bytes | None:
    """Which of the forked branches `rows` holds the branch event `eid`: the one whose first event its prev
    links lead back to."""
    while seq > 0:
        for b in rows:
            if b.fork_seq == seq and branch_id(author, eid) == b.bid:
                return b.bid
        record = txn.get(event_key(author, epoch, seq) + eid, db=dbs["events"])
        if record is None:
            return None
        eid, seq = decode_record(bytes(record)).header.prev, seq - 1
    return None


def branch_holds(dbs: dict, txn, author: bytes, epoch: int, seq: int) -> bool:
    return any((epoch, seq) <= (b.epoch, b.head_seq) for b in branches_in(dbs, txn, author) if not b.main)


class _BranchView:
    """The validator's view of a store in which `author`'s chain ends at `head` (a branch's last event)."""

    def __init__(self, log, author: bytes, head: Head, lamport: int):
        self._log, self._author, self._head, self._lamport = log, author, head, lamport
        self.group, self.genesis, self.roster = log.group, log.genesis, log.roster

    def head(self, author: bytes) -> Head | None:
        return self._head if author == self._author else self._log.head(author)

    def id_at(self, author: bytes, epoch: int, seq: int) -> bytes | None:
        return self._log.id_at(author, epoch, seq)

    def lamport_at(self, author: bytes, epoch: int, seq: int) -> int | None:
        if (author, epoch, seq) == (self._author, self._head.epoch, self._head.seq):
            return self._lamport
        return self._log.lamport_at(author, epoch, seq)

    def branch_of(self, author: bytes, epoch: int, seq: int, eid: bytes) -> bytes | None:
        return self._log.branch_of(author, epoch, seq, eid)

    def branch_holds(self, author: bytes, epoch: int, seq: int) -> bool:
        return self._log.branch_holds(author, epoch, seq)


# -- placing an incoming event of another branch ------------------------------------------------------------

def place(store, txn, log, record: bytes, payload: bytes | None, refused: Exception):
    """Keep an event the main chain refused (`refused`) when it belongs to a fork: it links to an event of its
    author held here (the main chain's, or a branch's) at the seq before, and is valid and signed as that chain's
    next event. Returns (event, decoded payload), or None when it is held already; raises `refused` when the
    event is not on a fork, or what validation found wrong with it as a branch's event."""
    dbs = store.dbs
    event = decode_record(record, payload)
    h = event.header
    author, epoch, seq = h.author, h.epoch, h.seq
    if txn.get(event.id, db=dbs["ids"]) is not None:
        return None
    if seq == 1 and epoch > 0:
        raise refused                         # a second epoch.start: its author forked again (a copied key)
    below = event_key(author, epoch, seq - 1)
    on_main = h.prev == crypto.ZERO_ID if seq == 1 else log.id_at(author, epoch, seq - 1) == h.prev
    prev_record = None if on_main else txn.get(below + h.prev, db=dbs["events"])
    if not on_main and prev_record is None:
        raise refused
    taken = log.id_at(author, epoch, seq)
    if taken == TRUNCATED:
        raise refused                         # below a truncation point: nothing left to compare with
    if on_main and taken is None:
        return _tail(store, txn, log, event, refused)
    lamport = (log.lamport_at(author, epoch, seq - 1) if seq > 1 else 0) if on_main else \
        peek_record(bytes(prev_record))[0]
    view = _BranchView(log, author, Head(epoch, seq - 1, h.prev), lamport if lamport is not None else 0)
    try:
        event, decoded = check_event(record, payload, view, check_signature=True)
    except SignatureError as exc:
        raise SignatureError(FORK_CLAIM + exc.args[0], author, seq) from None
    key = event_key(author, epoch, seq) + event.id
    _store(dbs, txn, key, event)
    rows = branches_in(dbs, txn, author)
    if on_main:
        bid = branch_id(author, event.id)
        _put(dbs, txn, Branch(bid, author, epoch, seq, False, seq, event.id))
        side = branch_id(author, taken)
        if not any(b.bid == side for b in rows):
            _put(dbs, txn, Branch(side, author, epoch, seq, True, seq, taken))
        _prove(dbs, txn, log, author, epoch, seq, taken, event.record)
    else:
        bid = _branch_holding(dbs, txn, log, [b for b in rows if not b.main and b.epoch == epoch], author,
                              epoch, seq - 1, h.prev)
        for b in rows:
            if b.bid == bid and b.head_seq == seq - 1:
                _put(dbs, txn, Branch(b.bid, author, epoch, b.fork_seq, False, seq, event.id))
    txn.delete(author, db=dbs["suspects"])
    if author == store.device:
        txn.put(HEAL_FLAG, b"\1", db=dbs["meta"])
    return event, decoded


def _tail(store, txn, log, event, refused: Exception):
    """An event that continues the main chain of an epoch its author has closed (its head moved on to the next
    epoch before this arrived): kept at its own key, the head left where it is."""
    h = event.header
    head = log.head(h.author)
    if head is None or head.epoch <= h.epoch or not isinstance(refused, SequenceError):
        raise refused
    view = _BranchView(log, h.author, Head(h.epoch, h.seq - 1, h.prev), log.lamport_at(h.author, h.epoch, h.seq - 1)
                       or 0)
    event, decoded = check_event(event.record, event.payload, view, check_signature=True)
    _store(store.dbs, txn, event_key(h.author, h.epoch, h.seq), event)
    return event, decoded


def _store(dbs: dict, txn, key: bytes, event) -> None:
    txn.put(key, event.record, db=dbs["events"])
    txn.put(event.id, key, db=dbs["ids"])
    if event.payload is not None:
        txn.put(key, event.payload, db=dbs["payloads"])


def _prove(dbs: dict, txn, log, author: bytes, epoch: int, seq: int, kept: bytes, incoming: bytes) -> None:
    """Keep both records at a fork's position in `forks` (the proof peers and audits check)."""
    pos = event_key(author, epoch, seq)
    stored = txn.get(pos, db=dbs["events"])
    accepted = log.accepted_record(pos)
    main = accepted if accepted is not None else (bytes(stored) if stored is not None else None)
    if main is not None and record_id(main) == kept:
        txn.put(pos + kept, main, db=dbs["forks"])
    txn.put(pos + record_id(incoming), incoming, db=dbs["forks"])


# -- suspects: asking peers for an author's events again ---------------------------------------------------

def suspect(store, refused: ChainError | ForkError, batch) -> bool:
    """A signed event of `refused`'s author did not link to the chain held here (or forked from it at an event
    this store does not hold): its chain and ours may have forked below. Show peers that author's frontier at its
    truncation point (or 0), so the next connection asks for the whole epoch again and meets the fork's position.
    Whether it was marked."""
    dbs = store.dbs
    for record, _ in batch:
        event = decode_record(record)
        h = event.header
        if (h.author, h.seq) == (refused.author, refused.seq) and crypto.verify(h.author, event.id, event.signature):
            def write(txn, h=h):
                cut = txn.get(h.author, db=dbs["truncated"])
                point = head_from(cut) if cut is not None else None
                low = point.seq if point is not None and point.epoch == h.epoch else 0
                txn.put(h.author, POS.pack(h.epoch, low), db=dbs["suspects"])
            store.write(write)
            return True
    return False


def mark_restored(store) -> None:
    """A home restored from a backup: until a peer shows it holds nothing newer of this device, show peers this
    device's own frontier as it was at the backup, so they send its later events (a fork, if it wrote since).
    Its lamport counter moves ahead, within what validation allows, so that what it writes next is ordered
    after what it wrote before the restore, not tied with it."""
    dbs = store.dbs

    def write(txn):
        raw = txn.get(store.device, db=dbs["heads"])
        head = head_from(raw) if raw else Head(0, 0, crypto.ZERO_ID)
        txn.put(store.device, POS.pack(head.epoch, head.seq), db=dbs["suspects"])
        txn.put(b"restored", POS.pack(head.epoch, head.seq), db=dbs["meta"])
        counter = int.from_bytes(txn.get(b"lamport", db=dbs["meta"]) or b"\0", "big")
        own = peek_record(bytes(txn.get(event_key(store.device, head.epoch, head.seq), db=dbs["events"])))[0] \
            if raw else 0
        bump = max(0, min(RESTORE_LAMPORT_BUMP, own + LAMPORT_STEP - counter - 1024))
        txn.put(b"lamport", (counter + bump).to_bytes(8, "big"), db=dbs["meta"])
    store.write(write)


def caught_up(store, theirs: dict) -> None:
    """A peer's frontier `theirs` is known in full: drop the suspects it holds nothing newer of."""
    dbs = store.dbs

    def write(txn):
        dropped = 0
        with txn.cursor(db=dbs["suspects"]) as cur:
            authors = [bytes(a) for a in cur.iternext(values=False)]
        for author in authors:
            raw = txn.get(author, db=dbs["heads"])
            held = head_from(raw) if raw else Head(0, 0, b"")
            if theirs.get(author, (0, 0)) <= (held.epoch, held.seq):
                dropped += txn.delete(author, db=dbs["suspects"])
        return dropped
    if store.read(lambda txn: txn.stat(dbs["suspects"])["entries"]) and store.write(write):
        store.nudge()              # what it wrote meanwhile may go out now


# -- what replication shows and reads ------------------------------------------------------------------------

def frontier(store, base: dict) -> dict:
    """`base` (author -> (epoch, seq)) lowered for suspects, plus every branch under its branch id."""
    return store.read(lambda txn: frontier_in(store.dbs, txn, base))


def frontier_in(dbs: dict, txn, base: dict) -> dict:
    """`frontier` in the caller's transaction."""
    if not (txn.stat(dbs["branches"])["entries"] or txn.stat(dbs["suspects"])["entries"]):
        return base
    out = dict(base)
    with txn.cursor(db=dbs["suspects"]) as cur:
        for author, raw in cur:
            if bytes(author) in out:
                out[bytes(author)] = min(out[bytes(author)], POS.unpack(bytes(raw)))
                if out[bytes(author)][1] == 0:
                    del out[bytes(author)]          # shown as not held at all: peers send from seq 1
    for b in branches_in(dbs, txn):
        last = _main_last(dbs, txn, b.author, b.epoch) if b.main else Head(b.epoch, b.head_seq, b.head_id)
        if last is not None:
            out[b.bid] = (last.epoch, last.seq)
    return out


def read(store, bid: bytes, epoch: int, lo: int, hi: int, limit: int) -> list[tuple[int, bytes, bytes | None]]:
    """Up to `limit` events of branch `bid` from seq `lo` to `hi` (below its fork point: the chain it forked
    from), as (lamport, record, payload or None); [] when `bid` names no branch held here."""
    dbs = store.dbs

    def walk(txn):
        raw = txn.get(bid, db=dbs["branches"])
        if raw is None:
            return []
        author, b_epoch, fork_seq, side, head_seq, head_id = _ROW.unpack(bytes(raw))
        if b_epoch != epoch:
            return []
        keys = []
        if side:
            last = _main_last(dbs, txn, author, epoch)
            keys = [event_key(author, epoch, s) for s in range(lo, min(hi, last.seq if last else 0) + 1)]
        else:
            seq, eid = head_seq, head_id
            while seq >= lo:
                key = event_key(author, epoch, seq)
                record = txn.get(key + eid, db=dbs["events"]) if seq >= fork_seq else None
                if record is not None:
                    key += eid
                else:
                    record = txn.get(key, db=dbs["events"])
                    if record is None or record_id(bytes(record)) != eid:
                        return []
                if seq <= hi:
                    keys.append(key)
                eid, seq = decode_record(bytes(record)).header.prev, seq - 1
            keys.reverse()
        out = []
        for key in keys[:limit]:
            record = txn.get(key, db=dbs["events"])
            if record is None:
                break
            payload = txn.get(key, db=dbs["payloads"])
            out.append((peek_record(bytes(record))[0], bytes(record), bytes(payload) if payload is not None else None))
        return out
    return store.read(walk)


# -- healing this device's own fork ----------------------------------------------------------------------------

def heal(store) -> bytes | None:
    """When this device's own log forked in its current epoch, write the epoch.start that continues it in the
    next: it names the main chain's head first (its prev) and every other branch's head. Returns its id."""
    dbs, me = store.dbs, store.device

    def write(txn):
        txn.delete(HEAL_FLAG, db=dbs["meta"])
        raw = txn.get(me, db=dbs["heads"])
        if raw is None:
            return None
        head = head_from(raw)
        rows = [b for b in branches_in(dbs, txn, me) if b.epoch == head.epoch and not b.main]
        if not rows:
            return None
        refs = (payloads.HeadRef(author=me, epoch=head.epoch, seq=head.seq, id=head.id),
                *(payloads.HeadRef(author=me, epoch=b.epoch, seq=b.head_seq, id=b.head_id) for b in rows))
        txn.delete(b"restored", db=dbs["meta"])
        [eid] = append_in(store, txn, [(payloads.EpochStart(branches=refs), "user")], roster_in(dbs, txn))
        return eid
    found = store.write(write)
    if found:
        store.nudge()
    return found


def needs_heal(store) -> bool:
    return store.key is not None and store.read(lambda txn: heal_pending(store.dbs, txn))


def heal_pending(dbs: dict, txn) -> bool:
    """This device's own log forked and is not healed yet (as `txn` sees it)."""
    return txn.get(HEAL_FLAG, db=dbs["meta"]) is not None


def fork_counts(store, authors) -> dict[bytes, int]:
    """Author -> how many fork positions of its this store holds proof of (two or more: a copied key)."""
    counts = dict.fromkeys(authors, 0)
    for proof in store.forks():
        if proof.author in counts:
            counts[proof.author] += 1
    return counts


def branch_problems(dbs: dict, txn, key: bytes, event) -> list[str]:
    """What `agentlog verify` finds wrong with a forked branch's event stored at `key`."""
    h, found = event.header, []
    if key != event_key(h.author, h.epoch, h.seq) + event.id:
        found.append("a branch event stored under the wrong key (moved or swapped)")
    if not crypto.verify(h.author, event.id, event.signature):
        found.append("a branch event's signature does not verify")
    below = event_key(h.author, h.epoch, h.seq - 1)
    main = txn.get(below, db=dbs["events"])
    if not ((h.seq == 1 and h.prev == crypto.ZERO_ID) or (main is not None and record_id(bytes(main)) == h.prev)
            or txn.get(below + h.prev, db=dbs["events"])):
        found.append("a branch event's prev links to no event of its author held here")
    if txn.get(event.id, db=dbs["ids"]) != key:
        found.append("id index does not point at this branch event")
    if event.payload is not None and crypto.blake2b256(event.payload) != h.payload_hash:
        found.append("a branch event's payload does not match its header's payload hash")
    return found


# -- what status, verify and the audit show ---------------------------------------------------------------------

def summary(store) -> dict:
    """{"forks": each fork position with both records' ids, when, the branch heads and the epoch.start that
    healed it (or None); "copied_keys": authors forked at two or more positions (two live devices share a key)}."""
    dbs = store.dbs

    def read(txn):
        out, per_author = [], {}
        for proof in store.forks():
            author, epoch = proof.author, proof.epoch
            times = [decode_record(r).header.time_ms for _, r in proof.records]
            start = txn.get(event_key(author, epoch + 1, 1), db=dbs["events"])
            healed = None
            heads = [[b.head_seq, b.head_id.hex()] for b in branches_in(dbs, txn, author)
                     if b.epoch == epoch and not b.main]
            if start is not None:
                event = decode_record(bytes(start), txn.get(event_key(author, epoch + 1, 1), db=dbs["payloads"]))
                if event.header.kind == START_KIND and event.payload is not None:
                    refs = payloads.decode(START_KIND, event.payload).branches
                    heads = [[r.seq, r.id.hex()] for r in refs]
                    healed = {"epoch": epoch + 1, "event": event.id.hex(), "time_ms": event.header.time_ms}
            out.append({"author": author.hex(), "epoch": epoch, "seq": proof.seq, "time_ms": min(times, default=0),
                        "records": [eid.hex() for eid, _ in proof.records], "heads": heads, "healed": healed})
            per_author[author] = per_author.get(author, 0) + 1
        copied = sorted(a.hex() for a, n in per_author.items() if n >= 2)
        return {"forks": out, "copied_keys": copied}
    return store.read(read)
