"""Erasure: carrying out `erase` requests in the store's write transactions, and the store's record of them
(docs/erasure.md).

Databases:
  erased         author(32) epoch(4) seq(8) -> request id(32): events held header-only because erased
  erase.pending  target event id(32)        -> request id(32): named by a request, not held yet
  erase.rules    b"e" + entry(16)           -> request id(32)
                 b"s" + setting utf-8       -> request id(32) + lamport(8): the highest cut for the setting
                 b"r" + request id(32)      -> the request as carried out here (pack_request): kept when compaction
                                               drops its event, so its rules and the `erased` rows still read it
A request is carried out in the transaction that appends or ingests it, and a delivery it names (or a rule
matches) in the transaction that receives it: the payload row goes (never written, for a delivery), the
`erased` row is put, and the views are folded again once per transaction. A target is carried out only when
the request's author may read the target's scope (docs/erasure.md: authority), as every device decides alike.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from agentlog.errors import EventError, NotFoundError, ScopeError, UsageError
from agentlog.log import payloads, sealing
from agentlog.log.event import decode_header, decode_record, peek_record
from agentlog.log.kinds import (
    DEVICE_SCOPE_PREFIX,
    ERASABLE_KINDS,
    ERASE_KIND,
    MAX_ERASE_IDS,
    MEMORY_KINDS,
    USER_SCOPE,
    VALUE_KINDS,
)
from agentlog.log.payloads import Erase, ScopeKey
from agentlog.store.keyring import has_scopes, scopes_in
from agentlog.store.layout import ERASURE_DBS as DBS
from agentlog.store.layout import event_key, limits_in, pack_clock, unpack_clock
from agentlog.store.retained import covered_by_base
from agentlog.store.scrub import needles_of

_LAMPORT = 8


@dataclass(frozen=True, slots=True)
class Erasure:
    """Why an event is held header-only: the request that erased it, its device, time (ms) and reason."""

    request: bytes
    by: bytes
    time_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Request:
    """An erase request as carrying it out reads it: its position, lamport, time and payload (as recorded:
    without its explicit ids), and its causal past when the group had sealed scopes (None: not computed)."""

    eid: bytes
    author: bytes
    epoch: int
    seq: int
    lamport: int
    time_ms: int
    payload: Erase
    past: dict[bytes, tuple[int, int]] | None = None

    @classmethod
    def of(cls, f) -> Request:
        """The request a folded `erase` event (prefs.view.Folded) carries."""
        return cls(f.eid, f.author, f.epoch, f.seq, f.lamport, f.time_ms, f.payload)


_RECORD = struct.Struct(">32sIQQQ")          # author epoch seq lamport time


def pack_request(req: Request, past: dict[bytes, tuple[int, int]]) -> bytes:
    """The `b"r"` record of a request carried out: what its rules, authority and `erased` need, kept when
    compaction drops the request event (its explicit ids are carried out or pending by then)."""
    p = req.payload
    texts = b"".join(len(x).to_bytes(4, "big") + x for x in (p.entry, p.setting.encode(), p.reason.encode()))
    return _RECORD.pack(req.author, req.epoch, req.seq, req.lamport, req.time_ms) + texts + pack_clock(past)


def unpack_request(rid: bytes, raw: bytes) -> Request:
    author, epoch, seq, lamport, time_ms = _RECORD.unpack_from(raw)
    at, fields = _RECORD.size, []
    for _ in range(3):
        n = int.from_bytes(raw[at : at + 4], "big")
        fields.append(bytes(raw[at + 4 : at + 4 + n]))
        at += 4 + n
    payload = Erase(entry=fields[0], setting=fields[1].decode(), reason=fields[2].decode())
    return Request(rid, author, epoch, seq, lamport, time_ms, payload, unpack_clock(bytes(raw[at:])))


def has_state(dbs: dict, txn) -> bool:
    """Whether the store holds any erasure state (else an ingest without requests does no erasure work)."""
    return any(txn.stat(dbs[name])["entries"] for name in DBS)


def request_at(dbs: dict, txn, rid: bytes) -> Request | None:
    """The erase request `rid` as recorded when it was carried out here, or None."""
    raw = txn.get(b"r" + rid, db=dbs["erase.rules"])
    return unpack_request(rid, bytes(raw)) if raw is not None else None


def erased_in(dbs: dict, txn, eid: bytes) -> Erasure | None:
    """The erasure of held event `eid`, or None when it is not erased (or not held)."""
    key = txn.get(eid, db=dbs["ids"])
    rid = txn.get(key, db=dbs["erased"]) if key else None
    if rid is None:
        return None
    req = request_at(dbs, txn, bytes(rid))
    if req is None:
        return Erasure(bytes(rid), b"", 0, "")
    return Erasure(req.eid, req.author, req.time_ms, req.payload.reason)


def status_in(dbs: dict, txn) -> dict:
    """Counts of erased events, targets pending and requests held, and of erased events the base snapshot covers
    (`covered`: their content may live on in its view states, docs/erasure.md: known limits)."""
    with txn.cursor(db=dbs["erase.rules"]) as cur:
        requests = sum(1 for k in cur.iternext(values=False) if k[:1] == b"r")
    return {"erased": txn.stat(dbs["erased"])["entries"], "pending": txn.stat(dbs["erase.pending"])["entries"],
            "requests": requests, "covered": covered_in(dbs, txn)}


def covered_in(dbs: dict, txn) -> int:
    """How many erased events the base snapshot's state holds (0 without a base; kept events it does not)."""
    if not txn.stat(dbs["erased"])["entries"]:
        return 0
    covered = covered_by_base(dbs, txn)
    with txn.cursor(db=dbs["erased"]) as cur:
        return sum(1 for k in cur.iternext(values=False) if covered(k))


def may_erase(scopes, limits: dict[bytes, int], req: Request, scope: str, past_of) -> bool:
    """Whether `req`'s author may erase an event of `scope`: user and device scopes, or a sealed scope some scope
    event in the request's causal past (`past_of()`) names it a reader of; never past its revocation."""
    limit = limits.get(req.author)
    if limit is not None and req.seq > limit:
        return False
    if scope == USER_SCOPE or scope.startswith(DEVICE_SCOPE_PREFIX):
        return True
    state = scopes.get(scope)
    if state is None:
        return False
    if not req.eid:                       # this device, about to write a request: what it reads now
        return req.author in state.named
    past = None
    for e in state.events:
        p = e.payload
        named = any(r.device == req.author for r in p.readers) if isinstance(p, ScopeKey) else \
            p.device == req.author
        if not named:
            continue
        if e.author == req.author and (e.epoch, e.seq) < (req.epoch, req.seq):
            return True
        past = past_of() if past is None else past
        if past.get(e.author, (-1, -1)) >= (e.epoch, e.seq):
            return True
    return False


def entry_rules(dbs: dict, txn) -> list[tuple[bytes, Request]]:
    """(entry id, request) of every entry rule held whose request is recorded."""
    with txn.cursor(db=dbs["erase.rules"]) as cur:
        rules = [(bytes(k[1:]), bytes(v)) for k, v in cur if k[:1] == b"e"]
    found = [(entry_id, request_at(dbs, txn, rid)) for entry_id, rid in rules]
    return [(entry_id, req) for entry_id, req in found if req is not None]


def drop_entries(dbs: dict, txn, view, rules: Forgotten) -> None:
    """Remove from the memory view (`view` on `dbs`) each entry `rules` forget: its row, conflict mark and
    standing vectors; marked changed for the search index."""
    for entry_id in rules.ids:
        entry = view.entry(txn, entry_id)
        if entry is None or not rules.forgets(entry):
            continue
        for w in entry.embedding_writes():
            txn.delete(w.eid, db=dbs["views.memory.vectors"])
        for name in ("views.memory", "views.memory.conflicts"):
            txn.delete(entry_id, db=dbs[name])
        txn.put(entry_id, b"", db=dbs["memory.dirty"])


class Forgotten:
    """The entry rules held in a store, read from its rules, scopes and roster in one transaction: `forgets(entry)`
    when a rule names it and its request may erase the entry's scope."""

    def __init__(self, dbs: dict, txn):
        self.rules = dict(entry_rules(dbs, txn))
        self.ids = sorted(self.rules)
        self.scopes, self.limits = (scopes_in(dbs, txn), limits_in(dbs, txn)) if self.rules else (None, {})

    def forgets(self, entry) -> bool:
        req = self.rules.get(entry.id)
        return req is not None and may_erase(self.scopes, self.limits, req, entry.scope, lambda: req.past or {})


class Eraser:
    """Erasure work of one write transaction: requests carried out, deliveries screened, views folded again once.

    `changed` says whether any payload went (then `finish` folds the views again).
    """

    def __init__(self, store, txn, batch: list = ()):
        """`batch`: the events this transaction appends or ingests (prefs.view.Folded), its requests among them."""
        self.store, self.txn, self.dbs = store, txn, store.dbs
        self.batch = batch
        self.requests = [Request.of(f) for f in batch if f.kind == ERASE_KIND]   # carried out by `carry_out`
        self.changed = False
        self.entries: set[bytes] = set()        # memory entries an erased payload belonged to
        self._keys: dict[bytes, bytes] | None = None
        self._pasts: dict[bytes, dict[bytes, tuple[int, int]]] = {}
        self._held: dict[bytes, Request | None] = {r.eid: r for r in self.requests}
        self._stripped: dict[bytes, tuple[bytes, bytes]] = {}  # event key -> (request id, event id): deliveries
                                                 # stored header-only
        self._explicit = {e: r for r in self.requests for e in r.payload.events}
        self.caught: list[tuple[bytes, Request]] = []   # deliveries this device's own rules caught: (id, request)
        self.keys: list[bytes] = []             # event keys erased in this transaction
        self._rules = [r for r in self.requests if r.payload.entry or r.payload.setting]

    # -- deliveries -----------------------------------------------------------------------------------

    def screen(self, header, eid: bytes, payload: bytes | None) -> bytes | None:
        """The request that erases this delivery (a new event, or a payload filling one held header-only), or
        None; a hit is recorded, and `carry_out` puts its `erased` row."""
        key = event_key(header.author, header.epoch, header.seq)
        if header.kind not in ERASABLE_KINDS:
            return None
        rid = self.txn.get(key, db=self.dbs["erased"])
        if rid is not None:
            return bytes(rid)
        for req, by_rule in self._candidates(eid, header, key, payload):
            if self.may_erase(req, header):
                self._stripped[key] = (req.eid, eid)
                if payload is not None and header.kind in MEMORY_KINDS:
                    self._note_entry(key, header, payload)
                if by_rule and req.author == self.store.device:
                    self.caught.append((eid, req))
                return req.eid
        return None

    def _candidates(self, eid: bytes, header, key: bytes, payload: bytes | None):
        """(request, whether by its rule) of the requests that name this event or whose rule matches it (rules
        only when its payload reads here)."""
        rid = self.txn.get(eid, db=self.dbs["erase.pending"])
        if rid is not None and (req := self._request(bytes(rid))) is not None:
            yield req, False
        if eid in self._explicit:
            yield self._explicit[eid], False
        if payload is None or not (header.kind in MEMORY_KINDS or header.kind in VALUE_KINDS):
            return
        decoded = self._decode(key, header, payload)
        if decoded is None:
            return
        for req in self._rule_requests(header, decoded):
            yield req, True

    def _rule_requests(self, header, decoded):
        """The requests whose rule (held, or of this transaction) matches a delivery."""
        if header.kind in MEMORY_KINDS:
            rid = self.txn.get(b"e" + decoded.entry, db=self.dbs["erase.rules"])
            if rid is not None and (req := self._request(bytes(rid))) is not None:
                yield req
            yield from (r for r in self._rules if r.payload.entry == decoded.entry)
            return
        setting = "" if header.kind == "correction" else self._setting_of(header.kind, decoded)   # as rules_matching
        if not setting:
            return
        raw = self.txn.get(b"s" + setting.encode(), db=self.dbs["erase.rules"])
        if raw is not None and header.lamport < int.from_bytes(raw[32:], "big"):
            req = self._request(bytes(raw[:32]))
            if req is not None:
                yield req
        yield from (r for r in self._rules if r.payload.setting == setting and header.lamport < r.lamport)

    # -- requests ---------------------------------------------------------------------------------------

    def carry_out(self) -> None:
        """Carry out this transaction's requests on the events held (stored, or header-only deliveries), record
        the targets not held yet and the rules, and put the `erased` rows of screened deliveries."""
        db, txn = self.dbs, self.txn
        for key, (rid, eid) in self._stripped.items():
            self._erase(key, rid)
            txn.delete(eid, db=db["erase.pending"])
        sealed = has_scopes(db, txn)
        for req in self.requests:
            txn.put(b"r" + req.eid, pack_request(req, self._past(req) if sealed else {}), db=db["erase.rules"])
            if req.payload.entry:
                txn.put(b"e" + req.payload.entry, req.eid, db=db["erase.rules"], overwrite=False)
                if self.store.memory_view.entry(txn, req.payload.entry) is not None:
                    self.changed = True         # a base snapshot's state may hold it: fold again without it
            if req.payload.setting:
                name = b"s" + req.payload.setting.encode()
                raw = txn.get(name, db=db["erase.rules"])
                if raw is None or int.from_bytes(raw[32:], "big") < req.lamport:
                    txn.put(name, req.eid + req.lamport.to_bytes(_LAMPORT, "big"), db=db["erase.rules"])
        if self._rules:
            for key, header, decoded in self.held_matching(self._rules):
                for req in self.rules_matching(self._rules, header, decoded):
                    if self._target(key, req, header):
                        break
        for req in self.requests:
            for target in req.payload.events:
                key = txn.get(target, db=db["ids"])
                if key is None:
                    txn.put(target, req.eid, db=db["erase.pending"], overwrite=False)
                else:
                    txn.delete(target, db=db["erase.pending"])
                    self._target(bytes(key), req)

    def rules_matching(self, rules: list[Request], header, decoded, corrections: bool = False) -> list[Request]:
        """The requests of `rules` whose entry or setting rule matches an event. A correction matches only with
        `corrections` (this device listing what it holds): its setting is its decision's, which a device may
        not hold (one written out of band), so carrying a rule out never reads it, on every device alike."""
        if header.kind in MEMORY_KINDS:
            return [r for r in rules if r.payload.entry and r.payload.entry == decoded.entry]
        if header.kind == "correction" and not corrections:
            return []
        setting = self._setting_of(header.kind, decoded)
        return [r for r in rules if setting and r.payload.setting == setting and header.lamport < r.lamport]

    def held_matching(self, rules: list[Request]) -> list:
        """(key, header, decoded payload) of every held event with a readable payload that `rules` could match."""
        kinds = set()
        if any(r.payload.entry for r in rules):
            kinds |= MEMORY_KINDS
        if any(r.payload.setting for r in rules):
            kinds |= VALUE_KINDS
        txn, db = self.txn, self.dbs
        found = []
        with txn.cursor(db=db["events"]) as cur:
            for key, record in cur:
                try:
                    if peek_record(record)[2] not in kinds:
                        continue
                except EventError:
                    continue
                raw = txn.get(key, db=db["payloads"])
                if raw is None:
                    continue
                header = decode_header(bytes(record[:-64]))
                decoded = self._decode(bytes(key), header, bytes(raw))
                if decoded is not None:
                    found.append((bytes(key), header, decoded))
        return found

    def _target(self, key: bytes, req: Request, header=None) -> bool:
        """Erase the held event at `key` for `req` when it may; whether it is erased now."""
        if self.txn.get(key, db=self.dbs["erased"]) is not None:
            return True
        if header is None:
            header = decode_header(bytes(self.txn.get(key, db=self.dbs["events"])[:-64]))
        if header.kind not in ERASABLE_KINDS or not self.may_erase(req, header):
            return False
        if header.kind in MEMORY_KINDS:
            raw = self.txn.get(key, db=self.dbs["payloads"])
            if raw is not None:
                self._note_entry(key, header, bytes(raw))
        self._erase(key, req.eid)
        return True

    def _erase(self, key: bytes, rid: bytes) -> None:
        txn, db = self.txn, self.dbs
        if txn.get(key, db=db["erased"]) is not None:
            return
        raw = txn.get(key, db=db["payloads"])
        if raw is not None:                     # its bytes must go from the disk too, once this commits
            header = decode_header(bytes(txn.get(key, db=db["events"])[:-64]))
            self.store.scrubber.erased(needles_of(bytes(raw), self._decode(key, header, bytes(raw))))
        for name in ("payloads", "withheld", "uncarried", "damaged", "sealed.unread"):
            txn.delete(key, db=db[name])
        txn.put(key, rid, db=db["erased"])
        self.changed = True
        self.keys.append(key)

    # -- authority -------------------------------------------------------------------------------------

    def may_erase(self, req: Request, header) -> bool:
        """Whether `req`'s author may erase an event of this header's scope (`may_erase`)."""
        return may_erase(scopes_in(self.dbs, self.txn), limits_in(self.dbs, self.txn), req, header.scope,
                         lambda: self._past(req))

    def _past(self, req: Request) -> dict[bytes, tuple[int, int]]:
        """Author -> the last (epoch, seq) the request's causal past holds: its author's clocks up to it (the held
        chain and this transaction's events), or as recorded when it was carried out."""
        found = req.past if req.past is not None else self._pasts.get(req.eid)
        if found is None:
            found = {}
            for f in self.batch:
                if f.author == req.author and (f.epoch, f.seq) <= (req.epoch, req.seq):
                    for c in f.clock:
                        found[c.author] = max(found.get(c.author, (-1, -1)), (c.epoch, c.seq))
            start, end = req.author, event_key(req.author, req.epoch, req.seq)
            with self.txn.cursor(db=self.dbs["events"]) as cur:
                ok = cur.set_range(start)
                while ok:
                    key, record = cur.item()
                    if key[:32] != req.author or bytes(key) > end:
                        break
                    for c in peek_record(record)[4]:
                        found[c.author] = max(found.get(c.author, (-1, -1)), (c.epoch, c.seq))
                    ok = cur.next()
            self._pasts[req.eid] = found
        return found

    # -- reading payloads -------------------------------------------------------------------------------

    def _request(self, rid: bytes) -> Request | None:
        if rid not in self._held:
            self._held[rid] = request_at(self.dbs, self.txn, rid)
        return self._held[rid]

    def _decode(self, key: bytes, header, payload: bytes) -> Any:
        """The decoded payload (a sealed one opened with this device's keys), or None when it does not read."""
        try:
            if header.payload_codec == "plain":
                return payloads.decode(header.kind, payload)
            if self._keys is None:
                self._keys = self.store.keyring.keys(scopes_in(self.dbs, self.txn))
            h = header
            plain = sealing.open_envelope(self._keys, payload, sealing.ad(h.group, h.author, h.scope, h.kind))
            return None if plain is None else payloads.decode(h.kind, plain)
        except EventError:
            return None

    def _setting_of(self, kind: str, decoded) -> str:
        """The setting a value-bearing preference payload is about ("" when none: a confirm without a value)."""
        if kind == "pref.confirm":
            return decoded.setting if decoded.baseline else ""
        if kind != "correction":
            return decoded.setting
        key = self.txn.get(decoded.decision, db=self.dbs["ids"])
        if key is None:
            return ""
        raw = self.txn.get(key, db=self.dbs["payloads"])
        if raw is not None:
            record = self.txn.get(key, db=self.dbs["events"])
            header = decode_header(bytes(record[:-64]))
            decision = self._decode(bytes(key), header, bytes(raw))
            return decision.setting if isinstance(decision, payloads.Decision) else ""
        rid = self.txn.get(key, db=self.dbs["erased"])
        req = self._request(bytes(rid)) if rid is not None else None
        return req.payload.setting if req is not None else ""

    def _note_entry(self, key: bytes, header, payload: bytes) -> None:
        decoded = self._decode(key, header, payload)
        if decoded is not None:
            self.entries.add(decoded.entry)

    # -- after -----------------------------------------------------------------------------------------

    def finish(self, refold) -> bool:
        """Fold the views again (`refold(store, txn)`) when a payload went, and drop the search index rows of
        every entry that changed or vanished; whether it folded."""
        if not self.changed:
            return False
        view, txn = self.store.memory_view, self.txn
        self._drop_stale_base()
        before = set(view.entry_ids(txn))
        refold(self.store, txn, roster=False)
        gone = (before - set(view.entry_ids(txn))) | self.entries
        from agentlog.memory import index as memory_index  # numpy loads only when an erasure refolds

        memory_index.drop_rows(self.dbs, txn, sorted(gone))
        return True

    def _drop_stale_base(self) -> None:
        """Forget the base snapshot when it covers an event erased now and the store still holds every event
        (it never truncated): its states hold the erased content, and the views fold from the whole log, as on
        a device without that base. A truncated store must keep it (docs/erasure.md: known limits)."""
        txn, db = self.txn, self.dbs
        if txn.get(b"base", db=db["meta"]) is None or txn.stat(db["truncated"])["entries"]:
            return
        covered = covered_by_base(db, txn)
        if any(covered(k) for k in self.keys):
            txn.delete(b"base", db=db["meta"])
            txn.drop(db["snapshots"], delete=False)


# -- the API's requests ---------------------------------------------------------------------------------

def plan(store, txn, event_ids, *, reason: str, entry: bytes | None, setting: str | None) -> list[Erase]:
    """The requests `store.erase` appends: the named events this device holds and may erase, not erased yet,
    plus every held event of `entry` or value-bearing evidence of `setting`; chunked at MAX_ERASE_IDS.

    Raises:
        NotFoundError: an id this store does not hold. UsageError: a kind that is never erased.
        ScopeError: an event of a sealed scope this device cannot read.
    """
    db, me = store.dbs, store.key.public
    me_req = Request(b"", me, 0, 0, 0, 0, Erase(events=(b"\0" * 32,)))
    probe = Eraser(store, txn)
    ids: list[bytes] = []
    for eid in event_ids:
        key = txn.get(eid, db=db["ids"])
        if key is None:
            raise NotFoundError(f"event {eid.hex()} is not held by this store")
        header = decode_header(bytes(txn.get(key, db=db["events"])[:-64]))
        if header.kind not in ERASABLE_KINDS:
            raise UsageError(f"event {eid.hex()[:16]} is a {header.kind} event: only preference and memory "
                             "events can be erased")
        if not probe.may_erase(me_req, header):
            raise ScopeError(f"event {eid.hex()[:16]} is in scope {header.scope!r}, which this device cannot read")
        if txn.get(key, db=db["erased"]) is None and eid not in ids:
            ids.append(eid)
    if entry or setting:
        rule = [Request(b"", me, 0, 0, 2**53, 0, Erase(entry=entry or b"", setting=setting or ""))]
        for key, header, decoded in probe.held_matching(rule):
            if probe.rules_matching(rule, header, decoded, corrections=True) and txn.get(key, db=db["erased"]) is None \
                    and probe.may_erase(me_req, header):
                eid = decode_record(bytes(txn.get(key, db=db["events"]))).id
                if eid not in ids:
                    ids.append(eid)
    if not ids and not setting and (not entry or txn.get(b"e" + entry, db=db["erase.rules"]) is not None):
        return []
    chunks = [tuple(ids[i : i + MAX_ERASE_IDS]) for i in range(0, len(ids), MAX_ERASE_IDS)] or [()]
    return [Erase(events=chunk, entry=entry or b"", setting=setting or "", reason=reason) for chunk in chunks]


def drop_forgotten(store, txn) -> None:
    """Remove from the memory view every entry an entry rule forgot: a base snapshot's state still holds entries
    whose events it covers, which a fold of the whole log would not (views.refold_from_base calls it)."""
    rules = Forgotten(store.dbs, txn)
    if rules.ids:
        drop_entries(store.dbs, txn, store.memory_view, rules)
