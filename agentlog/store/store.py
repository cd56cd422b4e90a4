"""The per-device LMDB store: one device's log, its identity, and the reads the rest of agentlog makes of it.

The layout is in agentlog.store.layout. Writing is split by job: agentlog.store.append (this device's
own events), agentlog.store.ingest (events from peers), agentlog.store.views (folding the views),
agentlog.store.compaction (snapshots and truncation); each works in a transaction of this Store's
(`read`, `write`) on its databases (`dbs`). An append or an ingested batch, its view updates and new
heads commit in one write transaction: a crash leaves all of it or none. Several processes may open
one home; every write re-reads what it depends on inside its transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agentlog import crypto
from agentlog.errors import ChainError, EventError, ForkError, InvalidValueError, StoreError, UsageError
from agentlog.gcpause import quiet_gc
from agentlog.ids import id_bytes
from agentlog.log import payloads
from agentlog.log.event import Event, decode_record, record_id, record_lamport
from agentlog.log.kinds import MAX_ERASE_IDS, MAX_REASON_LEN
from agentlog.log.roster import Roster
from agentlog.log.validate import Head
from agentlog.memory.view import MemoryView
from agentlog.prefs.view import PrefView
from agentlog.store import carry, erasure, forks, peers
from agentlog.store.append import append_in
from agentlog.store.env import Env, check_data_file
from agentlog.store.ingest import IngestResult, fold_later, ingest_in, record_fork, roster_of
from agentlog.store.keyring import VERSION as SCOPES_VERSION
from agentlog.store.keyring import Keyring, opener_in, rebuild_scopes
from agentlog.store.layout import (
    DBS,
    LAYOUT_VERSION,
    MAX_DBS,
    POS,
    ROSTER_VERSION,
    event_key,
    heads_in,
    seq_runs,
    unpack_anchor,
)
from agentlog.store.nudge import Nudger
from agentlog.store.scrub import Scrubber
from agentlog.store.views import (
    event_of,
    fold_roster,
    folded_log,
    limits_in,
    rebuild_roster,
    refold,
    roster_in,
    time_of,
    view_digests,
)

_NOT_JOINED = "this device has not joined a group yet: run agentlog devices join TOKEN"


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Different signed records seen at one (author, epoch, seq); `kept` is the chain's (or None)."""

    author: bytes
    epoch: int
    seq: int
    kept: bytes | None
    records: tuple[tuple[bytes, bytes], ...]


class Store:
    """One device's log: `agentlog.open(home)`, or `Store(path, key)` (key None: read and ingest only).

    The store's own modules and the preference and memory APIs work in its transactions (`read`,
    `write`) on its databases (`dbs`) and views (`pref_view`, `memory_view`).
    """

    def __init__(self, path: Path, key: crypto.DeviceKey | None, *, map_size: int | None = None,
                 clock: Callable[[], int] | None = None, create: bool = True):
        """`create` False: refuse a store directory or data file that is missing or empty (the home's key
        file says a device lives there) instead of starting an empty store."""
        self.path = Path(path)
        self.key = key
        self.now_ms = clock or (lambda: time.time_ns() // 1_000_000)
        self.pref_cache: dict = {}          # setting -> (state bytes, parsed), for store.prefs lookups
        self.memory_cache: dict = {}        # embedder name -> memory_index.Matrix, for store.memory searches
        self.roster_cache: tuple | None = None   # (stored roster bytes, Roster): agentlog.store.ingest.roster_of
        self.nudge = Nudger(self.path)
        self.keyring = Keyring(key)          # the content keys sealed to this device, opened in memory
        self._checked: set[bytes] = set()    # keys of unverified events whose signature signature_ok checked
        self.scrubber = Scrubber(self)       # erased bytes overwritten after each erasing commit (docs/erasure.md)
        if not create:
            check_data_file(self.path)
        self._env = Env(self.path, f"the store at {self.path}", **({"map_size": map_size} if map_size else {}),
                        max_dbs=MAX_DBS, sync=True, metasync=True, readahead=False, max_readers=126)
        self.env = self._env.env
        try:
            self.dbs = self._env.open_dbs(DBS)
        except StoreError:
            self._env.close()
            raise
        self._check_layout()
        self.pref_view = PrefView(self.dbs, partial(time_of, self.dbs), partial(event_of, self.dbs))
        self.memory_view = MemoryView(self.dbs)
        if self.read(lambda txn: txn.get(b"version", db=self.dbs["views.roster"])) != ROSTER_VERSION:
            self.write(lambda txn: rebuild_roster(self.dbs, txn))
        if self.read(lambda txn: txn.get(b"version", db=self.dbs["views.scopes"])) != SCOPES_VERSION:
            self.write(lambda txn: rebuild_scopes(self.dbs, txn, limits_in(self.dbs, txn)))
        if self.meta("base") is not None:
            if not (self.read(self.pref_view.current) and self.read(self.memory_view.current)):
                self.write(lambda txn: refold(self, txn))
            return
        if not self.read(self.pref_view.current):
            self.write(lambda txn: self.pref_view.rebuild(txn, folded_log(self.dbs, txn, opener_in(self, txn))))
        if not self.read(self.memory_view.current):
            self.write(lambda txn: self.memory_view.rebuild(txn, folded_log(self.dbs, txn, opener_in(self, txn))))

    def _check_layout(self) -> None:
        """Stamp a new store with the layout version; refuse one written in another layout."""
        def check(txn):
            found = txn.get(b"layout", db=self.dbs["meta"])
            if found is None and txn.stat(self.dbs["events"])["entries"] == 0:
                txn.put(b"layout", LAYOUT_VERSION.to_bytes(4, "big"), db=self.dbs["meta"])
            elif found is None or int.from_bytes(found, "big") != LAYOUT_VERSION:
                version = int.from_bytes(found, "big") if found else "unknown"
                raise StoreError(f"the store at {self.path} uses layout {version}; "
                                 f"this agentlog reads layout {LAYOUT_VERSION}")
        if self.read(lambda txn: txn.get(b"layout", db=self.dbs["meta"])) != LAYOUT_VERSION.to_bytes(4, "big"):
            self.write(check)

    # -- identity ----------------------------------------------------------

    def meta(self, name: str) -> bytes | None:
        return self.read(lambda txn: txn.get(name.encode(), db=self.dbs["meta"]))

    def set_meta(self, values: dict[str, bytes]) -> None:
        """Set meta values in one transaction; a new founder (a join) is folded into the roster view too,
        as a rebuild from the log would fold it."""
        def write(txn):
            for name, value in values.items():
                txn.put(name.encode(), value, db=self.dbs["meta"])
            if "founder" in values:
                rebuild_roster(self.dbs, txn)
        self.write(write)

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
            meta = self.dbs["meta"]
            for k, v in ((b"group", group), (b"group_key", group_key), (b"founder", self.key.public)):
                txn.put(k, v, db=meta)
            [genesis_id] = append_in(self, txn, [(genesis, "user")], Roster(self.key.public), genesis=True)
            txn.put(b"genesis", genesis_id, db=meta)
            return genesis_id

        return self.write(write)

    def append(self, payload, *, scope: str | None = None) -> bytes:
        """Sign and durably store one event of this device; returns its id."""
        return self.append_many([payload], scope=scope)[0]

    def append_many(self, items: Iterable, *, scope: str | None = None) -> list[bytes]:
        """Sign and store many events in one write transaction; returns their ids in order.

        Items are payload objects, or (payload, scope) pairs. The cyclic collector is paused meanwhile, as for
        ingest: a batch's events, rows and evidence are acyclic, and its passes over them cost a twentieth of it.
        """
        pairs = [item if isinstance(item, tuple) else (item, scope) for item in items]
        if not pairs:
            return []
        if self.key is None:
            raise UsageError("this store was opened without the device key; it cannot append")
        with quiet_gc():
            ids = self.write(lambda txn: None if forks.heal_pending(self.dbs, txn)
                             else append_in(self, txn, pairs, roster_of(self, txn)))
        if ids is None:                          # this device's own log forked: healed first, in its own commits
            forks.heal(self)
            ids = self.write(lambda txn: append_in(self, txn, pairs, roster_in(self.dbs, txn)))
        self.nudge()
        return ids

    def ingest(self, events: Iterable[tuple[bytes, bytes | None]], *, every_signature: bool = True,
               source: bytes | None = None) -> IngestResult:
        """Validate and store (record, payload) pairs from outside (or their checks made ahead,
        agentlog.log.validate.predecode), all in one transaction.

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
        results, failed = self.ingest_batches([events], every_signature=every_signature, source=source)
        if failed is not None:
            raise failed
        return results[0]

    def ingest_batches(self, batches: Iterable[Iterable[tuple[bytes, bytes | None]]], *,
                       every_signature: bool = True, source: bytes | None = None
                       ) -> tuple[list[IngestResult], EventError | None]:
        """`ingest` of several batches in order, as few commits as their rules allow (one disk sync for a
        catch-up's queued batches instead of one each): one that fails is rejected whole while the batches
        before it commit (`_ingest_group`). Returns the results of the batches stored and the error of the
        one that failed (None: all were stored); the batches after a failed one are not looked at. A batch that
        forked or caught events for this device's erase rules ends its commit: what follows it runs after its
        follow-up writes, as it would alone."""
        todo = [list(batch) for batch in batches]
        if not todo and self.group is None:          # else checked in the batches' own write transaction
            raise UsageError(_NOT_JOINED)
        results: list[IngestResult] = []
        while todo:
            stored, failed = self._ingest_group(todo, every_signature, source)
            results += stored
            for result in stored:
                if result.forked and forks.needs_heal(self):
                    forks.heal(self)
                if result.caught and self.key is not None:
                    self._name_caught(result.caught)
            if any(r.accepted or r.filled or r.healed for r in stored):
                self.nudge()
            if failed is not None:
                self._refused(failed, todo[len(stored)])
                return results, failed
            del todo[:len(stored)]
        return results, None

    def _ingest_group(self, batches: list[list], every_signature: bool, source: bytes | None, together: bool = True
                      ) -> tuple[list[IngestResult], EventError | None]:
        """Store batches from the first on in one write transaction, up to one that fails or needs follow-up
        writes (a fork, events caught). A batch's failure undoes the whole transaction; when batches came before
        it, they alone are stored again in a new one (a failure is rare: a nested transaction per batch copied
        the pages each batch touched). `together`: the batches' views are folded at once (ingest.fold_later);
        when that fold fails, each batch's is folded with it, to find the batch that fails. The cyclic garbage
        collector is off meanwhile: the batches' events are acyclic objects it would only walk again."""
        out: list[IngestResult] = []
        folding: list[bool] = []

        def write(txn):
            if txn.get(b"group", db=self.dbs["meta"]) is None:
                raise UsageError(_NOT_JOINED)
            out.clear()
            folding.clear()
            later = [] if together else None
            for batch in batches:
                out.append(ingest_in(self, txn, batch, every_signature, source, later))
                if out[-1].forked or out[-1].caught:
                    break
            if later:
                folding.append(True)
                fold_later(self, txn, later)
            return out, None
        try:
            with quiet_gc():
                return self.write(write)
        except EventError as exc:
            if folding:
                return self._ingest_group(batches[:len(out)], every_signature, source, together=False)
            if not out:
                return [], exc
            return self._ingest_group(batches[:len(out)], every_signature, source, together)  # the failed one next

    def _refused(self, refused: EventError, batch: list) -> None:
        """A refused batch's fork is kept as proof, and a chain it could not link is asked for from below."""
        if isinstance(refused, (ForkError, ChainError)):
            pairs = [item[:2] for item in batch]
            if isinstance(refused, ForkError):
                record_fork(self, refused, pairs)
            forks.suspect(self, refused, pairs)          # a branch that came without its start: ask from below

    def _name_caught(self, caught: tuple) -> None:
        """Name in a follow-up request the events this device's own entry or setting rules caught on arrival:
        a peer that receives them header-only (from a device that erased them) cannot match the rule itself."""
        def write(txn):
            roster = roster_in(self.dbs, txn)
            member = roster.members.get(self.key.public)
            if member is None or member.until_seq is not None:
                return
            by_reason: dict[str, list[bytes]] = {}
            for eid, reason in caught:
                by_reason.setdefault(reason, []).append(eid)
            requests = [payloads.Erase(events=tuple(ids[i : i + MAX_ERASE_IDS]), reason=reason)
                        for reason, ids in sorted(by_reason.items()) for i in range(0, len(ids), MAX_ERASE_IDS)]
            append_in(self, txn, [(r, "user") for r in requests], roster)
        self.write(write)

    # -- erasure (docs/erasure.md) ---------------------------------------------

    def erase(self, event_ids: Iterable[bytes | str], *, reason: str = "", entry: bytes | str | None = None,
              setting: str | None = None) -> list[bytes]:
        """Append erase requests (chunked) for the named events, and every held event of memory `entry` or
        value-bearing evidence of `setting`, carried out in the same transaction; returns their ids ([] when
        everything named is erased already).

        Raises:
            NotFoundError: an id this store does not hold. UsageError: an event kind that is never erased.
            ScopeError: an event of a sealed scope this device cannot read.
        """
        ids = [id_bytes(e) for e in event_ids]
        entry = id_bytes(entry, "memory id", 16) if entry is not None else None
        if len(reason) > MAX_REASON_LEN:
            raise InvalidValueError(f"a reason is at most {MAX_REASON_LEN} characters")
        if self.key is None:
            raise UsageError("this store was opened without the device key; it cannot append")

        def write(txn):
            requests = erasure.plan(self, txn, ids, reason=reason, entry=entry, setting=setting or None)
            return append_in(self, txn, [(r, "user") for r in requests], roster_in(self.dbs, txn)) if requests \
                else []
        done = self.write(write)
        if done:
            self.nudge()
        return done

    def erased(self, eid: bytes | str) -> erasure.Erasure | None:
        """Who erased held event `eid`, when and why; None when it is not erased."""
        eid = id_bytes(eid)
        return self.read(lambda txn: erasure.erased_in(self.dbs, txn, eid))

    def erasure_rule(self, *, entry: bytes | None = None, setting: str | None = None) -> bytes | None:
        """The request whose rule erases every event of memory `entry` (or the evidence of `setting`), or None."""
        name = b"e" + entry if entry is not None else b"s" + (setting or "").encode()
        found = self.read(lambda txn: txn.get(name, db=self.dbs["erase.rules"]))
        return bytes(found[:32]) if found is not None else None

    def erasure_status(self) -> dict:
        """{"erased": events held header-only, "pending": targets not held yet, "requests": requests held,
        "covered": erased events the base snapshot covers (its states may hold them), "scrub": {...}}."""
        return {**self.read(lambda txn: erasure.status_in(self.dbs, txn)), "scrub": self.scrubber.status()}

    # -- roster --------------------------------------------------------------

    def roster(self) -> Roster:
        """The current group roster, plus the enrolment a join token vouched for (a copy of the parse cached while
        the stored roster is unchanged: the replicator asks on every local change)."""
        return self.read(lambda txn: roster_of(self, txn))

    def revoked_limits(self) -> dict[bytes, int]:
        """Revoked device -> the last seq of its that this group accepts."""
        return self.read(lambda txn: limits_in(self.dbs, txn))

    def views(self) -> dict[str, dict]:
        """Each materialized view's reducer version, digest and the frontier it reflects (one snapshot)."""
        def read(txn):
            frontier = self.frontier_in(txn)
            return {name: {**v, "frontier": frontier} for name, v in view_digests(self.dbs, txn).items()}
        return self.read(read)

    def rebuild_views(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop every view and fold it again from the log in one transaction; returns the events replayed."""
        return self.write(lambda txn: refold(self, txn, progress))

    def anchor(self) -> tuple[Event, payloads.DeviceEnroll] | None:
        """The enrolment a join token vouched for on this device, if it joined by token."""
        raw = self.meta("anchor")
        return unpack_anchor(raw) if raw else None

    def folded_roster(self) -> bytes:
        """The roster view's state as a rebuild from the log would store it (`agentlog verify` compares)."""
        return self.read(lambda txn: fold_roster(self.dbs, txn).to_bytes())

    # -- reading -------------------------------------------------------------

    def heads(self) -> dict[bytes, Head]:
        return self.read(lambda txn: heads_in(self.dbs, txn))

    def count(self) -> int:
        return self.read(lambda txn: txn.stat(self.dbs["events"])["entries"])

    def events(self, author: bytes | None = None) -> Iterator[Event]:
        """Events in key order (author, epoch, seq), with payloads; one read snapshot."""
        with self._env.txn() as txn:
            cur = txn.cursor(db=self.dbs["events"])
            found = cur.set_range(author) if author else cur.first()
            while found:
                key, record = cur.item()
                if author and not key.startswith(author):
                    break
                yield decode_record(record, txn.get(key, db=self.dbs["payloads"]))
                found = cur.next()

    def events_after(self, frontier: dict[bytes, int]) -> list[Event]:
        """The events a holder of `frontier` (author -> seq) lacks, in causal (lamport) order.

        This is the order ingest accepts: every event after the ones its clock names.
        """
        out = []
        with self._env.txn() as txn:
            cur = txn.cursor(db=self.dbs["events"])
            found = cur.first()
            while found:
                key, record = cur.item()
                author, (epoch, seq) = key[:32], POS.unpack_from(key, 32)
                have = frontier.get(author, 0)
                if seq <= have:
                    found = cur.set_range(event_key(author, epoch, have + 1))
                    continue
                out.append(decode_record(record, txn.get(key, db=self.dbs["payloads"])))
                found = cur.next()
        out.sort(key=lambda e: (e.header.lamport, e.header.author, e.header.seq))
        return out

    def read_range(self, author: bytes, epoch: int, lo: int, hi: int,
                   limit: int) -> list[tuple[int, bytes, bytes | None]]:
        """Up to `limit` events of `author` from seq `lo` to `hi` with no gap, as (lamport, record, payload or None)."""
        out = []
        with self._env.txn() as txn:
            cur = txn.cursor(db=self.dbs["events"])
            found = cur.set_key(event_key(author, epoch, lo))
            seq = lo
            while found and seq <= hi and len(out) < limit:
                key, record = cur.item()
                if key != event_key(author, epoch, seq):
                    break
                out.append((record_lamport(record), record, txn.get(key, db=self.dbs["payloads"])))
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
        unverified, damaged = self.read(lambda txn: (txn.get(key, db=self.dbs["unverified"]),
                                                      txn.get(key, db=self.dbs["damaged"])))
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
            with txn.cursor(db=self.dbs["unverified"]) as cur:
                keys = [bytes(k) for k, _ in zip(cur.iternext(values=False), range(limit))]
            return [(k, bytes(txn.get(k, db=self.dbs["events"]) or b"")) for k in keys]
        found = self.read(read)
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
                if txn.get(key, db=self.dbs["events"]) != record:
                    txn.delete(key, db=self.dbs["unverified"])
                    continue
                if txn.delete(key, db=self.dbs["unverified"]) and not good:
                    txn.put(key, b"", db=self.dbs["damaged"])
        if checked:
            self.write(write)

    def damaged(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs of events whose stored signature was found damaged (authentic content: a signed
        later event links to it), as (author, epoch, first seq, last seq)."""
        return self.read(lambda txn: self._damaged_in(txn, limit))

    def withheld(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs of events held without their payload, as (author, epoch, first seq, last seq)."""
        return self.read(lambda txn: self._withheld_in(txn, limit))

    def refetch(self, limit: int = 4096) -> list[tuple[bytes, int, int, int]]:
        """Up to `limit` runs whose records peers are asked for again: held without their payload, or with a
        damaged signature. One read, and only two counts when there are none (replication asks on every
        local change)."""
        def read(txn):
            if not (txn.stat(self.dbs["withheld"])["entries"] or txn.stat(self.dbs["damaged"])["entries"]):
                return []
            return sorted(self._withheld_in(txn, limit) + self._damaged_in(txn, limit))[:limit]
        return self.read(read)

    def _withheld_in(self, txn, limit: int) -> list[tuple[bytes, int, int, int]]:
        with txn.cursor(db=self.dbs["withheld"]) as cur:
            keys = cur.iternext(values=False)
            return seq_runs(((bytes(k[:32]), *POS.unpack_from(k, 32)) for k in keys), limit)

    def _damaged_in(self, txn, limit: int) -> list[tuple[bytes, int, int, int]]:
        with txn.cursor(db=self.dbs["damaged"]) as cur:
            keys = [bytes(k) for k in cur.iternext(values=False) if txn.get(k, db=self.dbs["events"]) is not None]
        return seq_runs(((k[:32], *POS.unpack_from(k, 32)) for k in keys), limit)

    @property
    def carry(self) -> str:
        """What this device carries of sealed scopes it does not read: "all" or "readable" (agentlog.store.carry)."""
        return self.read(lambda txn: carry.mode_in(self.dbs, txn))

    def set_carry(self, mode: str) -> dict[str, int]:
        """Keep carry mode `mode` in the home (agentlog.store.carry.set_mode); returns the events `dropped`
        (payloads no longer carried) and `wanted` (asked of peers again)."""
        changed = carry.set_mode(self, mode)
        if changed["wanted"]:
            self.nudge()
        return changed

    def uncarried_counts(self) -> dict[str, int]:
        """How many sealed events this store holds header-only by choice (carry `readable`), per scope."""
        return self.read(lambda txn: carry.counts_in(self.dbs, txn))

    def withheld_count(self) -> int:
        """How many events this store holds without their payload."""
        return self.read(lambda txn: txn.stat(self.dbs["withheld"])["entries"])

    def truncated(self) -> dict[bytes, Head]:
        """Author -> its last event compaction dropped here (the retained log continues from it)."""
        return self.read(lambda txn: heads_in(self.dbs, txn, "truncated"))

    def frontier(self) -> dict[bytes, int]:
        """Author -> highest seq held: what a peer needs to know to send what is missing."""
        return self.read(self.frontier_in)

    def frontier_in(self, txn) -> dict[bytes, int]:
        with txn.cursor(db=self.dbs["heads"]) as cur:
            return {bytes(a): POS.unpack_from(v)[1] for a, v in cur}

    @property
    def peer_book(self):
        """The peers `agentlog serve` dials and what it last knew of each (agentlog.store.peers)."""
        return peers.Peers(self)

    @property
    def memory(self):
        """Memory operations on this store (agentlog.memory.api)."""
        from agentlog.memory.api import Memory
        return Memory(self, self.now_ms)

    @property
    def scopes(self):
        """Sealed scopes on this store: create, grant, revoke, list (agentlog.store.scopes)."""
        from agentlog.store.scopes import Scopes
        return Scopes(self)

    def watch(self, *, settings=None, memory: bool | None = None, types=(), tags=(), scope: str | None = None,
              position: int | None = None):
        """Changes to the preference and memory views as they commit, here or from peers (agentlog.watch.watcher):
        `settings` name prefixes, `memory` (or a memory `types`/`tags` filter) for memory entries, neither for
        both; `scope` an entry's or a preference event's scope; `position` a Change's position to resume after
        (None: from now). See docs/watching.md."""
        from agentlog.watch.changes import Filter
        from agentlog.watch.watcher import Watcher
        return Watcher(self, Filter.of(settings, memory, types, tags, scope), position)

    def relay_keys(self):
        """The relay keys this device holds, key id -> key, and `current`, the one it seals with
        (agentlog.store.relay.RelayKeys)."""
        from agentlog.store.relay import keys
        return keys(self)

    @property
    def prefs(self):
        """Preference operations on this store (agentlog.prefs.api)."""
        from agentlog.prefs.api import Preferences
        return Preferences(self, self.now_ms)

    def get(self, eid: bytes | str) -> Event | None:
        """The event `eid` names (32 bytes or 64 hex digits), or None if this store does not hold it."""
        eid = id_bytes(eid)

        def read(txn):
            key = txn.get(eid, db=self.dbs["ids"])
            if key is None:
                return None
            record = txn.get(key, db=self.dbs["events"])
            return decode_record(record, txn.get(key, db=self.dbs["payloads"])) if record else None
        return self.read(read)

    def decision(self, eid: bytes | str) -> payloads.Decision | None:
        """The decision event `eid` names, as the preference view keeps it (also after compaction dropped it)."""
        eid = id_bytes(eid, "decision id")
        return self.read(lambda txn: self.pref_view.decision(txn, eid))

    def forks(self) -> list[ForkProof]:
        """Every position where two different signed records were seen, with those records."""
        def read(txn):
            found: dict[bytes, dict[bytes, bytes]] = {}
            with txn.cursor(db=self.dbs["forks"]) as cur:
                for key, record in cur:
                    found.setdefault(bytes(key[:44]), {})[bytes(key[44:])] = bytes(record)
            out = []
            for pos, records in sorted(found.items()):
                author, (epoch, seq) = pos[:32], POS.unpack_from(pos, 32)
                kept = txn.get(pos, db=self.dbs["events"])
                kept_id = record_id(kept) if kept else None
                out.append(ForkProof(author, epoch, seq, kept_id, tuple(sorted(records.items()))))
            return out
        return self.read(read)

    def raw_txn(self, write: bool = False):
        """A transaction for tools that inspect or repair the layout (verify, tests), as a context manager."""
        return self._env.txn(write=write)

    def live_log(self):
        """This store's log as a replay reads it (agentlog.store.scratch.LiveLog), on this store's environment,
        opening sealed payloads with this device's keys."""
        from agentlog.store.scratch import LiveLog
        return LiveLog(self.path, self._env, keyring=self.keyring)

    @property
    def environment(self) -> Env:
        """The store's environment (agentlog.store.env.Env), for the scrub's own databases and pages."""
        return self._env

    def structure_problems(self) -> list[str]:
        """What LMDB's offline walk finds wrong in the data file (agentlog.store.env.Env.structure_problems)."""
        return self._env.structure_problems()

    def last_txnid(self) -> int:
        """The id of the last commit (by any process) a read begun now sees: it moves whenever the store changes,
        and a read begun after it sees that commit. Not LMDB's environment info, which names a commit while its
        metadata page is still being written, before readers are given it: a watcher woken then read the store
        without the commit and took it as seen (a lost wake-up)."""
        return self._env.read(lambda txn: txn.id())

    def map_size(self) -> int:
        return self._env.info()["map_size"]

    def db(self, name: str):
        return self.dbs[name]

    def close(self) -> None:
        indexer = self.memory_cache.get("indexer")          # agentlog.memory.api: a durable index write under way
        if indexer is not None:
            indexer.join()
        self.nudge.close()
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions --------------------------------------------------------

    def write(self, fn):
        """Run fn(txn) in one write transaction, growing the map when it is full; when it erased payloads, scrub
        the disk after it committed (agentlog.store.scrub)."""
        return self.scrubber.write(self._env.write, fn)

    def read(self, fn, buffers: bool = False):
        """Run fn(txn) in one read transaction (with `buffers`, values are memoryviews valid in it only)."""
        return self._env.read(fn, buffers)

