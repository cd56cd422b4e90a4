"""Full re-check of every stored event: `agentlog verify`.

For each author's chain, in key order: the record decodes, belongs to this group,
sits under its own (author, epoch, seq), seqs are dense, prev links to the previous
id, the signature verifies over the id (a damaged signature on an event a peer sent inside a
run, whose content a later signed event proves, is a warning), the id index points at it,
and the payload is present (or recorded as withheld, or as a sealed one not carried by choice) and matches its
hash. Then: the author was
enrolled at the time (roster folded in lamport order), heads agree with the chains,
and every id-index entry names a stored event with that id. On a compacted store each
chain starts right after its author's truncation point (seq and id), and the base
snapshot's signature, digests and frontier must hold (docs/compaction.md).

Before any of that, LMDB's own offline walk checks the data file's structure (every page
reached once, keys in order, the free list whole); after it, every view is folded again
from the log in a scratch environment, as `agentlog replay` does, and its digest must be
the stored view's.

On a large store `jobs - 1` helper processes check the signatures (Ed25519 verify is the cost;
agentlog.store.verify_worker), reading the store in a snapshot of their own, from before the structure walk
on: meanwhile this process walks, scans the events and folds the views again, then checks the chunks no
helper has taken yet. When the helpers' snapshot is not the scan's (another process committed), this process
checks every signature itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from agentlog import crypto
from agentlog.errors import EventError, SnapshotError, StoreError, UsageError
from agentlog.log import snapshot
from agentlog.log.event import decode_record, record_id
from agentlog.log.kinds import ERASABLE_KINDS
from agentlog.log.roster import Roster
from agentlog.log.validate import ROSTER_KINDS, check_payload
from agentlog.store import forks, ledger, retained
from agentlog.store.compaction import base_bundle
from agentlog.store.erasure import request_at
from agentlog.store.layout import KEY_LEN, POS, event_key, seq_runs
from agentlog.store.scratch import Point, replay
from agentlog.store.store import Store
from agentlog.store.verify_worker import CHUNK, ChunkReader, SignaturePool
from agentlog.store.views import fold_roster

PARALLEL_MIN_EVENTS = 4000


@dataclass(frozen=True, slots=True)
class Problem:
    author: bytes
    seq: int
    what: str

    def line(self, roster: Roster) -> str:
        return f"{roster.name_of(self.author)} ({self.author.hex()[:16]}) seq {self.seq}: {self.what}"


@dataclass(frozen=True, slots=True)
class BadSignature(Problem):
    """A run of events whose signature bytes are damaged, their content proven by the signed event at
    `signed` and the hash links; `peer` sent them (from the replication ledger), None when not recorded."""

    last: int = 0
    signed: int = 0
    peer: bytes | None = None

    def line(self, roster: Roster) -> str:
        source = f"received from {roster.name_of(self.peer)} ({self.peer.hex()[:16]})" if self.peer \
            else "sender not recorded"
        return f"{Problem.line(self, roster)}; {source}"


@dataclass(slots=True)
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    forks: list[Problem] = field(default_factory=list)
    after_revocation: list[Problem] = field(default_factory=list)
    withheld: list[Problem] = field(default_factory=list)     # runs of events held without their payload
    uncarried: int = 0                                        # sealed events held header-only by choice
    bad_signatures: list[Problem] = field(default_factory=list)  # damaged signature bytes on authentic content
    damage: list[str] = field(default_factory=list)      # the data file's structure, and views that differ
    notes: list[str] = field(default_factory=list)       # what could not be checked, and why

    @property
    def ok(self) -> bool:
        """No problem, no damage, and no payload missing: a store missing payloads folds views that differ
        from the group's."""
        return not self.problems and not self.damage and not self.withheld


@dataclass(slots=True)
class _Range:
    """What the scan of the events and of the id index found."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    first: tuple | None = None                 # (author, epoch, seq, prev, kept) of the store's first event
    tails: dict = field(default_factory=dict)  # author -> (epoch, seq, id)
    notable: list = field(default_factory=list)  # (record, payload) of seq-1 and roster events
    withheld: list = field(default_factory=list)  # (author, epoch, seq) of events held without their payload
    uncarried: int = 0                            # sealed events held header-only by choice (carry readable)
    bad_signatures: list = field(default_factory=list)  # (author, epoch, seq) whose signature does not verify
    erased: int = 0                            # events held header-only, erased by a request held here
    txnid: int = 0                             # the scan's read snapshot
    unchecked: set = field(default_factory=set)  # keys whose signature the scan does not check (undecodable)
    roster_keys: list = field(default_factory=list)  # keys of the roster events, forked branches' too
    indexed: int = 0                           # decoded events of the authors' chains, which the id index must name


def verify_store(store: Store, progress: Callable[[int, int], None] | None = None, jobs: int | None = None) -> Report:
    """Check the file, every stored event and every view; returns all problems found (none: intact)."""
    jobs = jobs or os.cpu_count() or 1
    try:
        counted = store.count() if jobs > 1 else 0
    except StoreError:                     # a damaged file: the walk below says how
        counted = 0
    many = jobs > 1 and counted >= PARALLEL_MIN_EVENTS
    pool = SignaturePool(jobs - 1, str(store.path), -(-counted // CHUNK)) if many else None  # this process is one more
    try:
        report = Report(damage=store.structure_problems())     # while the helpers already check
        if report.damage:
            return report                  # a broken tree cannot be walked reliably
        heads = store.heads()
        total = store.count()
        views = Report()
        scan = _check_range(store, store.group, pool is None, progress, total)
        _check_views(store, views, scan)          # while the helpers check signatures
        if pool is not None:
            scan.bad_signatures += _pooled_signatures(store, pool, scan)
    finally:
        if pool is not None:
            pool.close()
    report.checked = scan.checked
    report.problems = list(scan.problems)
    _check_first(report, scan, store.truncated())
    report.withheld = _withheld_runs(scan.withheld)
    report.uncarried = scan.uncarried
    if report.uncarried:
        report.notes.append(f"{report.uncarried} sealed event{'s' if report.uncarried != 1 else ''} of scopes this "
                            "device does not read held as headers only (carry readable; expected)")
    erased = scan.erased
    if erased:
        report.notes.append(f"{erased} event{'s' if erased != 1 else ''} held header-only, erased by a request "
                            "this store holds (expected)")
    _classify_signatures(store, report, scan.bad_signatures)
    _check_enrolment(store, report, scan.notable, heads)
    _check_heads(store, report, heads, store.heads(), scan.tails)
    _check_forks(store, report)
    _check_snapshot(store, report)
    covered = store.erasure_status()["covered"]
    if covered:
        report.notes.append(f"{covered} erased event{'s are' if covered != 1 else ' is'} covered by the base "
                            "snapshot: its content may remain in the snapshot's view states (docs/erasure.md)")
    report.damage += views.damage
    report.problems += views.problems
    report.notes += views.notes
    if progress:
        progress(total, total)
    report.problems.sort(key=lambda p: (p.author, p.seq))
    return report


def _check_views(store: Store, report: Report, scan: _Range) -> None:
    """Fold the preference and memory views again from the log in a scratch environment, and the roster as
    the store rebuilds it, and compare digests with the stored views; when another process commits
    meanwhile, try again, at most three times. (The scratch replay leaves out a revoked device's roster
    events past its revocation, which the store's roster keeps, so the roster is taken from it only on a
    compacted store, where both start from the base snapshot's roster.)"""
    for _ in range(3):
        before = store.last_txnid()
        keys = scan.roster_keys if before == scan.txnid else None
        stored = store.views()
        try:
            with store.live_log() as live:
                done, _ = replay(live, Point())
        except UsageError as exc:          # a truncated store without its snapshot: reported above
            report.notes.append(f"views not checked: {exc}")
            return
        except StoreError as exc:          # a stored record the fold cannot read (the scan names its event)
            reason = str(exc).split(": the file is damaged")[0]         # its advice is this very check
            report.damage.append(f"views not checked: the log does not fold ({reason})")
            return
        unread = live.unread
        folded = dict(done.views)
        if not done.base:
            folded["roster"] = {"digest": crypto.blake2b256(_folded_roster(store, keys))}
        if store.last_txnid() == before:
            for name, v in stored.items():
                if folded[name]["digest"] != v["digest"]:
                    report.damage.append(f"view {name}: stored digest {v['digest'].hex()[:16]} but the log folds to "
                                         f"{folded[name]['digest'].hex()[:16]} "
                                         "(agentlog replay --rebuild folds it again)")
            _check_sealed(report, unread)
            return
    report.notes.append("views not checked: the store kept changing under the check")


def _folded_roster(store: Store, keys: list[bytes] | None) -> bytes:
    """The roster as a rebuild from the log would store it, from the roster events at `keys` when the scan found
    them in the snapshot read now (saves a pass over every event)."""
    if keys is None:
        return store.folded_roster()
    with store.raw_txn() as txn:
        return fold_roster(store.dbs, txn, keys).to_bytes()


def _check_sealed(report: Report, unread: list[tuple[bytes, bytes, bool]]) -> None:
    """Name each sealed event whose payload does not open with the key it names though this device holds that
    key (carried, never folded); count the ones of keys this device does not hold (expected: not its scopes)."""
    for key, kid, held in unread:
        if held:
            report.problems.append(Problem(key[:32], POS.unpack_from(key, 32)[1],
                                           f"sealed payload does not open with key {kid.hex()[:16]}, which this "
                                           "device holds: carried as ciphertext, not folded"))
    others = sum(1 for _, _, held in unread if not held)
    if others:
        report.notes.append(f"{others} sealed event{'s' if others != 1 else ''} of scopes this device does not read "
                            "carried as ciphertext (expected)")


def _pooled_signatures(store: Store, pool: SignaturePool, scan: _Range) -> list[tuple[bytes, int, int]]:
    """(author, epoch, seq) of each event whose signature the helpers (and this process, for the chunks left)
    found not to verify; every signature checked here again when their snapshot is not the scan's."""
    with store.raw_txn() as txn:
        failed, errors = pool.finish(ChunkReader(txn, store.db("events")))
        same = txn.id() == scan.txnid and all(t == scan.txnid for t in pool.txnids)
    if errors:
        raise StoreError(f"verify worker failed: {errors[0]}")
    if not same:
        with store.raw_txn() as txn:
            reader, parts, ended = ChunkReader(txn, store.db("events")), [], False
            while not ended:
                keys, ended = reader.check(len(parts))
                parts.append(keys)
            failed = b"".join(parts)
    keys = [(failed[at : at + 32], *POS.unpack_from(failed, at + 32)) for at in range(0, len(failed), KEY_LEN)]
    return [k for k in keys if event_key(*k) not in scan.unchecked]


def _check_range(store: Store, group: bytes, signatures: bool, progress, total: int) -> _Range:
    """Check every event and id-index entry; signatures too when `signatures` (else helpers check them). That the
    id index points at each event is first checked as a whole, by the index's own walk (a get per event saved);
    when it misses some, the events are scanned again to name each among its event's other problems, in order."""
    cuts = store.truncated()
    with store.raw_txn() as txn:
        out, ids = _scan(store, txn, group, cuts, signatures, progress, total, False)
        if _check_ids(txn, store, out, ids) != out.indexed:
            out, ids = _scan(store, txn, group, cuts, signatures, None, total, True)
            _check_ids(txn, store, out, ids)
    return out


def _scan(store: Store, txn, group: bytes, cuts: dict, signatures: bool, progress, total: int,
          index: bool) -> tuple[_Range, dict[bytes, bytes]]:
    """What is wrong with each event in `txn` (whether the id index points at it: only with `index`), and the id
    of each event that decodes, by its key."""
    out, ids = _Range(), {}
    db_events, db_payloads, db_withheld, db_ids, db_erased = (
        store.db(n) for n in ("events", "payloads", "withheld", "ids", "erased"))
    db_uncarried = store.db("uncarried")
    problems, tails, blake = out.problems, out.tails, crypto.blake2b256
    checked, indexed, last = 0, 0, None
    out.txnid = txn.id()
    for key, record in txn.cursor(db=db_events):
        author, (epoch, seq) = key[:32], POS.unpack_from(key, 32)
        checked += 1
        payload = txn.get(key, db=db_payloads)
        try:
            event = decode_record(record, payload)
        except EventError as exc:
            problems.append(Problem(author, seq, f"header does not decode: {exc.args[0]}"))
            out.unchecked.add(key)
            last = (author, epoch, seq, b"")
            continue
        h, eid = event.header, event.id
        ids[key] = eid
        roster = h.kind in ROSTER_KINDS
        if roster:
            out.roster_keys.append(key)
        if h.group != group:
            problems.append(Problem(author, seq, f"belongs to group {h.group.hex()[:16]}, not this store's"))
        if len(key) != KEY_LEN:                                  # an event of a forked branch
            problems += [Problem(author, seq, p) for p in forks.branch_problems(store.dbs, txn, key, event)]
            continue
        if (h.author, h.epoch, h.seq) != (author, epoch, seq):
            problems.append(Problem(author, seq, f"stored under the wrong key: holds {h.author.hex()[:16]} "
                                                 f"seq {h.seq} (moved or swapped)"))
        if last is None:
            out.first = (author, epoch, seq, h.prev, retained.kept(h.kind, h.payload_codec))
        elif last != (author, epoch, seq - 1, h.prev) or author in cuts:     # else linked to the one before
            gap = _link_problem(last, author, epoch, seq, h.prev, cuts, retained.kept(h.kind, h.payload_codec))
            if gap:
                problems.append(Problem(author, seq, gap))
        last = (author, epoch, seq, eid)
        tails[author] = (epoch, seq, eid)
        indexed += 1
        if index and txn.get(eid, db=db_ids) != key:
            problems.append(Problem(author, seq, "id index does not point at this event"))
        if payload is not None:
            if len(payload) != h.payload_len or blake(payload) != h.payload_hash:
                problems.append(Problem(author, seq, "payload does not match the header's payload hash"))
        elif (erased_by := txn.get(key, db=db_erased)) is not None:
            problem = _erasure_problem(store, txn, h, bytes(erased_by))
            if problem:
                problems.append(Problem(author, seq, problem))
            else:
                out.erased += 1
        elif h.payload_codec == "sealed" and txn.get(key, db=db_uncarried) is not None:
            out.uncarried += 1
        elif txn.get(key, db=db_withheld) is None or roster:
            problems.append(Problem(author, seq, "payload is missing"))
        else:
            out.withheld.append((author, epoch, seq))
        if roster or (seq, epoch) == (1, 0):
            out.notable.append((record, payload))
        if signatures and not crypto.verify(author, eid, event.signature):
            out.bad_signatures.append((author, epoch, seq))
        if progress and checked % CHUNK == 0:
            progress(min(checked, total), total)
    out.checked, out.indexed = checked, indexed
    return out, ids


def _erasure_problem(store: Store, txn, h, rid: bytes) -> str | None:
    """Why an `erased` row is wrong (its request not held, or the event is of a kind never erased), or None."""
    if h.kind not in ERASABLE_KINDS:
        return f"marked erased, but {h.kind} events are never erased"
    if request_at(store.dbs, txn, rid) is None:
        return f"marked erased by request {rid.hex()[:16]}, which this store does not hold"
    return None


def _withheld_runs(found: list[tuple[bytes, int, int]]) -> list[Problem]:
    """Events held without their payload, one Problem per run of consecutive seqs of an author."""
    return [Problem(author, lo, f"{_seqs(lo, hi)} held without the payload (a peer withheld it): views lack it "
                                "until a peer supplies it") for author, _, lo, hi in seq_runs(sorted(found))]


def _seqs(lo: int, hi: int) -> str:
    return f"seq {lo}" if lo == hi else f"seqs {lo}..{hi}"


def _classify_signatures(store: Store, report: Report, bad: list[tuple[bytes, int, int]]) -> None:
    """A signature that does not verify on an event a peer sent inside a run (stored unchecked), whose
    content a later validly signed event of its author proves through sound hash links, is damaged
    signature bytes on authentic content: a warning naming the peer it came from, and marked so the
    daemon asks peers for the record again. Any other is a problem (the header or signature altered)."""
    failed, damaged = set(bad), []
    linked = {(p.author, p.seq) for p in report.problems}
    with store.raw_txn() as txn:
        received = ledger.ranges(txn, store.db("ledger.received"))
        for author, epoch, seq in sorted(bad):
            key = event_key(author, epoch, seq)
            record = txn.get(key, db=store.db("events"))
            came_in_run = any(txn.get(key, db=store.db(n)) is not None for n in ("unverified", "damaged"))
            signed = seq + 1
            while (author, epoch, signed) in failed:
                signed += 1
            proven = (came_in_run and txn.get(event_key(author, epoch, signed), db=store.db("events")) is not None
                      and not any((author, s) in linked for s in range(seq, signed + 1)))
            if not proven or record is None:
                report.problems.append(Problem(author, seq, "signature does not verify (header or signature altered)"))
                continue
            damaged.append((author, epoch, seq, signed, bytes(record)))
    try:
        store.mark_damaged([(event_key(*d[:3]), d[4]) for d in damaged])  # the daemon asks peers again
    except StoreError as exc:
        report.notes.append(f"damaged signatures not marked for peers to resend: {exc}")
    signed_at = {d[:3]: d[3] for d in damaged}
    for author, epoch, lo, hi in seq_runs(list(signed_at)):
        signed = signed_at[author, epoch, hi]
        peer = next((r.peer for r in received if (r.author, r.epoch) == (author, epoch) and r.lo <= lo <= r.hi), None)
        report.bad_signatures.append(BadSignature(
            author, lo, f"signature bytes damaged{'' if lo == hi else f' (seqs {lo}..{hi})'}; the content is proven by "
                        f"the signed seq {signed} and the hash links; asked of peers again", hi, signed, peer))


def _link_problem(last: tuple | None, author: bytes, epoch: int, seq: int, prev: bytes, cuts: dict,
                  kept: bool) -> str | None:
    """What is wrong with the chain between the event before (or None) and this one; a chain starts at
    seq 1, or right after its author's truncation point (`cuts`: author -> Head). Below the truncation point
    only events compaction keeps (`kept`) may be held, each on its own signature (docs/compaction.md);
    a new epoch starts at seq 1."""
    cut = cuts.get(author)
    if cut is not None and (epoch, seq) <= (cut.epoch, cut.seq):
        return None if kept else "held at or below its truncation point, but compaction keeps no event of its kind"
    if last is None or last[0] != author or (cut is not None and (last[1], last[2]) <= (cut.epoch, cut.seq)):
        if cut is not None:
            if seq != cut.seq + 1:
                return f"chain starts at seq {seq}, not right after its truncation point at seq {cut.seq}"
            return None if prev == cut.id else "prev does not link to the truncation point's id"
        if seq != 1:
            return f"chain starts at seq {seq}: seqs 1..{seq - 1} are missing"
        return None if prev == crypto.ZERO_ID else "seq 1 has a non-zero prev"
    if epoch != last[1]:
        return None if seq == 1 and prev == crypto.ZERO_ID else f"epoch {epoch} starts at seq {seq}, not at seq 1"
    if seq != last[2] + 1:
        return f"seqs {last[2] + 1}..{seq - 1} are missing (deleted)"
    return None if prev == last[3] else "prev does not link to the previous event's id"


def _check_first(report: Report, scan: _Range, cuts: dict) -> None:
    """The link of the store's first event, which has no event before it (the scan checks every later one)."""
    if scan.first is not None:
        author, epoch, seq, prev, kept = scan.first
        gap = _link_problem(None, author, epoch, seq, prev, cuts, kept)
        if gap:
            report.problems.append(Problem(author, seq, gap))


def _check_ids(txn, store: Store, out: _Range, ids: dict[bytes, bytes]) -> int:
    """Every id-index entry must name a stored event with exactly that id (`ids`: key -> id of each event the
    scan decoded in this transaction). Returns how many entries point at a decoded event of an author's chain
    (not a forked branch) under its own id: each such event is pointed at by one, so all are when that many."""
    cur, db_events = txn.cursor(db=store.db("ids")), store.db("events")
    pointed = 0
    found = cur.first()
    while found:
        eid, key = cur.item()
        held = ids.get(key)
        if held == eid and len(key) == KEY_LEN:
            pointed += 1
        elif held is None:
            record = txn.get(key, db=db_events)
            held = None if record is None else record_id(record)
        if held != eid:
            author, (_, seq) = bytes(key[:32]), POS.unpack_from(key, 32)
            out.problems.append(Problem(author, seq, f"id index entry {bytes(eid).hex()[:16]} does not match the "
                                                     "stored event"))
        found = cur.next()
    return pointed


def _check_enrolment(store: Store, report: Report, notable: list, heads: dict) -> None:
    """Fold roster events in causal (lamport) order, then check who wrote what."""
    events = []
    for record, payload in notable:
        try:
            event = decode_record(record, payload)
        except EventError:
            continue
        try:
            events.append((event, check_payload(event) if event.header.kind in ROSTER_KINDS else None))
        except EventError as exc:
            report.problems.append(Problem(event.header.author, event.header.seq,
                                           f"roster event unreadable: {exc.args[0]}"))
    anchor = store.anchor()
    folded = [(e.header, e.id, decoded) for e, decoded in events if decoded is not None]
    bundle = base_bundle(store)
    if bundle is not None and bundle.states.get("roster"):     # roster events compaction dropped
        roster = Roster.from_bytes(bundle.states["roster"])
        roster.founder = store.founder
        for header, eid, decoded in sorted(folded, key=lambda e: (e[0].lamport, e[0].author, e[0].seq)):
            roster.apply(header, eid, decoded)
    else:
        vouched = [(anchor[0].header, anchor[0].id, anchor[1])] if anchor else []
        roster = Roster.replay(store.founder, folded + vouched)
    for event, _ in events:
        h = event.header
        if h.author == store.founder and h.seq == 1:
            if event.id != store.genesis:
                report.problems.append(Problem(h.author, 1, "founder's first event is not the group's genesis"))
            continue
        member = roster.members.get(h.author)
        if member is not None and member.until_seq is not None and h.seq > member.until_seq:
            continue
        try:
            roster.check_author(h)
        except EventError as exc:
            report.problems.append(Problem(h.author, h.seq, exc.args[0]))
    for author, member in roster.members.items():
        head = heads.get(author)
        if member.until_seq is not None and head and head.seq > member.until_seq:
            report.after_revocation.append(Problem(
                author, head.seq, f"seqs {member.until_seq + 1}..{head.seq} were written concurrently with the "
                f"device's revocation at seq {member.until_seq}: kept, not accepted from now on"))


def _check_heads(store: Store, report: Report, heads: dict, heads_after: dict, tails: dict) -> None:
    """Heads read before the scan must be events of their chains, and heads read after it
    must reach the chains' ends (a concurrent writer only moves both forward)."""
    cuts = store.truncated()
    with store.raw_txn() as txn:
        for author in set(heads) | set(tails):
            head, tail, after = heads.get(author), tails.get(author), heads_after.get(author)
            if tail is not None and (after is None or (after.epoch, after.seq) < (tail[0], tail[1])):
                report.problems.append(Problem(author, tail[1], f"head records seq {after.seq if after else 'none'} "
                                                                f"but the chain goes on to seq {tail[1]}"))
            if head is None:
                continue
            cut = cuts.get(author)
            if tail is None and cut is not None and cut == head:
                continue                        # every event of the author up to its head was compacted away
            if tail is None or (tail[0], tail[1]) < (head.epoch, head.seq):
                at = tail[1] if tail else 0
                report.problems.append(Problem(author, at, f"head records seq {head.seq} but the chain ends at "
                                                           f"seq {at}"))
                continue
            record = txn.get(event_key(author, head.epoch, head.seq), db=store.db("events"))
            if record is None or record_id(record) != head.id:
                report.problems.append(Problem(author, head.seq, "head does not name the event stored at its seq"))


def _check_forks(store: Store, report: Report) -> None:
    """A fork is proven by two different records at one position, each signed by the author."""
    for fork in store.forks():
        valid = {fork.kept} if fork.kept else set()
        for eid, record in fork.records:
            try:
                event = decode_record(record)
            except EventError:
                continue
            h = event.header
            if (h.author, h.epoch, h.seq, event.id) == (fork.author, fork.epoch, fork.seq, eid) and \
                    crypto.verify(h.author, event.id, event.signature):
                valid.add(eid)
        if len(valid) >= 2:
            report.forks.append(Problem(fork.author, fork.seq,
                                        f"fork: {len(valid)} different signed events at this seq (all kept)"))
        else:
            report.problems.append(Problem(fork.author, fork.seq,
                                           "fork record does not prove a fork (unsigned or not different)"))


def _check_snapshot(store: Store, report: Report) -> None:
    """The base snapshot must verify (signature, payload hash, each view's state against its signed
    digest), and every truncation point must lie within the frontier its state covers."""
    bundle = base_bundle(store)
    cuts = store.truncated()
    if bundle is None:
        for author, cut in cuts.items():
            report.problems.append(Problem(author, cut.seq, "truncated, but the store holds no snapshot covering it"))
        return
    event = bundle.event
    try:
        snap = snapshot.check(bundle, lambda author, roster: True)
    except SnapshotError as exc:
        report.problems.append(Problem(event.header.author, event.header.seq, f"base snapshot: {exc}"))
        return
    covered = {p.author: p for p in snap.frontier}
    for author, cut in cuts.items():
        point = covered.get(author)
        if point is None or (cut.epoch, cut.seq) > (point.epoch, point.seq):
            report.problems.append(Problem(author, cut.seq, "truncated past the base snapshot's frontier"))
        elif (cut.epoch, cut.seq) == (point.epoch, point.seq) and cut.id != point.id:
            report.problems.append(Problem(author, cut.seq, "truncation point's id differs from the snapshot's"))
