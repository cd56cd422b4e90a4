"""Ingest: validating and storing events from outside in one write transaction, and keeping fork proofs.

Kept apart from agentlog.store.store so that the hot path of replication reads as one piece: the
validator's view of the store (TxnLog), then storing, folding and the ledger, all in the caller's
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from operator import attrgetter

from agentlog import crypto
from agentlog.errors import DecodeError, EventError, ForkError, SignatureError
from agentlog.log import payloads, sealing
from agentlog.log.event import Event, decode_record, peek_record, record_id
from agentlog.log.kinds import ERASE_KIND, SCOPE_KINDS, USER_SCOPE, is_sealed_scope
from agentlog.log.roster import Member, Roster
from agentlog.log.scopes import ScopeEvent
from agentlog.log.validate import (
    LAMPORT_STEP,
    ROSTER_KINDS,
    TRUNCATED,
    Duplicate,
    Head,
    Predecoded,
    check_event,
    check_payload,
    predecode,
)
from agentlog.prefs.view import Folded
from agentlog.store import carry, forks, ledger
from agentlog.store.erasure import Eraser, has_state
from agentlog.store.keyring import has_scopes, save_scopes, scopes_in
from agentlog.store.layout import POS, event_key, head_from, head_value
from agentlog.store.views import drop_past_revocations, refold, roster_in, save_roster
from agentlog.watch.changelog import Capture


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    heads: dict[bytes, tuple[int, int]]        # author -> (epoch, seq) of its last event accepted here
    filled: int = 0                            # events held without their payload that this batch completed
    healed: int = 0                            # events held unchecked or damaged whose signature this batch replaced
    caught: tuple = ()                         # (event id, reason) this device's own erase rules caught on arrival
    forked: tuple = ()                         # authors of the events this batch kept on a forked branch


_tuple_new = tuple.__new__           # builds a NamedTuple without its Python-level __new__
_KIND, _POSITION = attrgetter("kind"), attrgetter("author", "epoch", "seq")     # of a Folded


def roster_of(store, txn) -> Roster:
    """`roster_in` (a fresh Roster the caller may change), parsed again only when the stored roster, founder or
    join anchor changed: parsing them cost each append and each ingested batch tens of µs, most of it on code
    a durable commit had left cold. The cached Roster is never handed out, so threads may share it."""
    dbs = store.dbs
    key = (txn.get(b"state", db=dbs["views.roster"]), txn.get(b"founder", db=dbs["meta"]),
           txn.get(b"anchor", db=dbs["meta"]))
    key = tuple(None if v is None else bytes(v) for v in key)
    cached = store.roster_cache
    if cached is None or cached[0] != key:
        cached = store.roster_cache = (key, roster_in(dbs, txn))
    roster = cached[1]
    out = Roster(roster.founder)
    out.members = {device: Member(m.device, list(m.enrollments), m.until_seq, list(m.revoked_by))
                   for device, m in roster.members.items()}
    return out


class TxnLog:
    """The validator's view of the store inside one write transaction.

    Events a batch accepts are kept here, and their heads, until `flush` writes them: the
    validator reads each author's head for every event, and a dict is cheaper than LMDB.
    """

    def __init__(self, dbs: dict, txn, roster: Roster):
        self._db, self._txn = dbs, txn
        self.group = txn.get(b"group", db=dbs["meta"])
        self.genesis = txn.get(b"genesis", db=dbs["meta"])
        self.roster = roster
        self._heads: dict[bytes, Head | None] = {}
        self._lamports: dict[bytes, tuple[Head, int | None]] = {}   # author -> (its head, that event's lamport)
        self._active: set[bytes] = set()                 # authors `follows` found enrolled and never revoked
        self._accepted: dict[bytes, Event] = {}          # event key -> event, in the order accepted
        self._records: dict[bytes, bytes] = {}           # event key -> its record as it arrived (header ++ signature)
        self._uncarried: dict[bytes, bytes] = {}         # event key -> key id: stored header-only by choice
        self._fills: dict[bytes, Event] = {}             # event key -> delivery completing one held header-only
        self._erased: set[bytes] = set()                 # keys stored header-only because a request erases them

    def head(self, author: bytes) -> Head | None:
        try:
            return self._heads[author]
        except KeyError:
            raw = self._txn.get(author, db=self._db["heads"])
            head = self._heads[author] = head_from(raw) if raw else None
            return head

    def id_at(self, author: bytes, epoch: int, seq: int) -> bytes | None:
        key = event_key(author, epoch, seq)
        event = self._accepted.get(key)
        if event is not None:
            return event.id
        raw = self._txn.get(key, db=self._db["events"])
        if raw:
            return record_id(raw)
        cut = self._txn.get(author, db=self._db["truncated"])
        if cut is not None:
            point = head_from(cut)
            if (epoch, seq) == (point.epoch, point.seq):
                return point.id
            if (epoch, seq) < (point.epoch, point.seq):
                return TRUNCATED
        return None

    def lamport_at(self, author: bytes, epoch: int, seq: int) -> int | None:
        event = self._accepted.get(event_key(author, epoch, seq))
        if event is not None:
            return event.header.lamport
        raw = self._txn.get(event_key(author, epoch, seq), db=self._db["events"])
        return peek_record(raw)[0] if raw else None

    def branch_of(self, author: bytes, epoch: int, seq: int, eid: bytes) -> bytes | None:
        return forks.branch_of(self._db, self._txn, self, author, epoch, seq, eid)

    def branch_holds(self, author: bytes, epoch: int, seq: int) -> bool:
        return forks.branch_holds(self._db, self._txn, author, epoch, seq)

    def accepted_record(self, key: bytes) -> bytes | None:
        """The record of an event this batch accepted at `key` and has not stored yet."""
        return self._records.get(key)

    def follows(self, pre: Predecoded) -> Event | None:
        """The predecoded event when check_event (signature aside) would surely accept it: the next of its author's
        chain in its head's epoch past seq 1, linked to the head, with no clock, by an enrolled device never
        revoked, its lamport within LAMPORT_STEP above the head's, its own checks passed. None: check_event
        decides (and raises what it finds first)."""
        event = pre.event
        if event is None or isinstance(pre.checked, EventError):
            return None
        h = event.header
        author = h.author
        try:
            head = self._heads[author]
        except KeyError:
            head = self.head(author)
        if head is None or h.seq != head.seq + 1 or h.seq < 2 or h.epoch != head.epoch or h.prev != head.id \
                or h.clock or h.group != self.group:
            return None
        if author not in self._active:
            member = self.roster.members.get(author)
            if member is None or not member.active:
                return None
            self._active.add(author)
        known = self._lamports.get(author)
        if known is None or known[0] is not head:
            known = self._lamports[author] = (head, self.lamport_at(author, head.epoch, head.seq))
        before = known[1]
        if before is not None and not before < h.lamport <= before + LAMPORT_STEP:
            return None
        return event

    def roster_changed(self) -> None:
        """The batch applied a roster event: who is enrolled and active is looked up again."""
        self._active.clear()

    def accept(self, event: Event, record: bytes) -> None:
        """Hold a validated event, and `record` as it arrived (its header bytes and signature, stored as they are
        without joining them again), as its author's new head, to be stored by `flush`."""
        h = event.header
        author = h.author
        key = author + POS.pack(h.epoch, h.seq)
        self._accepted[key] = event
        self._records[key] = record
        head = self._heads[author] = _tuple_new(Head, (h.epoch, h.seq, event.id))
        self._lamports[author] = (head, h.lamport)

    def unchecked(self, checked) -> list[tuple[bytes, bytes]]:
        """(event key, b"") of the accepted events but the `checked` ones: their signatures were not verified."""
        ends = {event_key(e.header.author, e.header.epoch, e.header.seq) for e in checked}
        return [(key, b"") for key in self._accepted if key not in ends]

    def uncarry(self, found: list[tuple[bytes, bytes]]) -> None:
        """Store these accepted events, given as (event key, key id), header-only: not carried by choice
        (agentlog.store.carry)."""
        for key, kid in found:
            if key not in self._erased:
                self._accepted[key] = replace(self._accepted[key], payload=None)
                self._uncarried[key] = kid

    def fill(self, event: Event) -> bool:
        """Complete an event held without its payload when this delivery of it carries the payload; whether
        it did. The payload must match the header's hash (PayloadHashError otherwise)."""
        if event.payload is None:
            return False
        h = event.header
        key = event_key(h.author, h.epoch, h.seq)
        pending = self._accepted.get(key)
        if pending is not None:
            if pending.payload is not None:
                return False
            check_payload(event)
            self._accepted[key] = replace(pending, payload=event.payload)   # its record as accepted
            return True
        if key in self._fills or self._txn.get(key, db=self._db["withheld"]) is None:
            return False
        check_payload(event)
        self._fills[key] = event                      # written by `flush`, unless an erasure strips it
        return True

    def screen(self, eraser) -> None:
        """Keep every delivery an erase request names or a rule matches header-only (its payload never
        written): accepted events and fills alike."""
        for key, event in self._accepted.items():
            if eraser.screen(event.header, event.id, event.payload) is not None:
                self._erased.add(key)
                if event.payload is not None:
                    self._accepted[key] = replace(event, payload=None)
        for key, event in list(self._fills.items()):
            if eraser.screen(event.header, event.id, event.payload) is not None:
                del self._fills[key]

    def heal(self, event: Event) -> bool:
        """Replace the signature of an event held unchecked or damaged (inside a peer's run) with this
        delivery's, when the stored one does not verify and this one does; whether it did. The header bytes
        are equal (the id is), so only the 64 signature bytes change; a fork proof holding the old record
        gets the new one too."""
        h, db, txn = event.header, self._db, self._txn
        key = event_key(h.author, h.epoch, h.seq)
        damaged = txn.get(key, db=db["damaged"]) is not None
        if key in self._accepted or not (damaged or txn.get(key, db=db["unverified"]) is not None):
            return False
        stored = txn.get(key, db=db["events"])
        if stored is None or bytes(stored) == event.record or not crypto.verify(h.author, event.id, event.signature):
            return False
        if not damaged and crypto.verify(h.author, event.id, bytes(stored[-crypto.SIG_LEN:])):
            return False                  # a good signature stays: an author may sign one header many ways
        txn.put(key, event.record, db=db["events"])
        txn.delete(key, db=db["unverified"])
        txn.delete(key, db=db["damaged"])
        if txn.get(key + event.id, db=db["forks"]) is not None:
            txn.put(key + event.id, event.record, db=db["forks"])
        return True

    def flush(self, authors) -> None:
        """Store the accepted events (as agentlog.store.append stores its own) and the new head of `authors`, those
        whose events were accepted."""
        db, txn, events = self._db, self._txn, self._accepted.items()
        txn.cursor(db["events"]).putmulti(self._records.items())
        txn.cursor(db["ids"]).putmulti([(e.id, key) for key, e in events])
        txn.cursor(db["payloads"]).putmulti([(key, e.payload) for key, e in events if e.payload is not None])
        kept = self._uncarried.keys() | self._erased
        withheld = [(key, b"") for key, e in events if e.payload is None and key not in kept]
        if withheld:
            txn.cursor(db["withheld"]).putmulti(withheld)
        if self._uncarried:
            txn.cursor(db["uncarried"]).putmulti(sorted(self._uncarried.items()))
            self._uncarried.clear()
        for key, e in self._fills.items():
            txn.put(key, e.payload, db=db["payloads"])
            txn.delete(key, db=db["withheld"])
        for author in sorted(authors):
            txn.put(author, head_value(self._heads[author]), db=db["heads"])
        self._accepted.clear()
        self._records.clear()
        self._fills.clear()


def ingest_in(store, txn, batch, every_signature: bool = True, source: bytes | None = None,
              later: list | None = None) -> IngestResult:
    """Validate and store (record, payload) pairs from outside, or their checks made ahead (validate.predecode:
    a relay delivery's, decoded when it was opened), in `txn` (Store.ingest says how). `later`: the events of
    the transaction's earlier batches not folded yet (`fold_later`); a batch that needs nothing but its fold
    (sealed payloads opened with keys held before it included) joins them, so that each setting a group of
    batches touches is folded, encoded and written once."""
    dbs = store.dbs
    roster = roster_of(store, txn)
    log = TxnLog(dbs, txn, roster)
    accepted = duplicates = filled = healed = 0
    lamport = stored_lamport = int.from_bytes(txn.get(b"lamport", db=dbs["meta"]) or b"\0", "big")
    roster_changed, folded, sealed, forked = False, [], None, {}
    last: dict[bytes, Event] = {}
    for pre in batch:
        if type(pre) is not Predecoded:
            pre = predecode(*pre)
        event = None if every_signature else log.follows(pre)
        if event is not None:
            decoded = pre.checked
        else:
            try:
                event, decoded = check_event(pre.record, pre.payload, log, check_signature=every_signature, pre=pre)
            except Duplicate as dup:
                was_filled, was_healed = log.fill(dup.event), log.heal(dup.event)
                filled += was_filled
                healed += was_healed
                duplicates += not (was_filled or was_healed)
                continue
            except forks.BRANCHABLE as refused:
                placed = forks.place(store, txn, log, pre.record, pre.payload, refused)  # raises `refused`: no fork
                if placed is None:
                    duplicates += 1
                    continue
                event, decoded = placed
                forked[event.id] = event.header.author
                folded.append(Folded.of(event.header, event.id, decoded))
                lamport = max(lamport, event.header.lamport)
                accepted += 1
                continue
        h = event.header
        if h.kind in SCOPE_KINDS or h.payload_codec != "plain" or (h.scope != USER_SCOPE and is_sealed_scope(h.scope)):
            sealed = sealed or SealedBatch(store, txn, roster)
            sealed.check(event, decoded, len(folded))
        last[h.author] = event
        log.accept(event, pre.record)
        if h.lamport > lamport:
            lamport = h.lamport
        if h.kind in ROSTER_KINDS:      # saved even when the join token's anchor already applied it
            roster.apply(h, event.id, decoded)
            log.roster_changed()
            roster_changed = True
        folded.append(_tuple_new(Folded, (h.author, h.epoch, h.seq, h.lamport, h.time_ms, h.kind, h.clock, event.id,
                                          decoded, h.scope)))       # Folded.of, without its call
        accepted += 1
    if not every_signature:
        for event in last.values():
            if not crypto.verify(event.header.author, event.id, event.signature):
                raise SignatureError("signature does not verify for this author and event id",
                                     event.header.author, event.header.seq)
    heads = {author: (e.header.epoch, e.header.seq) for author, e in last.items()}
    requests = ERASE_KIND in map(_KIND, folded)
    erasing = requests or has_state(dbs, txn)
    if later is not None and (erasing or roster_changed or (sealed is not None and sealed.changed) or filled
                              or forked):
        fold_later(store, txn, later)             # what this batch does next reads the views as they would be
        later = None
    eraser = Eraser(store, txn, folded) if erasing else None
    if eraser is not None:
        log.screen(eraser)
    if not every_signature:
        txn.cursor(db=dbs["unverified"]).putmulti(log.unchecked(last.values()))
    if lamport != stored_lamport:                 # a batch of duplicates writes nothing, so it commits without a sync
        txn.put(b"lamport", lamport.to_bytes(8, "big"), db=dbs["meta"])
    if heads and txn.stat(dbs["suspects"])["entries"]:
        for author in heads:                      # its later events arrive: no longer asked for again
            txn.delete(author, db=dbs["suspects"])
    if roster_changed:
        save_roster(dbs, txn, roster)
    if roster_changed and (sealed is not None or has_scopes(dbs, txn)):
        sealed = sealed or SealedBatch(store, txn, roster)
        sealed.limits_changed(roster)
    opens_held = sealed is not None and sealed.finish(folded)   # a new key opens events held unread: fold again
    if sealed is not None and sealed.uncarried:   # before flush: a payload not carried is never written
        log.uncarry(sealed.uncarried)
    log.flush(last)
    if later is not None:
        later += folded
        return _result(source, store, txn, folded, accepted, duplicates, heads, filled, healed, (), forked)
    changes = Capture(store, txn, folded)
    if eraser is not None:
        eraser.carry_out()
    if eraser is not None and eraser.changed:
        eraser.finish(refold)                     # folded again without what the requests erased
    elif filled or opens_held or forked:
        refold(store, txn, roster=False)          # a filled payload (or a fork's branch) may change what earlier
        #                                           events folded to: folded again in key order
    else:
        store.pref_view.fold(txn, folded)
        store.memory_view.fold(txn, folded)
    if filled:
        carry.settle_filled(store, txn)
    if roster_changed:
        drop_past_revocations(store, txn)
    changes.record()
    caught = tuple((eid, req.payload.reason) for eid, req in eraser.caught) if eraser is not None else ()
    return _result(source, store, txn, folded, accepted, duplicates, heads, filled, healed, caught, forked)


def _result(source, store, txn, folded, accepted, duplicates, heads, filled, healed, caught, forked) -> IngestResult:
    """Enter the batch's events in the replication ledger (when a peer sent them); the batch's result."""
    if source is not None and folded:
        ledger.record(txn, store.dbs["ledger.received"], source, map(_POSITION, folded), store.now_ms())
    return IngestResult(accepted, duplicates, heads, filled, healed, caught, tuple(set(forked.values())))


def fold_later(store, txn, later: list) -> None:
    """Fold the events `ingest_in` put off (`later`, emptied), as one batch: what folding each batch in turn
    leaves, since a fold is a function of the events folded; the watch log gets one row per state changed."""
    if later:
        changes = Capture(store, txn, later)
        store.pref_view.fold(txn, later)
        store.memory_view.fold(txn, later)
        changes.record()
        later.clear()


class SealedBatch:
    """What an ingested batch does to the scopes view and with sealed payloads: the scope rules checked as each
    event is validated, scope events folded, sealed payloads opened with this device's keys (after the batch's
    own scope events) or entered in sealed.unread."""

    def __init__(self, store, txn, roster: Roster):
        self.store, self.txn, self.roster = store, txn, roster
        self.scopes = scopes_in(store.dbs, txn)
        self.keys_before = store.keyring.keys(self.scopes)
        self.changed = False
        self.sealed: list[tuple[int, Event]] = []        # (index among the folded events, event)
        self.bare: list[tuple[bytes, str]] = []          # (event key, scope) of sealed events without a payload
        self.uncarried: list[tuple[bytes, bytes]] = []   # (event key, key id): not to be carried (`finish`)

    def check(self, event: Event, decoded, index: int) -> None:
        """Raise ScopeError unless the scope rules accept it; fold a scope event; hold a sealed payload."""
        h = event.header
        self.scopes.check(h, decoded, self.roster)
        if h.kind in SCOPE_KINDS:
            self.changed |= self.scopes.add(ScopeEvent.of(h, event.id, decoded))
        elif event.payload is not None:
            self.sealed.append((index, event))
        elif is_sealed_scope(h.scope):
            self.bare.append((event_key(h.author, h.epoch, h.seq), h.scope))

    def limits_changed(self, roster: Roster) -> None:
        limits = {d: m.until_seq for d, m in roster.members.items() if m.until_seq is not None}
        self.changed |= self.scopes.set_limits(limits)

    def finish(self, folded: list[Folded]) -> bool:
        """Save the scopes view, open the batch's sealed payloads into `folded` and enter the rest in
        sealed.unread. True when the batch gave this device a key that opens events it held unread."""
        dbs, txn = self.store.dbs, self.txn
        if self.changed:
            save_scopes(dbs, txn, self.scopes)
        keys = self.store.keyring.keys(self.scopes) if self.changed else self.keys_before
        readable_only = carry.mode_in(dbs, txn) == "readable"
        unread = []
        for index, event in self.sealed:
            h = event.header
            plain = sealing.open_envelope(keys, event.payload, sealing.ad(h.group, h.author, h.scope, h.kind))
            if plain is None:
                kid = sealing.key_id(event.payload) or b""
                pair = (event_key(h.author, h.epoch, h.seq), kid)
                (self.uncarried if readable_only and kid not in keys else unread).append(pair)
            elif h.kind in payloads.KINDS:
                try:
                    folded[index] = folded[index]._replace(payload=payloads.decode(h.kind, plain))
                except DecodeError as exc:
                    raise DecodeError(f"sealed payload: {exc.args[0]}", h.author, h.seq) from None
        if unread:
            txn.cursor(db=dbs["sealed.unread"]).putmulti(unread)
        new_keys = set(keys) - set(self.keys_before)
        if readable_only or new_keys:
            self._carry(keys, new_keys, readable_only)
        if not new_keys or not txn.stat(dbs["sealed.unread"])["entries"]:
            return False
        with txn.cursor(db=dbs["sealed.unread"]) as cur:
            return any(bytes(kid) in new_keys for kid in cur.iternext(keys=False, values=True))

    def _carry(self, keys: dict[bytes, bytes], new_keys: set[bytes], readable_only: bool) -> None:
        """In `readable` mode, carry no payload of a scope this device holds no key of; uncarried events the
        new keys open become wanted (agentlog.store.carry)."""
        opens = carry.key_scopes(self.scopes, self.store.device, keys)
        if readable_only:
            readable = set(opens.values())
            self.uncarried += [(key, b"") for key, scope in self.bare if scope not in readable]
        carry.want_opened(self.store.dbs, self.txn, {kid: opens[kid] for kid in new_keys if kid in opens})


def record_fork(store, fork: ForkError, batch) -> None:
    """Keep both records of a fork as proof, even when the batch held both: each must be signed by the
    author, or be the stored one (its chain proves it: a signed later event links to it). A batch record
    whose signature does not verify (one inside a run, unchecked) proves nothing: then none is kept."""
    dbs = store.dbs
    candidates = {record_id(record): record for record, _ in batch}

    def write(txn):
        pos = event_key(fork.author, decode_record(candidates[fork.incoming]).header.epoch, fork.seq)
        stored = txn.get(pos, db=dbs["events"])
        proven = {eid: record for eid, record in candidates.items() if eid in (fork.existing, fork.incoming)
                  and crypto.verify(fork.author, eid, record[-crypto.SIG_LEN:])}
        if stored is not None:
            proven[record_id(stored)] = bytes(stored)
        if fork.existing in proven and fork.incoming in proven:
            for eid in (fork.existing, fork.incoming):
                txn.put(pos + eid, proven[eid], db=dbs["forks"])
    store.write(write)
