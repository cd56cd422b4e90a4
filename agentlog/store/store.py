"""The per-device LMDB store: append, ingest, read. The I/O shell around the pure core.

Layout (docs/format.md): named databases with big-endian keys
  events    author(32) epoch(4) seq(8)  -> header bytes ++ signature(64)
  payloads  author(32) epoch(4) seq(8)  -> payload bytes (same key as the event: appends stay sequential)
  withheld  author(32) epoch(4) seq(8)  -> b"" for events stored without their payload
  unverified author(32) epoch(4) seq(8) -> b"" for events ingested without their own signature checked
                                           (inside a peer's run: the run's last signature and the hash links proved them)
  damaged   author(32) epoch(4) seq(8)  -> b"" for such events whose signature was checked since and does not
                                           verify: authentic content, damaged signature bytes, asked of peers again
  ids       event id(32)                -> author(32) epoch(4) seq(8)
  heads     author(32)                  -> epoch(4) seq(8) id(32)
  forks     author(32) epoch(4) seq(8) id(32) -> each different record seen there (fork proof)
  truncated author(32)                  -> epoch(4) seq(8) id(32) of its last event compaction dropped
  snapshots (see agentlog/store/compaction.py)
  ledger.sent, ledger.received (see agentlog/store/ledger.py): which ranges went to or came from which peer
  views.roster  b"state", b"version"    -> canonical roster bytes, reducer version
  meta      layout version, identity, group, lamport, own clock
An append or an ingested batch, its view updates and new heads commit in one write
transaction: a crash leaves all of it or none. Several processes may open one home;
every write re-reads what it depends on inside its transaction.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import lmdb

from agentlog import crypto
from agentlog.errors import EventError, ForkError, SignatureError, StoreError, UsageError
from agentlog.ids import id_bytes
from agentlog.log import payloads
from agentlog.log import roster as roster_module
from agentlog.log.event import (
    ClockEntry,
    Event,
    HeaderWriter,
    decode_header,
    decode_record,
    device_scope,
    event_id,
    peek_record,
    record_id,
)
from agentlog.log.roster import Roster
from agentlog.log.validate import ROSTER_KINDS, TRUNCATED, Duplicate, Head, check_event, check_payload
from agentlog.memory import view as memory_view
from agentlog.memory.reducer import KINDS as MEMORY_KINDS
from agentlog.memory.view import MemoryView
from agentlog.prefs import view as pref_view
from agentlog.prefs.view import Folded, PrefView, folded_from_log
from agentlog.store import ledger, peers
from agentlog.store.env import Env, check_data_file
from agentlog.store.nudge import Nudger
from agentlog.store.signing import sign_many

LAYOUT_VERSION = 1
_DBS = ("events", "payloads", "withheld", "unverified", "damaged", "ids", "heads", "forks", "truncated", "snapshots",
        "views.roster", *pref_view.DBS, *memory_view.DBS, *peers.DBS, *ledger.DBS, "meta")
MAX_DBS = 32                                     # room for databases later layouts add
_POS = struct.Struct(">IQ")
_ROSTER_VERSION = roster_module.VERSION.to_bytes(4, "big")


def event_key(author: bytes, epoch: int, seq: int) -> bytes:
    return author + _POS.pack(epoch, seq)


def _head_value(head: Head) -> bytes:
    return _POS.pack(head.epoch, head.seq) + head.id


def _head_from(raw: bytes) -> Head:
    epoch, seq = _POS.unpack_from(raw)
    return Head(epoch, seq, bytes(raw[12:44]))


def _pack_clock(clock: dict[bytes, tuple[int, int]]) -> bytes:
    return b"".join(a + _POS.pack(*clock[a]) for a in sorted(clock))


def _unpack_clock(raw: bytes | None) -> dict[bytes, tuple[int, int]]:
    out = {}
    for i in range(0, len(raw or b""), 44):
        out[bytes(raw[i : i + 32])] = _POS.unpack_from(raw, i + 32)
    return out


def seq_runs(positions: Iterable[tuple[bytes, int, int]], limit: int | None = None) -> list[tuple[bytes, int, int, int]]:
    """Sorted (author, epoch, seq) positions as runs of consecutive seqs, (author, epoch, first, last); at most
    `limit` runs."""
    runs: list[list] = []
    for author, epoch, seq in positions:
        if runs and runs[-1][:2] == [author, epoch] and runs[-1][3] + 1 == seq:
            runs[-1][3] = seq
        elif len(runs) == limit:
            break
        else:
            runs.append([author, epoch, seq, seq])
    return [tuple(r) for r in runs]


def pack_anchor(record: bytes, payload: bytes) -> bytes:
    """The enrolment a join token vouched for, kept until the group's history arrives."""
    return len(record).to_bytes(4, "big") + record + payload


def unpack_anchor(raw: bytes) -> tuple[Event, payloads.DeviceEnroll]:
    n = int.from_bytes(raw[:4], "big")
    return decode_record(raw[4 : 4 + n]), payloads.decode("device.enroll", raw[4 + n :])


_LIMITS: dict[bytes, dict[bytes, int]] = {}


def _limits_in(db: dict, txn) -> dict[bytes, int]:
    """Revoked device -> its last seq the group accepts, from the roster view in `txn` (parsed once per state)."""
    raw = bytes(txn.get(b"state", db=db["views.roster"]) or b"")
    found = _LIMITS.get(raw)
    if found is None:
        roster = Roster.from_bytes(raw) if raw else Roster()
        found = {d: m.until_seq for d, m in roster.members.items() if m.until_seq is not None}
        if len(_LIMITS) > 64:
            _LIMITS.clear()
        _LIMITS[raw] = found
    return found


def _time_of(db: dict, txn, author: bytes, epoch: int, seq: int) -> int | None:
    """The author's clock on a stored event that counts (or on the enrolment a join token vouched for):
    a revoked device's events past its revocation seq do not."""
    limit = _limits_in(db, txn).get(author)
    if limit is not None and seq > limit:
        return None
    raw = txn.get(event_key(author, epoch, seq), db=db["events"])
    if raw is not None:
        return peek_record(raw)[1]
    cut = txn.get(author, db=db["truncated"])
    if cut is not None and _POS.unpack_from(cut) == (epoch, seq):
        return int.from_bytes(cut[44:52], "big")          # compaction dropped it and kept its time
    anchor = txn.get(b"anchor", db=db["meta"])
    if anchor:
        h = unpack_anchor(bytes(anchor))[0].header
        if (h.author, h.epoch, h.seq) == (author, epoch, seq):
            return h.time_ms
    return None


def _event_of(db: dict, txn, eid: bytes):
    """(header, id, decoded payload or None) of a stored event, or None."""
    key = txn.get(eid, db=db["ids"])
    record = txn.get(key, db=db["events"]) if key else None
    if record is None:
        return None
    event = decode_record(bytes(record))
    raw = txn.get(key, db=db["payloads"])
    decoded = None
    if raw is not None and event.header.kind in payloads.KINDS and event.header.payload_codec == "plain":
        decoded = payloads.decode(event.header.kind, bytes(raw))
    return event.header, event.id, decoded


def view_digests(db: dict, txn) -> dict[str, dict]:
    """Each view's reducer version and digest in `txn` (the store's, or a scratch environment's)."""
    pref, memory = PrefView(db, None, None), MemoryView(db)
    state = txn.get(b"state", db=db["views.roster"]) or b""
    version = int.from_bytes(txn.get(b"version", db=db["views.roster"]) or b"\0", "big")
    return {"roster": {"version": version, "digest": crypto.blake2b256(bytes(state))},
            "pref": {"version": pref.version(txn), "digest": pref.digest(txn)},
            "memory": {"version": memory.version(txn), "digest": memory.digest(txn)}}


def _kind_or_none(record: bytes) -> str | None:
    try:
        return peek_record(record)[2]
    except EventError:
        return None


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Different signed records seen at one (author, epoch, seq); `kept` is the chain's (or None)."""

    author: bytes
    epoch: int
    seq: int
    kept: bytes | None
    records: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    heads: dict[bytes, tuple[int, int]]        # author -> (epoch, seq) of its last event accepted here
    filled: int = 0                            # events held without their payload that this batch completed
    healed: int = 0                            # events held unchecked or damaged whose signature this batch replaced


class _TxnLog:
    """The validator's view of the store inside one write transaction.

    Events a batch accepts are kept here, and their heads, until `flush` writes them: the
    validator reads each author's head for every event, and a dict is cheaper than LMDB.
    """

    def __init__(self, store: Store, txn: lmdb.Transaction, roster: Roster):
        self._db, self._txn = store._db, txn
        self.group = txn.get(b"group", db=store._db["meta"])
        self.genesis = txn.get(b"genesis", db=store._db["meta"])
        self.roster = roster
        self._heads: dict[bytes, Head | None] = {}
        self._accepted: dict[bytes, Event] = {}          # event key -> event, in the order accepted

    def head(self, author: bytes) -> Head | None:
        try:
            return self._heads[author]
        except KeyError:
            raw = self._txn.get(author, db=self._db["heads"])
            head = self._heads[author] = _head_from(raw) if raw else None
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
            point = _head_from(cut)
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

    def accept(self, event: Event) -> None:
        """Hold a validated event as its author's new head, to be stored by `flush`."""
        h = event.header
        self._accepted[event_key(h.author, h.epoch, h.seq)] = event
        self._heads[h.author] = Head(h.epoch, h.seq, event.id)

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
        if self._txn.get(key, db=self._db["withheld"]) is None:
            return False
        check_payload(event)
        self._txn.put(key, event.payload, db=self._db["payloads"])
        self._txn.delete(key, db=self._db["withheld"])
        return True

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

    def flush(self) -> None:
        """Store the accepted events (as _append_in stores its own) and each author's last head."""
        db, txn, events = self._db, self._txn, self._accepted.items()
        txn.cursor(db["events"]).putmulti([(key, e.record) for key, e in events])
        txn.cursor(db["ids"]).putmulti([(e.id, key) for key, e in events])
        txn.cursor(db["payloads"]).putmulti([(key, e.payload) for key, e in events if e.payload is not None])
        withheld = [(key, b"") for key, e in events if e.payload is None]
        if withheld:
            txn.cursor(db["withheld"]).putmulti(withheld)
        authors = {e.header.author for e in self._accepted.values()}
        for author in sorted(authors):
            txn.put(author, _head_value(self._heads[author]), db=db["heads"])
        self._accepted.clear()


class Store:
    """One device's log: `agentlog.open(home)`, or `Store(path, key)` (key None: read and ingest only)."""

    def __init__(self, path: Path, key: crypto.DeviceKey | None, *, map_size: int | None = None,
                 clock: Callable[[], int] | None = None, create: bool = True):
        """`create` False: refuse a store directory or data file that is missing or empty (the home's key
        file says a device lives there) instead of starting an empty store."""
        self.path = Path(path)
        self.key = key
        self._now_ms = clock or (lambda: time.time_ns() // 1_000_000)
        self._pref_cache: dict = {}          # setting -> (state bytes, parsed), for store.prefs lookups
        self._memory_cache: dict = {}        # embedder name -> memory_index.Matrix, for store.memory searches
        self._nudge = Nudger(self.path)
        self._checked: set[bytes] = set()    # keys of unverified events whose signature signature_ok checked
        if not create:
            check_data_file(self.path)
        self._env = Env(self.path, f"the store at {self.path}", **({"map_size": map_size} if map_size else {}),
                        max_dbs=MAX_DBS, sync=True, metasync=True, readahead=False, max_readers=126)
        self.env = self._env.env
        try:
            self._db = self._env.open_dbs(_DBS)
        except StoreError:
            self._env.close()
            raise
        self._check_layout()
        self._pref = PrefView(self._db, partial(_time_of, self._db), partial(_event_of, self._db))
        self._memory = MemoryView(self._db)
        if self._read(lambda txn: txn.get(b"version", db=self._db["views.roster"])) != _ROSTER_VERSION:
            self._write(self._rebuild_roster)
        if self.meta("base") is not None:
            if not (self._read(self._pref.current) and self._read(self._memory.current)):
                self._write(self._refold)
            return
        if not self._read(self._pref.current):
            self._write(lambda txn: self._pref.rebuild(txn, self._folded_log(txn)))
        if not self._read(self._memory.current):
            self._write(lambda txn: self._memory.rebuild(txn, self._folded_log(txn)))

    def _check_layout(self) -> None:
        """Stamp a new store with the layout version; refuse one written in another layout."""
        def check(txn):
            found = txn.get(b"layout", db=self._db["meta"])
            if found is None and txn.stat(self._db["events"])["entries"] == 0:
                txn.put(b"layout", LAYOUT_VERSION.to_bytes(4, "big"), db=self._db["meta"])
            elif found is None or int.from_bytes(found, "big") != LAYOUT_VERSION:
                version = int.from_bytes(found, "big") if found else "unknown"
                raise StoreError(f"the store at {self.path} uses layout {version}; this agentlog reads layout {LAYOUT_VERSION}")
        if self._read(lambda txn: txn.get(b"layout", db=self._db["meta"])) != LAYOUT_VERSION.to_bytes(4, "big"):
            self._write(check)

    # -- identity ----------------------------------------------------------

    def meta(self, name: str) -> bytes | None:
        return self._read(lambda txn: txn.get(name.encode(), db=self._db["meta"]))

    def set_meta(self, values: dict[str, bytes]) -> None:
        """Set meta values in one transaction; a new founder (a join) is folded into the roster view too,
        as a rebuild from the log would fold it."""
        def write(txn):
            for name, value in values.items():
                txn.put(name.encode(), value, db=self._db["meta"])
            if "founder" in values:
                self._rebuild_roster(txn)
        self._write(write)

    @property
    def device(self) -> bytes:
        return self.key.public if self.key else self.meta("device") or b""

    @property
    def name(self) -> str:
        return (self.meta("name") or b"").decode()

    @property
    def group(self) -> bytes | None:
        return self.meta("group")

    @property
    def genesis(self) -> bytes | None:
        return self.meta("genesis")

    @property
    def founder(self) -> bytes | None:
        return self.meta("founder")

    # -- writing -----------------------------------------------------------

    def create_group(self, name: str) -> bytes:
        """Start a new group whose genesis event enrols this device; returns the genesis id."""
        if self.group is not None:
            raise UsageError("this device already belongs to a group")
        group, group_key = os.urandom(32), os.urandom(32)
        genesis = payloads.DeviceEnroll(device=self.key.public, name=name)

        def write(txn):
            meta = self._db["meta"]
            for k, v in ((b"group", group), (b"group_key", group_key), (b"founder", self.key.public)):
                txn.put(k, v, db=meta)
            [genesis_id] = self._append_in(txn, [(genesis, "user")], Roster(self.key.public), genesis=True)
            txn.put(b"genesis", genesis_id, db=meta)
            return genesis_id

        return self._write(write)

    def append(self, payload, *, scope: str | None = None) -> bytes:
        """Sign and durably store one event of this device; returns its id."""
        return self.append_many([payload], scope=scope)[0]

    def append_many(self, items: Iterable, *, scope: str | None = None) -> list[bytes]:
        """Sign and store many events in one write transaction; returns their ids in order.

        Items are payload objects, or (payload, scope) pairs.
        """
        pairs = [item if isinstance(item, tuple) else (item, scope) for item in items]
        if not pairs:
            return []
        if self.key is None:
            raise UsageError("this store was opened without the device key; it cannot append")
        ids = self._write(lambda txn: self._append_in(txn, pairs, self._roster_in(txn)))
        self._nudge()
        return ids

    def _append_in(self, txn, pairs: list, roster: Roster, genesis: bool = False) -> list[bytes]:
        """Encode, check, sign and store (payload, scope) pairs as this device's next events; returns their ids."""
        db, me, group = self._db, self.key.public, txn.get(b"group", db=self._db["meta"])
        if group is None:
            raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
        raw_head = txn.get(me, db=db["heads"])
        head = _head_from(raw_head) if raw_head else Head(0, 0, crypto.ZERO_ID)
        member = roster.members.get(me)
        if not genesis and (member is None or not member.enrolled):
            raise UsageError("this device is not enrolled in its group; it cannot write")
        if not genesis and member.until_seq is not None and head.seq + len(pairs) > member.until_seq:
            raise UsageError(f"this device was revoked after its seq {member.until_seq}; it can no longer write to the group")
        lamport = int.from_bytes(txn.get(b"lamport", db=db["meta"]) or b"\0", "big")
        own_clock = _unpack_clock(txn.get(b"own_clock", db=db["meta"]))
        seen = self._seen_in(txn, me)
        clock = tuple(ClockEntry(a, *seen[a]) for a in sorted(seen) if own_clock.get(a) != seen[a])
        epoch, prev, seq = head.epoch, head.id, head.seq
        headers = HeaderWriter(group, me, epoch, self._now_ms())
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
        signatures = sign_many(self.key, [row[2] for row in rows])
        txn.cursor(db["events"]).putmulti([(row[0], row[1] + sig) for row, sig in zip(rows, signatures)])
        txn.cursor(db["ids"]).putmulti([(eid, key) for key, _, eid, _ in rows])
        txn.cursor(db["payloads"]).putmulti([(key, body) for key, _, _, body in rows])
        txn.put(me, _head_value(Head(epoch, seq, prev)), db=db["heads"])
        txn.put(b"lamport", lamport.to_bytes(8, "big"), db=db["meta"])
        txn.put(b"own_clock", _pack_clock(seen), db=db["meta"])
        if roster_changed:
            self._save_roster(txn, roster)
        self._pref.fold(txn, folded)
        self._memory.fold(txn, folded)
        if roster_changed:
            self._drop_past_revocations(txn)
        return [row[2] for row in rows]

    def _seen_in(self, txn, me: bytes) -> dict[bytes, tuple[int, int]]:
        """Heads of every other author this store holds, plus the enrolment a join token vouched for."""
        seen = {}
        with txn.cursor(db=self._db["heads"]) as cur:
            for author, raw in cur:
                if author != me:
                    h = _head_from(raw)
                    seen[bytes(author)] = (h.epoch, h.seq)
        anchor = txn.get(b"anchor", db=self._db["meta"])
        if anchor:
            enroll = unpack_anchor(bytes(anchor))[0].header
            if seen.get(enroll.author, (-1, -1)) < (enroll.epoch, enroll.seq):
                seen[enroll.author] = (enroll.epoch, enroll.seq)
        return seen

    def ingest(self, events: Iterable[tuple[bytes, bytes | None]], *, every_signature: bool = True,
               source: bytes | None = None) -> IngestResult:
        """Validate and store (record, payload) pairs from outside, all in one transaction.

        The batch is rejected whole on the first invalid event, leaving the store as it
        was; a fork found on the way is still recorded as proof (see `forks`). With
        `every_signature` False, only the signature of each author's last event in the
        batch is verified: the hash links from it prove the others (docs/format.md). A duplicate
        completes an event held without its payload (`fill`) or heals one whose signature is damaged (`heal`).
        `source`, the peer device that sent the batch, has the accepted events entered in the
        replication ledger (agentlog.store.ledger) in the same transaction.

        Raises:
            EventError: the first event that failed, naming author and seq.
        """
        batch = list(events)
        if self.group is None:
            raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
        try:
            result = self._write(lambda txn: self._ingest_in(txn, batch, every_signature, source))
        except ForkError as fork:
            self._record_fork(fork, batch)
            raise
        if result.accepted or result.filled or result.healed:
            self._nudge()
        return result

    def _ingest_in(self, txn, batch, every_signature: bool = True, source: bytes | None = None) -> IngestResult:
        roster = self._roster_in(txn)
        log = _TxnLog(self, txn, roster)
        accepted = duplicates = filled = healed = 0
        lamport = int.from_bytes(txn.get(b"lamport", db=self._db["meta"]) or b"\0", "big")
        roster_changed, folded = False, []
        last: dict[bytes, Event] = {}
        for record, payload in batch:
            try:
                event, decoded = check_event(record, payload, log, check_signature=every_signature)
            except Duplicate as dup:
                was_filled, was_healed = log.fill(dup.event), log.heal(dup.event)
                filled += was_filled
                healed += was_healed
                duplicates += not (was_filled or was_healed)
                continue
            h = event.header
            last[h.author] = event
            log.accept(event)
            lamport = max(lamport, h.lamport)
            if h.kind in ROSTER_KINDS:      # saved even when the join token's anchor already applied it
                roster.apply(h, event.id, decoded)
                roster_changed = True
            folded.append(Folded.of(h, event.id, decoded))
            accepted += 1
        if not every_signature:
            for event in last.values():
                if not crypto.verify(event.header.author, event.id, event.signature):
                    raise SignatureError("signature does not verify for this author and event id",
                                         event.header.author, event.header.seq)
        heads = {author: (e.header.epoch, e.header.seq) for author, e in last.items()}
        if not every_signature:
            txn.cursor(db=self._db["unverified"]).putmulti(
                [(event_key(f.author, f.epoch, f.seq), b"") for f in folded if heads[f.author] != (f.epoch, f.seq)])
        log.flush()
        txn.put(b"lamport", lamport.to_bytes(8, "big"), db=self._db["meta"])
        if roster_changed:
            self._save_roster(txn, roster)
        if filled:
            self._refold(txn, roster=False)          # a filled payload may change what earlier events folded to
        else:
            self._pref.fold(txn, folded)
            self._memory.fold(txn, folded)
        if roster_changed:
            self._drop_past_revocations(txn)
        if source is not None and folded:
            ledger.record(txn, self._db["ledger.received"], source, [(f.author, f.epoch, f.seq) for f in folded],
                          self._now_ms())
        return IngestResult(accepted, duplicates, heads, filled, healed)

    def _record_fork(self, fork: ForkError, batch) -> None:
        """Keep both records of a fork as proof, even when the batch held both: each must be signed by the
        author, or be the stored one (its chain proves it: a signed later event links to it). A batch record
        whose signature does not verify (one inside a run, unchecked) proves nothing: then none is kept."""
        candidates = {record_id(record): record for record, _ in batch}

        def write(txn):
            pos = event_key(fork.author, decode_record(candidates[fork.incoming]).header.epoch, fork.seq)
            stored = txn.get(pos, db=self._db["events"])
            proven = {eid: record for eid, record in candidates.items()
                      if eid in (fork.existing, fork.incoming) and crypto.verify(fork.author, eid, record[-crypto.SIG_LEN:])}
            if stored is not None:
                proven[record_id(stored)] = bytes(stored)
            if fork.existing in proven and fork.incoming in proven:
                for eid in (fork.existing, fork.incoming):
                    txn.put(pos + eid, proven[eid], db=self._db["forks"])
        self._write(write)

    # -- roster --------------------------------------------------------------

    def roster(self) -> Roster:
        """The current group roster, plus the enrolment a join token vouched for."""
        return self._read(self._roster_in)

    def _roster_in(self, txn) -> Roster:
        raw = txn.get(b"state", db=self._db["views.roster"])
        roster = Roster.from_bytes(bytes(raw)) if raw else Roster()
        roster.founder = txn.get(b"founder", db=self._db["meta"])
        anchor = txn.get(b"anchor", db=self._db["meta"])
        if anchor:
            event, enroll = unpack_anchor(bytes(anchor))
            roster.apply(event.header, event.id, enroll)
        return roster

    def revoked_limits(self) -> dict[bytes, int]:
        """Revoked device -> the last seq of its that this group accepts."""
        return self._read(lambda txn: _limits_in(self._db, txn))

    def views(self) -> dict[str, dict]:
        """Each materialized view's reducer version, digest and the frontier it reflects (one snapshot)."""
        def read(txn):
            frontier = self._frontier_in(txn)
            return {name: {**v, "frontier": frontier} for name, v in view_digests(self._db, txn).items()}
        return self._read(read)

    def rebuild_views(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop every view and fold it again from the log in one transaction; returns the events replayed."""
        return self._write(lambda txn: self._refold(txn, progress))

    def _refold(self, txn, progress: Callable[[int], None] | None = None, roster: bool = True) -> int:
        """Fold the preference and memory views (and the roster, which counts every accepted event) again:
        from the base snapshot's state when compaction dropped events, else from the whole log."""
        from agentlog.store.compaction import refold_from_base
        n = refold_from_base(self, txn, progress)
        if n is not None:
            return n
        roster_keys = []
        memory = self._memory.rebuilder(txn)

        def events():
            for f in self._folded_log(txn):
                if f.kind in ROSTER_KINDS:
                    roster_keys.append(event_key(f.author, f.epoch, f.seq))
                memory.add(f)
                yield f if f.kind not in MEMORY_KINDS else f._replace(payload=None)
        n = self._pref.rebuild(txn, events(), progress)
        memory.finish()
        if roster:
            self._rebuild_roster(txn, None if _limits_in(self._db, txn) else roster_keys)
        return n

    def _folded_log(self, txn) -> Iterator[Folded]:
        return folded_from_log(txn, self._db["events"], self._db["payloads"], _limits_in(self._db, txn))

    def _drop_past_revocations(self, txn) -> None:
        """After a revocation: if this store took the device's events past its revocation seq (before the
        revocation reached it), fold the views again without them, as every other device has them."""
        for device, limit in _limits_in(self._db, txn).items():
            raw = txn.get(device, db=self._db["heads"])
            if raw is not None and _head_from(raw).seq > limit:
                self._refold(txn, roster=False)
                return

    def anchor(self) -> tuple[Event, payloads.DeviceEnroll] | None:
        """The enrolment a join token vouched for on this device, if it joined by token."""
        raw = self.meta("anchor")
        return unpack_anchor(raw) if raw else None

    def _save_roster(self, txn, roster: Roster) -> None:
        txn.put(b"state", roster.to_bytes(), db=self._db["views.roster"])
        txn.put(b"version", _ROSTER_VERSION, db=self._db["views.roster"])

    def _rebuild_roster(self, txn, keys: list[bytes] | None = None) -> None:
        """Fold the roster again from the log (or from the roster events at `keys`, when known)."""
        self._save_roster(txn, self._fold_roster(txn, keys))

    def folded_roster(self) -> bytes:
        """The roster view's state as a rebuild from the log would store it (`agentlog verify` compares)."""
        return self._read(lambda txn: self._fold_roster(txn).to_bytes())

    def _fold_roster(self, txn, keys: list[bytes] | None = None) -> Roster:
        if keys is None:
            with txn.cursor(db=self._db["events"]) as cur:
                keys = [key for key, record in cur if _kind_or_none(record) in ROSTER_KINDS]
        found = []
        for key in keys:
            try:
                event = decode_record(txn.get(key, db=self._db["events"]), txn.get(key, db=self._db["payloads"]))
                found.append((event.header, event.id, check_payload(event)))
            except EventError:
                continue
        return Roster.replay(txn.get(b"founder", db=self._db["meta"]), found)

    # -- reading -------------------------------------------------------------

    def heads(self) -> dict[bytes, Head]:
        def read(txn):
            with txn.cursor(db=self._db["heads"]) as cur:
                return {bytes(a): _head_from(v) for a, v in cur}
        return self._read(read)

    def count(self) -> int:
        return self._read(lambda txn: txn.stat(self._db["events"])["entries"])

    def events(self, author: bytes | None = None) -> Iterator[Event]:
        """Events in key order (author, epoch, seq), with payloads; one read snapshot."""
        with self._env.txn() as txn:
            cur = txn.cursor(db=self._db["events"])
            found = cur.set_range(author) if author else cur.first()
            while found:
                key, record = cur.item()
                if author and not key.startswith(author):
                    break
                yield decode_record(record, txn.get(key, db=self._db["payloads"]))
                found = cur.next()

    def events_after(self, frontier: dict[bytes, int]) -> list[Event]:
        """The events a holder of `frontier` (author -> seq) lacks, in causal (lamport) order.

        This is the order ingest accepts: every event after the ones its clock names.
        """
        out = []
        with self._env.txn() as txn:
            cur = txn.cursor(db=self._db["events"])
            found = cur.first()
            while found:
                key, record = cur.item()
                author, (epoch, seq) = key[:32], _POS.unpack_from(key, 32)
                have = frontier.get(author, 0)
                if seq <= have:
                    found = cur.set_range(event_key(author, epoch, have + 1))
                    continue
                out.append(decode_record(record, txn.get(key, db=self._db["payloads"])))
                found = cur.next()
        out.sort(key=lambda e: (e.header.lamport, e.header.author, e.header.seq))
        return out

    def read_range(self, author: bytes, epoch: int, lo: int, hi: int, limit: int) -> list[tuple[int, bytes, bytes | None]]:
        """Up to `limit` events of `author` from seq `lo` to `hi` with no gap, as (lamport, record, payload or None)."""
        out = []
        with self._env.txn() as txn:
            cur = txn.cursor(db=self._db["events"])
            found = cur.set_key(event_key(author, epoch, lo))
            seq = lo
            while found and seq <= hi and len(out) < limit:
                key, record = cur.item()
                if key != event_key(author, epoch, seq):
                    break
                out.append((peek_record(record)[0], record, txn.get(key, db=self._db["payloads"])))
                seq += 1
                found = cur.next()
        return out

    def signature_ok(self, author: bytes, epoch: int, seq: int, record: bytes) -> bool:
        """Whether a held event's signature verifies. Only events stored unchecked (inside a run a peer
        sent, whose content the hash links proved) are checked, once per process; one found bad is
        marked damaged (`damaged`), so replication asks peers for its record again."""
        key = event_key(author, epoch, seq)
        if key in self._checked:
            return True
        unverified, damaged = self._read(lambda txn: (txn.get(key, db=self._db["unverified"]),
                                                      txn.get(key, db=self._db["damaged"])))
        if damaged is not None:
            return False
        if unverified is None:
            return True
        if not crypto.verify(author, record_id(record), record[-crypto.SIG_LEN:]):
            self.mark_damaged([(key, record)])
            return False
        if len(self._checked) > 1_000_000:
            self._checked.clear()
        self._checked.add(key)
        return True

    def check_signatures(self, limit: int = 1024) -> int:
        """Check the signatures of up to `limit` events stored unchecked (the daemon's background check):
        a good one loses its mark, a bad one is marked damaged. Returns how many were checked."""
        def read(txn):
            with txn.cursor(db=self._db["unverified"]) as cur:
                keys = [bytes(k) for k, _ in zip(cur.iternext(values=False), range(limit))]
            return [(k, bytes(txn.get(k, db=self._db["events"]) or b"")) for k in keys]
        found = self._read(read)
        self._settle_signatures([(key, record, len(record) > crypto.SIG_LEN and crypto.verify(
            key[:32], record_id(record), record[-crypto.SIG_LEN:])) for key, record in found])
        return len(found)

    def mark_damaged(self, found: list[tuple[bytes, bytes]]) -> None:
        """Mark events stored unchecked, given as (key, record), whose signature was found not to verify
        (one write transaction): replication asks peers for their records again (`damaged`)."""
        self._settle_signatures([(key, record, False) for key, record in found])

    def _settle_signatures(self, checked: list[tuple[bytes, bytes, bool]]) -> None:
        """Record (key, record, whether its signature verifies) for events stored unchecked, unless the
        record changed meanwhile (healed, or compaction dropped it)."""
        def write(txn):
            for key, record, good in checked:
                if txn.get(key, db=self._db["events"]) != record:
                    txn.delete(key, db=self._db["unverified"])
                    continue
                if txn.delete(key, db=self._db["unverified"]) and not good:
                    txn.put(key, b"", db=self._db["damaged"])
        if checked:
            self._write(write)

    def damaged(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs of events whose stored signature was found damaged (authentic content: a signed
        later event links to it), as (author, epoch, first seq, last seq)."""
        return self._read(lambda txn: self._damaged_in(txn, limit))

    def withheld(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs of events held without their payload, as (author, epoch, first seq, last seq)."""
        return self._read(lambda txn: self._withheld_in(txn, limit))

    def refetch(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs whose records peers are asked for again: held without their payload, or with a
        damaged signature. One read, and only two counts when there are none (replication asks on every
        local change)."""
        def read(txn):
            if not (txn.stat(self._db["withheld"])["entries"] or txn.stat(self._db["damaged"])["entries"]):
                return []
            return sorted(self._withheld_in(txn, limit) + self._damaged_in(txn, limit))[:limit]
        return self._read(read)

    def _withheld_in(self, txn, limit: int) -> list[tuple[bytes, int, int, int]]:
        with txn.cursor(db=self._db["withheld"]) as cur:
            keys = cur.iternext(values=False)
            return seq_runs(((bytes(k[:32]), *_POS.unpack_from(k, 32)) for k in keys), limit)

    def _damaged_in(self, txn, limit: int) -> list[tuple[bytes, int, int, int]]:
        with txn.cursor(db=self._db["damaged"]) as cur:
            keys = [bytes(k) for k in cur.iternext(values=False) if txn.get(k, db=self._db["events"]) is not None]
        return seq_runs(((k[:32], *_POS.unpack_from(k, 32)) for k in keys), limit)

    def withheld_count(self) -> int:
        """How many events this store holds without their payload."""
        return self._read(lambda txn: txn.stat(self._db["withheld"])["entries"])

    def truncated(self) -> dict[bytes, Head]:
        """Author -> its last event compaction dropped here (the retained log continues from it)."""
        def read(txn):
            with txn.cursor(db=self._db["truncated"]) as cur:
                return {bytes(a): _head_from(v) for a, v in cur}
        return self._read(read)

    def frontier(self) -> dict[bytes, int]:
        """Author -> highest seq held: what a peer needs to know to send what is missing."""
        return self._read(self._frontier_in)

    def _frontier_in(self, txn) -> dict[bytes, int]:
        with txn.cursor(db=self._db["heads"]) as cur:
            return {bytes(a): _POS.unpack_from(v)[1] for a, v in cur}

    @property
    def peer_book(self):
        """The peers `agentlog serve` dials and what it last knew of each (agentlog.store.peers)."""
        return peers.Peers(self)

    @property
    def memory(self):
        """Memory operations on this store (agentlog.memory.api)."""
        from agentlog.memory.api import Memory
        return Memory(self, self._now_ms)

    @property
    def prefs(self):
        """Preference operations on this store (agentlog.prefs.api)."""
        from agentlog.prefs.api import Preferences
        return Preferences(self, self._now_ms)

    def get(self, eid: bytes | str) -> Event | None:
        """The event `eid` names (32 bytes or 64 hex digits), or None if this store does not hold it."""
        eid = id_bytes(eid)

        def read(txn):
            key = txn.get(eid, db=self._db["ids"])
            if key is None:
                return None
            record = txn.get(key, db=self._db["events"])
            return decode_record(record, txn.get(key, db=self._db["payloads"])) if record else None
        return self._read(read)

    def decision(self, eid: bytes | str) -> payloads.Decision | None:
        """The decision event `eid` names, as the preference view keeps it (also after compaction dropped it)."""
        eid = id_bytes(eid, "decision id")
        return self._read(lambda txn: self._pref.decision(txn, eid))

    def forks(self) -> list[ForkProof]:
        """Every position where two different signed records were seen, with those records."""
        def read(txn):
            found: dict[bytes, dict[bytes, bytes]] = {}
            with txn.cursor(db=self._db["forks"]) as cur:
                for key, record in cur:
                    found.setdefault(bytes(key[:44]), {})[bytes(key[44:])] = bytes(record)
            out = []
            for pos, records in sorted(found.items()):
                author, (epoch, seq) = pos[:32], _POS.unpack_from(pos, 32)
                kept = txn.get(pos, db=self._db["events"])
                kept_id = record_id(kept) if kept else None
                out.append(ForkProof(author, epoch, seq, kept_id, tuple(sorted(records.items()))))
            return out
        return self._read(read)

    def raw_txn(self, write: bool = False):
        """A transaction for tools that inspect or repair the layout (verify, tests), as a context manager."""
        return self._env.txn(write=write)

    def live_log(self):
        """This store's log as a replay reads it (agentlog.replay.scratch.LiveLog), on this store's environment."""
        from agentlog.replay.scratch import LiveLog
        return LiveLog(self.path, self._env)

    def structure_problems(self) -> list[str]:
        """What LMDB's offline walk finds wrong in the data file (agentlog.store.env.Env.structure_problems)."""
        return self._env.structure_problems()

    def last_txnid(self) -> int:
        """The id of the last transaction any process committed: it moves whenever the store changes."""
        return self._env.info()["last_txnid"]

    def map_size(self) -> int:
        return self._env.info()["map_size"]

    def db(self, name: str):
        return self._db[name]

    def close(self) -> None:
        self._nudge.close()
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions --------------------------------------------------------

    def _write(self, fn):
        """Run fn(txn) in one write transaction, growing the map when it is full."""
        return self._env.write(fn)

    def _read(self, fn):
        return self._env.read(fn)

