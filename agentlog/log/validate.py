"""Validation of events from outside, in the order docs/format.md fixes. Pure.

size -> decode (shape, then ranges) -> group -> (an exact duplicate is skipped here) -> enrolment -> seq
(own chain, then causal context) -> prev -> lamport -> signature -> payload hash. Causal delivery (every clock
entry already held) makes the roster and views functions of the event set, whatever the arrival order.
Each failure raises its own EventError subclass naming author and seq. The caller
supplies what the store knows through the small `LogView` protocol, so the same
rules run on LMDB, in memory, or in a simulated peer.
"""

from __future__ import annotations

from hashlib import blake2b as _blake2b
from typing import NamedTuple, Protocol

from agentlog import crypto
from agentlog.errors import (
    CausalGapError,
    ChainError,
    DecodeError,
    EventError,
    ForkError,
    GroupMismatchError,
    NotEnrolledError,
    PayloadHashError,
    ScopeError,
    SequenceError,
    SignatureError,
    SizeLimitError,
)
from agentlog.limits import MAX_EPOCH, MAX_LAMPORT, MAX_SEQ, MAX_TIME_MS, MIN_TIME_MS
from agentlog.log import epochs, payloads
from agentlog.log.event import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, Event, check_ranges, decode_record
from agentlog.log.roster import Roster

ROSTER_KINDS = ("device.enroll", "device.revoke")
WHOLE_KINDS = (*ROSTER_KINDS, "erase")       # every holder reads them: plain, and never withheld
LAMPORT_STEP = 1 << 16         # how far past what it follows an event's lamport may be (honest: 1)
_MAX_RECORD = MAX_HEADER_BYTES + crypto.SIG_LEN


class Head(NamedTuple):
    """The last event of an author's chain that a store holds."""

    epoch: int
    seq: int
    id: bytes


TRUNCATED = b"truncated"      # id_at's answer below an author's truncation point


class LogView(Protocol):
    group: bytes
    genesis: bytes | None
    roster: Roster

    def head(self, author: bytes) -> Head | None: ...

    def id_at(self, author: bytes, epoch: int, seq: int) -> bytes | None:
        """The stored event's id there; for a position compaction dropped, the truncation point's id or
        TRUNCATED (below it: the event is covered by a snapshot and cannot be compared)."""

    def lamport_at(self, author: bytes, epoch: int, seq: int) -> int | None:
        """The stored (or accepted) event's lamport there; None when its record is not held."""

    def branch_of(self, author: bytes, epoch: int, seq: int, eid: bytes) -> bytes | None:
        """The id of the forked branch (agentlog.log.epochs.branch_id) holding event `eid` there, past its fork
        point; None when it is not held there or on no forked branch."""

    def branch_holds(self, author: bytes, epoch: int, seq: int) -> bool:
        """Whether a forked branch of `author` (not its main chain) holds an event at (epoch, seq) or past it."""


class Duplicate(Exception):
    """Not an error: the store already holds this exact event (`event`, as it arrived now: with its payload
    or not, so a store holding it without its payload can fill that in)."""

    def __init__(self, event: Event | None = None):
        super().__init__()
        self.event = event


class Predecoded(NamedTuple):
    """What the checks that read no store find of one incoming event (size, decoding, ranges; its payload against
    the header), made ahead of `check_event` (for a relay delivery, from the record decoded when it was opened).
    `check_event` raises what they found where it would have found it, so the first failure is the same."""

    record: bytes
    payload: bytes | None
    event: Event | None
    failed: EventError | None          # the size, decoding or range check that failed
    checked: object                    # check_payload's result, or the EventError it raised


def predecode(record: bytes, payload: bytes | None, event: Event | None = None) -> Predecoded:
    """Run the checks of one incoming event that need no store; raises nothing an event can cause. `event`: the
    record as decode_record decoded it already (a relay delivery's, when it was opened), with this payload."""
    try:
        if len(record) > _MAX_RECORD:
            raise SizeLimitError(f"event record is {len(record)} bytes, over the limit of {_MAX_RECORD}")
        if payload is not None and len(payload) > MAX_PAYLOAD_BYTES:
            raise SizeLimitError(f"payload is {len(payload)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
        if event is None:
            event = decode_record(record, payload)
        h = event.header
        if h.clock or not (h.seq <= MAX_SEQ and h.lamport <= MAX_LAMPORT and MIN_TIME_MS <= h.time_ms <= MAX_TIME_MS
                           and h.epoch <= MAX_EPOCH):
            check_ranges(h)                # raises the first range it finds broken (or checks the clock's)
    except EventError as exc:
        return Predecoded(record, payload, None, exc, None)
    try:
        checked = check_payload(event)
        if h.kind == "device.revoke" and checked is not None and checked.device == h.author:
            raise NotEnrolledError("a device cannot revoke itself: its revocation would lie past the cut it "
                                   "names, which peers never send, so they could not learn of it", h.author, h.seq)
    except EventError as exc:
        checked = exc
    return _tuple_new(Predecoded, (record, payload, event, None, checked))


_tuple_new = tuple.__new__           # builds a NamedTuple without its Python-level __new__


def _payload_of(pre: Predecoded) -> object:
    """check_payload's result for a predecoded event, raising its error now."""
    if isinstance(pre.checked, EventError):
        raise pre.checked
    return pre.checked


def check_event(
    record: bytes, payload: bytes | None, log: LogView, *, check_signature: bool = True,
    pre: Predecoded | None = None,
) -> tuple[Event, object]:
    """Validate one incoming event against `log` (`pre`: its `predecode`, when made ahead).

    Returns:
        (event, decoded payload or None when the payload is withheld, sealed or of an unknown kind).
    Raises:
        Duplicate: the exact event is already stored.
        EventError: the first check that failed.
    """
    if pre is None:
        pre = predecode(record, payload)
    if pre.failed is not None:
        raise pre.failed
    event = pre.event
    h = event.header
    author, seq = h.author, h.seq
    if h.group != log.group:
        raise GroupMismatchError(f"event belongs to group {h.group.hex()[:16]}, not this one", author, seq)
    head = log.head(author)
    if head is not None and h.epoch != head.epoch:
        return _across_epochs(pre, head, log, check_signature)
    expected = 1 if head is None else head.seq + 1
    existing = None
    if seq < expected:
        existing = log.id_at(author, h.epoch, seq)
        if existing == event.id or existing == TRUNCATED:
            raise Duplicate(event)
    _check_enrolment(event, log)
    if seq < expected:
        if existing is None:
            raise SequenceError(f"epoch {h.epoch} seq {seq} does not continue this author's chain", author, seq)
        _check_signature(event, FORK_CLAIM)
        raise ForkError(
            f"fork: a second, different event at epoch {h.epoch} seq {seq}", author, seq, existing, event.id
        )
    if seq > expected:
        raise SequenceError(f"seq {seq} arrives before seq {expected}: a gap", author, seq)
    _check_clock(h, log)
    prev = crypto.ZERO_ID if head is None else head.id
    if h.prev != prev:
        raise ChainError(f"prev {h.prev.hex()[:16]} does not link to the previous event {prev.hex()[:16]}", author, seq)
    _check_lamport(h, head, log)
    if check_signature:
        _check_signature(event)
    return event, _payload_of(pre)


def _check_clock(h, log: LogView) -> None:
    """Raise CausalGapError unless every event the clock names is held (on the main chain or a forked branch)."""
    for dep in h.clock:
        held = log.head(dep.author)
        needed = dep.seq
        member = log.roster.members.get(dep.author)
        if member is not None and member.until_seq is not None:
            needed = min(needed, member.until_seq)     # a revoked device's later events do not exist for the group
        if held is None and needed == 0:
            continue
        if (held is None or (held.epoch, held.seq) < (dep.epoch, needed)) and \
                not log.branch_holds(dep.author, dep.epoch, needed):
            raise CausalGapError(f"event follows {dep.author.hex()[:16]} seq {dep.seq}, which this store does not "
                                 "hold yet", h.author, h.seq)


def _across_epochs(pre: Predecoded, head: Head, log: LogView, check_signature: bool) -> tuple[Event, object]:
    """An event in another epoch than its author's held head: one of an earlier epoch is a duplicate, a fork or
    a tail the head moved past (SequenceError); one of a later epoch must be an epoch.start (agentlog.log.epochs)."""
    event = pre.event
    h = event.header
    if h.epoch < head.epoch:
        existing = log.id_at(h.author, h.epoch, h.seq)
        if existing == event.id or existing == TRUNCATED:
            raise Duplicate(event)
        _check_enrolment(event, log)
        _check_signature(event, FORK_CLAIM if existing is not None else "")
        if existing is not None:
            raise ForkError(f"fork: a second, different event at epoch {h.epoch} seq {h.seq}", h.author, h.seq,
                            existing, event.id)
        raise SequenceError(f"epoch {h.epoch} seq {h.seq} lies in an epoch this author has closed", h.author, h.seq)
    _check_enrolment(event, log)
    decoded = _payload_of(pre)
    epochs.check_start(h, decoded, head, log)
    _check_clock(h, log)
    if check_signature:
        _check_signature(event)
    return event, decoded


def _check_lamport(h, head: Head | None, log: LogView) -> None:
    """Raise unless the lamport is above the author's previous one and at most LAMPORT_STEP above the
    highest of its previous event and the heads its clock names (an honest writer's is exactly 1 above).
    So no event can push the group's lamports near MAX_LAMPORT. Skipped when one of them is not held
    (compacted away): the range check still holds."""
    known = [0 if head is None else log.lamport_at(h.author, head.epoch, head.seq)]
    known += [log.lamport_at(c.author, c.epoch, c.seq) for c in h.clock]
    if None in known:
        return
    if h.lamport <= known[0]:
        raise SequenceError(f"lamport {h.lamport} is not above the author's previous lamport {known[0]}",
                            h.author, h.seq)
    if h.lamport > max(known) + LAMPORT_STEP:
        raise SequenceError(f"lamport {h.lamport} is more than {LAMPORT_STEP} above the highest lamport it "
                            f"follows ({max(known)})", h.author, h.seq)


def check_payload(event: Event) -> object:
    """Check a present payload against the header; decode it when it is plain and of a known kind."""
    h, payload = event.header, event.payload
    kind, codec = h.kind, h.payload_codec
    if kind in WHOLE_KINDS and codec != "plain":
        raise DecodeError(f"{kind} events must have a plain payload", h.author, h.seq)
    if kind == "erase" and h.scope != "user":
        raise ScopeError(f"erase events belong in scope user, not {h.scope!r}", h.author, h.seq)
    if payload is None:
        if kind in WHOLE_KINDS:
            raise PayloadHashError(f"{kind} event arrived without its payload", h.author, h.seq)
        return None
    if len(payload) != h.payload_len or _blake2b(payload, digest_size=32).digest() != h.payload_hash:
        raise PayloadHashError("payload does not match the header's payload hash", h.author, h.seq)
    if codec != "plain" or kind not in payloads.KINDS:
        return None
    try:
        return payloads.decode(kind, payload)
    except DecodeError as exc:
        raise DecodeError(exc.args[0], h.author, h.seq) from None


def _check_enrolment(event: Event, log: LogView) -> None:
    h = event.header
    if h.seq == 1 and h.epoch == 0 and h.author == log.roster.founder:
        if log.genesis is not None and event.id != log.genesis:
            raise NotEnrolledError("founder's first event is not this group's genesis", h.author, h.seq)
        if log.roster.members.get(h.author) is None:
            return
    log.roster.check_author(h)


FORK_CLAIM = "fork claim refused: "         # how a refusal of an event that would make or extend a fork begins


def _check_signature(event: Event, claim: str = "") -> None:
    if not crypto.verify(event.header.author, event.id, event.signature):
        raise SignatureError(
            f"{claim}signature does not verify for this author and event id", event.header.author, event.header.seq
        )
