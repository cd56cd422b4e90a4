"""Append: encoding, signing and storing this device's own next events, and folding them, in the caller's
write transaction (Store.append_many, Store.create_group and compaction's snapshot use it).
"""

from __future__ import annotations

from agentlog import crypto
from agentlog.errors import UsageError
from agentlog.log import payloads
from agentlog.log.event import ClockEntry, HeaderWriter, decode_header, device_scope, event_id
from agentlog.log.roster import Roster
from agentlog.log.validate import ROSTER_KINDS, Head
from agentlog.prefs.view import Folded
from agentlog.store.layout import event_key, head_from, head_value, pack_clock, unpack_anchor, unpack_clock
from agentlog.store.signing import sign_many
from agentlog.store.views import drop_past_revocations, save_roster


def append_in(store, txn, pairs: list, roster: Roster, genesis: bool = False) -> list[bytes]:
    """Encode, check, sign and store (payload, scope) pairs as this device's next events; returns their ids."""
    db, me = store.dbs, store.key.public
    group = txn.get(b"group", db=db["meta"])
    if group is None:
        raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
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
    headers = HeaderWriter(group, me, epoch, store.now_ms())
    rows, folded, roster_changed = [], [], False
    for payload, scope in pairs:
        kind = payloads.kind_of(payload)
        body = payloads.encode(payload)
        seq += 1
        lamport += 1
        scope = scope or (device_scope(me) if kind.startswith("override.") else "user")
        header_bytes = headers.encode(seq, prev, lamport, clock, scope, kind, crypto.blake2b256(body), len(body))
        prev = event_id(header_bytes)
        folded.append(Folded(me, epoch, seq, lamport, headers.time_ms, kind, clock, prev, payload, scope))
        clock = ()
        rows.append((event_key(me, epoch, seq), header_bytes, prev, body))
        if kind in ROSTER_KINDS:
            roster_changed |= roster.apply(decode_header(header_bytes), prev, payload)
    signatures = sign_many(store.key, [row[2] for row in rows])
    txn.cursor(db["events"]).putmulti([(row[0], row[1] + sig) for row, sig in zip(rows, signatures)])
    txn.cursor(db["ids"]).putmulti([(eid, key) for key, _, eid, _ in rows])
    txn.cursor(db["payloads"]).putmulti([(key, body) for key, _, _, body in rows])
    txn.put(me, head_value(Head(epoch, seq, prev)), db=db["heads"])
    txn.put(b"lamport", lamport.to_bytes(8, "big"), db=db["meta"])
    txn.put(b"own_clock", pack_clock(seen), db=db["meta"])
    if roster_changed:
        save_roster(db, txn, roster)
    store.pref_view.fold(txn, folded)
    store.memory_view.fold(txn, folded)
    if roster_changed:
        drop_past_revocations(store, txn)
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
