"""Append: encoding, signing and storing this device's own next events, and folding them, in the caller's
write transaction (Store.append_many, Store.create_group and compaction's snapshot use it).
"""

from __future__ import annotations

from agentlog import crypto
from agentlog.errors import ScopeError, UsageError
from agentlog.log import payloads, sealing
from agentlog.log.event import ClockEntry, HeaderWriter, decode_header, device_scope, event_id
from agentlog.log.kinds import ERASE_KIND, RELAY_SCOPE, SCOPE_KINDS, is_sealed_scope
from agentlog.log.roster import Roster
from agentlog.log.scopes import ScopeEvent
from agentlog.log.validate import ROSTER_KINDS, Head
from agentlog.prefs.view import Folded
from agentlog.store.erasure import Eraser, has_state
from agentlog.store.keyring import has_scopes, save_scopes, scopes_in
from agentlog.store.layout import event_key, head_from, head_value, pack_clock, unpack_anchor, unpack_clock
from agentlog.store.signing import sign_many
from agentlog.store.views import drop_past_revocations, refold, save_roster
from agentlog.watch.changelog import Capture


def append_in(store, txn, pairs: list, roster: Roster, genesis: bool = False) -> list[bytes]:
    """Encode, check, sign and store (payload, scope) pairs as this device's next events; returns their ids."""
    db, me = store.dbs, store.key.public
    group = txn.get(b"group", db=db["meta"])
    if group is None:
        raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
    sealed = _SealedWrites.prepare(store, txn, pairs, roster) if _touches_scopes(pairs) else None
    raw_head = txn.get(me, db=db["heads"])
    head = head_from(raw_head) if raw_head else Head(0, 0, crypto.ZERO_ID)
    member = roster.members.get(me)
    if not genesis and (member is None or not member.enrolled):
        raise UsageError("this device is not enrolled in its group; it cannot write")
    if not genesis and member.until_seq is not None and head.seq + len(pairs) > member.until_seq:
        raise UsageError(f"this device was revoked after its seq {member.until_seq}; "
                         "it can no longer write to the group")
    lamport = int.from_bytes(txn.get(b"lamport", db=db["meta"]) or b"\0", "big")
    own_clock = unpack_clock(txn.get(b"own_clock", db=db["meta"]))
    seen = _seen_in(db, txn, me)
    clock = tuple(ClockEntry(a, *seen[a]) for a in sorted(seen) if own_clock.get(a) != seen[a])
    epoch, prev, seq = head.epoch, head.id, head.seq
    if type(pairs[0][0]) is payloads.EpochStart:       # a healed fork: the next epoch, from seq 1 (forks.heal)
        epoch, seq, prev = epoch + 1, 0, crypto.ZERO_ID
    headers = HeaderWriter(group, me, epoch, store.now_ms())
    rows, folded, roster_changed = [], [], False
    for payload, scope in pairs:
        kind = payloads.kind_of(payload)
        body = payloads.encode(payload)
        seq += 1
        lamport += 1
        scope = scope or (device_scope(me) if kind.startswith("override.") else "user")
        if kind == ERASE_KIND and scope != "user":
            raise UsageError("erase requests belong in scope user: every device must read them to carry them out")
        codec = "plain"
        if sealed is not None and is_sealed_scope(scope):
            body, codec = sealed.seal(scope, kind, body), "sealed"
        header_bytes = headers.encode(seq, prev, lamport, clock, scope, kind, crypto.blake2b256(body), len(body),
                                      codec)
        prev = event_id(header_bytes)
        if kind in SCOPE_KINDS:
            sealed.add(decode_header(header_bytes), prev, payload)
        folded.append(Folded(me, epoch, seq, lamport, headers.time_ms, kind, clock, prev, payload, scope))
        clock = ()
        rows.append((event_key(me, epoch, seq), header_bytes, prev, body))
        if kind in ROSTER_KINDS:
            roster_changed |= roster.apply(decode_header(header_bytes), prev, payload)
    requests = any(f.kind == ERASE_KIND for f in folded)
    eraser = Eraser(store, txn, folded) if requests or has_state(db, txn) else None
    if eraser is not None:       # a rule may catch this device's own write: stored header-only from the start
        rows = [(key, hb, eid, None if eraser.screen(decode_header(hb), eid, body) else body)
                for key, hb, eid, body in rows]
    signatures = sign_many(store.key, [row[2] for row in rows])
    txn.cursor(db["events"]).putmulti([(row[0], row[1] + sig) for row, sig in zip(rows, signatures)])
    txn.cursor(db["ids"]).putmulti([(eid, key) for key, _, eid, _ in rows])
    txn.cursor(db["payloads"]).putmulti([(key, body) for key, _, _, body in rows if body is not None])
    txn.put(me, head_value(Head(epoch, seq, prev)), db=db["heads"])
    txn.put(b"lamport", lamport.to_bytes(8, "big"), db=db["meta"])
    txn.put(b"own_clock", pack_clock(seen), db=db["meta"])
    if roster_changed:
        save_roster(db, txn, roster)
    if sealed is not None or (roster_changed and has_scopes(db, txn)):
        (sealed or _SealedWrites(store, txn, roster)).save(roster)
    changes = Capture(store, txn, folded)
    if eraser is not None:
        eraser.carry_out()
    if eraser is not None and eraser.changed:
        eraser.finish(refold)
    else:
        store.pref_view.fold(txn, folded)
        store.memory_view.fold(txn, folded)
    if roster_changed:
        drop_past_revocations(store, txn)
    changes.record()
    if sealed is not None and sealed.inserted:
        return [row[2] for row, (payload, _) in zip(rows, pairs) if id(payload) not in sealed.inserted]
    return [row[2] for row in rows]


def _seen_in(dbs: dict, txn, me: bytes) -> dict[bytes, tuple[int, int]]:
    """Heads of every other author this store holds, plus the enrolment a join token vouched for."""
    seen = {}
    with txn.cursor(db=dbs["heads"]) as cur:
        for author, raw in cur:
            if author != me:
                h = head_from(raw)
                seen[bytes(author)] = (h.epoch, h.seq)
    anchor = txn.get(b"anchor", db=dbs["meta"])
    if anchor:
        enroll = unpack_anchor(bytes(anchor))[0].header
        if seen.get(enroll.author, (-1, -1)) < (enroll.epoch, enroll.seq):
            seen[enroll.author] = (enroll.epoch, enroll.seq)
    return seen


def _touches_scopes(pairs: list) -> bool:
    """Whether a batch writes to a sealed scope or writes scope events (else no scope work at all)."""
    return any((scope is not None and is_sealed_scope(scope)) or type(payload) in _SCOPE_PAYLOADS
               for payload, scope in pairs)


_SCOPE_PAYLOADS = (payloads.ScopeKey, payloads.ScopeGrant)


class _SealedWrites:
    """The scopes view and this device's content keys while a batch of appends writes scope events or seals."""

    def __init__(self, store, txn, roster: Roster):
        self.store, self.txn, self.roster = store, txn, roster
        self.scopes = scopes_in(store.dbs, txn)
        self.changed = self.scopes.set_limits(_limits(roster))     # saved only when changed: one less B-tree to commit
        self.group = txn.get(b"group", db=store.dbs["meta"])
        self._keys: dict[bytes, bytes] | None = None
        self.inserted: set[int] = set()          # id() of the scope.key payloads this batch adds

    @classmethod
    def prepare(cls, store, txn, pairs: list, roster: Roster) -> _SealedWrites:
        """Refuse a write to a sealed scope this device does not read; put a new scope.key before the first
        write to a scope whose current key's sealed set differs from its effective readers, or to a scope that
        does not exist yet (created with this device as its first reader, as `scopes create` does), in `pairs`."""
        writes = cls(store, txn, roster)
        me, seen = store.key.public, set()
        for payload, scope in list(pairs):
            if type(payload) in _SCOPE_PAYLOADS:
                writes.scopes.check(_Pending(me, scope or "user", payloads.kind_of(payload)), payload, roster)
                continue
            if scope == RELAY_SCOPE:
                raise ScopeError(f"scope {RELAY_SCOPE!r} holds only the group's relay key: no event is written in it")
            if scope is None or not is_sealed_scope(scope) or scope in seen:
                continue
            seen.add(scope)
            state = writes.scopes.get(scope)
            readers = state.effective_readers(roster) if state else {me}      # the first write creates it
            if me not in readers:
                raise UsageError(f"this device cannot read scope {scope!r}, so it cannot write to it: "
                                 f"a reader grants it with `agentlog scopes grant {scope} DEVICE`")
            if state is None or state.needs_new_key(roster):
                key_event = new_scope_key(scope, readers)
                writes.inserted.add(id(key_event))
                pairs.insert(pairs.index((payload, scope)), (key_event, "user"))
        return writes

    def add(self, header, eid: bytes, payload) -> None:
        self.changed |= self.scopes.add(ScopeEvent.of(header, eid, payload))
        self._keys = None

    def seal(self, scope: str, kind: str, body: bytes) -> bytes:
        if self._keys is None:
            self._keys = self.store.keyring.keys(self.scopes)
        kid = self.scopes.get(scope).current
        return sealing.seal(self._keys[kid], kid, body, sealing.ad(self.group, self.store.key.public, scope, kind))

    def save(self, roster: Roster) -> None:
        """Save the scopes view when this batch changed it (scope events, revocation limits)."""
        self.changed |= self.scopes.set_limits(_limits(roster))
        if self.changed:
            save_scopes(self.store.dbs, self.txn, self.scopes)


class _Pending:
    """The header fields the scope rules read of an event this device is about to write."""

    def __init__(self, author: bytes, scope: str, kind: str):
        self.author, self.seq, self.scope, self.kind, self.payload_codec = author, None, scope, kind, "plain"


def new_scope_key(scope: str, readers) -> payloads.ScopeKey:
    """A scope.key with a fresh content key sealed to each of `readers`."""
    key = crypto.content_key()
    return payloads.ScopeKey(scope=scope, readers=tuple(
        payloads.SealedKey(device=d, box=crypto.seal_box(d, key)) for d in sorted(readers)))


def _limits(roster: Roster) -> dict[bytes, int]:
    return {d: m.until_seq for d, m in roster.members.items() if m.until_seq is not None}
