"""Full re-check of every stored event: `agentlog verify`.

For each author's chain, in key order: the record decodes, sits under its own
(author, epoch, seq), seqs are dense, prev links to the previous id, the signature
verifies over the id, the payload is present and matches its hash (and decodes for
known kinds), and the author was enrolled at the time. Then heads and the id index
must agree with the chains. Signatures are checked in parallel threads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from . import crypto
from .errors import EventError
from .event import Event, decode_record
from .roster import Roster
from .store import Store
from .validate import ROSTER_KINDS, check_payload

_CHUNK = 2048
_POS = struct.Struct(">IQ")


@dataclass(frozen=True, slots=True)
class Problem:
    author: bytes
    seq: int
    what: str

    def line(self, roster: Roster) -> str:
        return f"{roster.name_of(self.author)} ({self.author.hex()[:16]}) seq {self.seq}: {self.what}"


@dataclass(slots=True)
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    forks: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: Store, progress: Callable[[int, int], None] | None = None) -> Report:
    """Check every stored event; returns all problems found (none means the log is intact)."""
    report = Report()
    total = store.count()
    pending: list[tuple[Callable[[], list[bool]], list[Event]]] = []
    roster_events: list[tuple[Event, object]] = []
    firsts: list[Event] = []
    tails: dict[bytes, tuple[int, int, bytes]] = {}
    last: tuple[bytes, int, int, bytes] | None = None
    chunk: list[Event] = []
    group = store.group
    withheld = store.withheld_ids()

    def flush() -> None:
        if chunk:
            items = [(e.header.author, e.id, e.signature) for e in chunk]
            pending.append((crypto.verify_async(items), list(chunk)))
            chunk.clear()
        while len(pending) > 2:
            _collect(report, *pending.pop(0))

    for key, record, payload in store.events(decode=False):
        author, (epoch, seq) = key[:32], _POS.unpack_from(key, 32)
        report.checked += 1
        try:
            event = decode_record(record, payload)
        except EventError as exc:
            report.problems.append(Problem(author, seq, f"header does not decode: {exc.args[0]}"))
            last = (author, epoch, seq, b"")
            continue
        h = event.header
        if h.group != group:
            report.problems.append(Problem(author, seq, f"belongs to group {h.group.hex()[:16]}, not this store's"))
        if (h.author, h.epoch, h.seq) != (author, epoch, seq):
            report.problems.append(Problem(author, seq, f"stored under the wrong key: holds {h.author.hex()[:16]} seq {h.seq} (moved or swapped)"))
        if last is None or last[0] != author:
            if seq != 1:
                report.problems.append(Problem(author, seq, f"chain starts at seq {seq}: seqs 1..{seq - 1} are missing"))
            elif h.prev != crypto.ZERO_ID:
                report.problems.append(Problem(author, seq, "seq 1 has a non-zero prev"))
        else:
            if seq != last[2] + 1:
                report.problems.append(Problem(author, seq, f"seqs {last[2] + 1}..{seq - 1} are missing (deleted)"))
            elif h.prev != last[3]:
                report.problems.append(Problem(author, seq, "prev does not link to the previous event's id"))
        last = (author, epoch, seq, event.id)
        tails[author] = (epoch, seq, event.id)
        if payload is None:
            if event.id not in withheld or h.kind in ROSTER_KINDS:
                report.problems.append(Problem(author, seq, "payload is missing"))
            decoded = None
        else:
            try:
                decoded = check_payload(event)
            except EventError as exc:
                report.problems.append(Problem(author, seq, exc.args[0]))
                decoded = None
        if h.kind in ROSTER_KINDS and decoded is not None:
            roster_events.append((event, decoded))
        if seq == 1 or h.kind in ROSTER_KINDS:
            firsts.append(event)
        chunk.append(event)
        if len(chunk) >= _CHUNK:
            flush()
            if progress:
                progress(report.checked, total)
    flush()
    for item in pending:
        _collect(report, *item)
    _check_enrolment(store, report, roster_events, firsts)
    _check_index(store, report, tails)
    _check_forks(store, report)
    if progress:
        progress(report.checked, total)
    report.problems.sort(key=lambda p: (p.author, p.seq))
    return report


def _collect(report: Report, results: Callable[[], list[bool]], events: list[Event]) -> None:
    for ok, event in zip(results(), events):
        if not ok:
            report.problems.append(Problem(event.header.author, event.header.seq, "signature does not verify (header or signature altered)"))


def _check_enrolment(store: Store, report: Report, roster_events, firsts: list[Event]) -> None:
    """Fold roster events in causal (lamport) order, then check who wrote what."""
    roster = Roster(store.founder)
    anchor = store.anchor()
    if anchor is not None:
        roster.apply(anchor[0].header, anchor[0].id, anchor[1])
    for event, decoded in sorted(roster_events, key=lambda ed: (ed[0].header.lamport, ed[0].header.author, ed[0].header.seq)):
        roster.apply(event.header, event.id, decoded)
    genesis = store.genesis
    for event in firsts:
        h = event.header
        if h.author == store.founder and h.seq == 1:
            if event.id != genesis:
                report.problems.append(Problem(h.author, 1, "founder's first event is not the group's genesis"))
            continue
        try:
            roster.check_author(h)
        except EventError as exc:
            report.problems.append(Problem(h.author, h.seq, exc.args[0]))
    for author, member in roster.members.items():
        if member.until_seq is not None:
            head = store.heads().get(author)
            if head and head.seq > member.until_seq:
                report.problems.append(Problem(author, head.seq, f"events after revocation at seq {member.until_seq}"))


def _check_index(store: Store, report: Report, tails: dict) -> None:
    """Heads and the id index must agree with the chains."""
    heads = store.heads()
    for author in set(heads) | set(tails):
        head, tail = heads.get(author), tails.get(author)
        if head is None or tail is None or (head.epoch, head.seq, head.id) != tail:
            at = tail[1] if tail else 0
            report.problems.append(Problem(author, at, f"head records seq {head.seq if head else 'none'} but the chain ends at seq {at}"))
    with store.raw_txn() as txn:
        indexed = 0
        for eid, key in txn.cursor(db=store.db("ids")):
            indexed += 1
            record = txn.get(key, db=store.db("events"))
            if record is None or crypto.blake2b256(record[: -crypto.SIG_LEN]) != eid:
                author, (_, seq) = bytes(key[:32]), _POS.unpack_from(key, 32)
                report.problems.append(Problem(author, seq, f"id index entry {bytes(eid).hex()[:16]} does not match the stored event"))
        if indexed != report.checked:
            report.problems.append(Problem(b"", 0, f"id index holds {indexed} entries for {report.checked} events"))


def _check_forks(store: Store, report: Report) -> None:
    for fork in store.forks():
        try:
            other = decode_record(fork.other_record)
            proven = crypto.verify(fork.author, other.id, other.signature)
        except EventError:
            proven = False
        what = "fork: two different signed events at this seq (both kept)" if proven else "fork record is not validly signed"
        (report.forks if proven else report.problems).append(Problem(fork.author, fork.seq, what))
