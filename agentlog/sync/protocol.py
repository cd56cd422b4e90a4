"""The replication protocol for one connection: a sans-IO state machine (docs/protocol.md section 4).

A `Connection` takes messages, ingest results, local changes and the current time,
and returns actions: messages to send, batches to ingest, and when to close. It owns
no socket and no clock; it reads the local log through the small `LogReader`
protocol, so the same rules run over TCP, in a simulation, and in unit tests.

Bootstrap (section 8): when the peer's truncation points (from its hello or frontier) lie
above our frontier for an author, the events we lack are gone from it; we ask once for its
snapshot instead of events, take it in chunks (transfer.py), hand it over to be checked and
installed (`Install`), then re-announce our frontier and catch up on the events after it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agentlog.errors import EventError, ProtocolError
from agentlog.sync.messages import (
    MAX_BATCH,
    MAX_ENTRIES,
    VERSION,
    Ack,
    Error,
    Events,
    Frontier,
    FrontierMsg,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    SnapshotAck,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotWant,
    Want,
    WireEvent,
    frontier_digest,
)
from agentlog.sync.transfer import Incoming, Outgoing

HEARTBEAT_S = 5.0
PARTITION_AFTER = 3                  # heartbeat intervals of silence
PAYLOAD_RETRY = 6                    # heartbeat intervals between asks for the same missing payloads
WINDOW = 8                           # batches sent and not yet acked (a receiver stores those queued in one commit)
QUEUED_MAX = 8                       # batches waiting to be stored that a receiver takes from a peer (one keeping
                                     # to WINDOW has at most 7 waiting when its next batch arrives)
BATCH_EVENTS = 1000
BATCH_BYTES = 1 << 20
READ_CHUNK = 512


class LogReader(Protocol):
    """What the protocol needs from the local log."""

    def frontier(self) -> Frontier: ...

    def read(self, author: bytes, epoch: int, lo: int, hi: int, limit: int) -> list[tuple[int, WireEvent]]:
        """Up to `limit` held events of `author` from seq `lo` on (at most `hi`), in seq order and without
        a gap, as (lamport, event)."""
        ...

    def revoked_limits(self) -> dict[bytes, int]:
        """Revoked device -> its last seq this group accepts."""
        ...

    def signature_ok(self, author: bytes, epoch: int, seq: int, record: bytes) -> bool:
        """Whether the held event's signature verifies (events whose signature was checked, or that
        this device wrote, are known good without checking again)."""
        ...

    def truncated(self) -> Frontier:
        """Author -> the last position compaction dropped here: no event at or below it can be read."""
        ...

    def snapshot(self) -> tuple[bytes, bytes, dict[str, bytes]] | None:
        """The base snapshot a bootstrap hands over: (event record, payload, view name -> state), or None."""
        ...

    def withheld(self) -> list[tuple[bytes, int, int, int]]:
        """Runs of events to ask peers for again, as (author, epoch, first seq, last seq): held without their
        payload, or with signature bytes a check found damaged."""
        ...


@dataclass(frozen=True, slots=True)
class Send:
    message: Message


@dataclass(frozen=True, slots=True)
class Ingest:
    """Validate and store this batch in one transaction, then call `ingested` (or `rejected`)."""

    batch: int
    events: tuple[WireEvent, ...]


@dataclass(frozen=True, slots=True)
class Install:
    """Check and install this snapshot (compaction.bootstrap), then call `installed` (or `install_failed`)."""

    record: bytes
    payload: bytes
    states: dict[str, bytes]
    cuts: Frontier                   # the peer's truncation points: where the snapshot may pass our heads


@dataclass(frozen=True, slots=True)
class Close:
    reason: str
    error: bool                      # True: the peer broke a rule (or we did); False: a normal end


Action = Send | Ingest | Install | Close


def _seq(f: Frontier, author: bytes) -> int:
    return f.get(author, (0, 0))[1]


def _after(f: Frontier, author: bytes, epoch: int) -> int | None:
    """The seq in `epoch` after which `f` lacks `author`'s events: its seq there, 0 when `f` stops in an earlier
    epoch (a new epoch's seqs start at 1), None when it is past `epoch`."""
    held = f.get(author, (epoch, 0))
    return held[1] if held[0] == epoch else 0 if held[0] < epoch else None


def _merge(into: Frontier, more: Frontier) -> None:
    for author, pos in more.items():
        if into.get(author, (-1, -1)) < pos:
            into[author] = pos


@dataclass
class _Outbox:
    """Ranges owed to the peer, read author by author and merged into causal (lamport) order."""

    log: LogReader
    ranges: dict[bytes, list[int]] = field(default_factory=dict)     # author -> [epoch, next seq, last seq]
    buffers: dict[bytes, deque] = field(default_factory=dict)

    def owe(self, author: bytes, epoch: int, lo: int, hi: int) -> None:
        r = self.ranges.get(author)
        if r is None or r[0] != epoch:
            self.ranges[author] = [epoch, lo, hi]
        else:
            r[1], r[2] = min(r[1], lo), max(r[2], hi)

    def empty(self) -> bool:
        return not any(self.buffers.values()) and not self.ranges

    def _head(self, author: bytes):
        buf = self.buffers.setdefault(author, deque())
        if not buf and author in self.ranges:
            epoch, lo, hi = self.ranges[author]
            got = self.log.read(author, epoch, lo, hi, READ_CHUNK)
            buf.extend((lamport, epoch, lo + i, event) for i, (lamport, event) in enumerate(got))
            nxt = lo + len(got)
            if not got or nxt > hi:
                del self.ranges[author]          # done, or not held: the peer asks again after a frontier
            else:
                self.ranges[author][1] = nxt
        return buf[0] if buf else None

    def batch(self, max_events: int, max_bytes: int, held: Frontier) -> list[tuple[bytes, int, int, WireEvent]]:
        """The next events owed, in lamport order, as (author, epoch, seq, event); events the peer is
        known to hold by now (`held`, e.g. relayed to it by a third device) are dropped unsent.

        The receiver checks the signature of each author's last event in a batch, so a batch does not
        end an author's run on an event whose stored signature is bad (one a peer garbled inside a run
        whose content the hash links proved): past the size limits it takes further events, up to
        MAX_BATCH, until every run ends on a good signature (`LogReader.signature_ok`).
        """
        heap = []
        for author in list(self.ranges) + [a for a, b in self.buffers.items() if b and a not in self.ranges]:
            head = self._head(author)
            if head is not None:
                heap.append((head[0], author))
        heapq.heapify(heap)
        out, size, ends, checked = [], 0, {}, {}
        while heap and len(out) < MAX_BATCH:
            author = heap[0][1]
            buf = self.buffers[author]
            _, epoch, seq, event = buf[0]
            cost = len(event.record) + len(event.payload or b"") + 16
            if out and (len(out) >= max_events or size + cost > max_bytes) and self._ends_ok(out, ends, checked):
                break
            buf.popleft()
            if held and held.get(author, (-1, 0)) >= (epoch, seq):
                cost = 0
            else:
                ends[author] = len(out)
                out.append((author, epoch, seq, event))
            size += cost
            head = buf[0] if buf else self._head(author)
            if head is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (head[0], author))
        return out

    def _ends_ok(self, out: list, ends: dict[bytes, int], checked: dict[int, bool]) -> bool:
        for i in ends.values():
            if i not in checked:
                author, epoch, seq, event = out[i]
                checked[i] = self.log.signature_ok(author, epoch, seq, event.record)
            if not checked[i]:
                return False
        return True


class Connection:
    """The protocol state of one authenticated connection to `peer` (both sides run the same machine)."""

    def __init__(self, log: LogReader, group: bytes, me: bytes, peer: bytes, now: float, *,
                 heartbeat: float = HEARTBEAT_S, window: int = WINDOW, batch_events: int = BATCH_EVENTS,
                 batch_bytes: int = BATCH_BYTES, guarded: bool = False):
        """`guarded`: the peer is not (yet) in our roster: take its events, send it nothing (`admit` ends it)."""
        self.log, self.group, self.me, self.peer = log, group, me, peer
        self.guarded = guarded
        self.shown: Frontier = {}           # the frontier a guarded side last showed the peer
        self.heartbeat, self.window = heartbeat, window
        self.batch_events, self.batch_bytes = min(batch_events, MAX_BATCH), batch_bytes
        self.state = "hello"
        self.theirs: Frontier = {}          # what the peer holds, as far as we know
        self.sent: Frontier = {}            # what the peer holds or we have queued for it
        self.wanted: Frontier = {}          # what we asked for and have not received yet
        self.outbox = _Outbox(log)
        self.unacked: dict[int, Frontier] = {}   # batch -> newest event per author in it
        self.next_batch = 1
        self.expect_batch = 1
        self.ingesting = 0
        self.last_sent = self.last_heard = now
        self.sent_events = 0
        self.announced: Frontier = {}       # our frontier as our hello gave it: the peer asks for up to there
        self.push_held = False              # local changes wait until the peer has asked for what we announced
        self.their_cuts: Frontier = {}      # the peer's truncation points: it holds nothing at or below them
        self.snap_asked = False             # we asked for the peer's snapshot (at most once per connection)
        self.snap_offered = False           # ... and its offer came
        self.snap_in: Incoming | None = None
        self.installing = False
        self.snap_out: Outgoing | None = None
        self.refill: deque = deque()        # ranges whose payloads the peer lacks and we owe it, whole
        self.payloads_asked: tuple = ()     # the missing payloads we last asked the peer for ...
        self.payloads_asked_at = now        # ... and when
        self.payloads_pending = 0           # payload wants we sent that the peer has not finished answering

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The opening move: our hello."""
        self.announced = {} if self.guarded else self.log.frontier()
        return [self._send(Hello(VERSION, self.group, self.me, self.announced, self._cuts()), now)]

    def admit(self, now: float) -> list[Action]:
        """Our roster now admits the peer: show it our whole frontier and serve it like any member."""
        if not self.guarded or self.state == "closed":
            return []
        self.guarded = False
        self.announced = self.log.frontier()
        return [self._send(FrontierMsg(self.announced, self.log.truncated()), now)] + self.local_changed(now)

    def _shown_frontier(self, ours: Frontier | None = None) -> Frontier:
        """Our frontier as we show it: whole; or, guarded, only authors the peer named and no further than it
        holds, so the peer learns nothing of our log it did not claim (yet knows what to send us)."""
        ours = self.log.frontier() if ours is None else ours
        if not self.guarded:
            return ours
        return {a: min(pos, self.theirs[a]) for a, pos in ours.items() if a in self.theirs}

    def _cuts(self) -> Frontier:
        return {} if self.guarded else self.log.truncated()

    def _show(self, now: float) -> list[Action]:
        """Guarded: tell the peer what we hold of the authors it named, when that changed (it then sends)."""
        shown = self._shown_frontier()
        if not self.guarded or shown == self.shown:
            return []
        self.shown = shown
        return [self._send(FrontierMsg(shown, {}), now)]

    def receive(self, msg: Message, now: float) -> list[Action]:
        """A message from the peer."""
        self.last_heard = now
        if self.state == "closed":
            return []
        if isinstance(msg, Hello):
            return self._hello(msg, now)
        if isinstance(msg, (Error, Goodbye)):
            self.state = "closed"
            if isinstance(msg, Error):
                return [Close(f"peer reported {msg.code}: {msg.message}", True)]
            return [Close(f"peer said goodbye: {msg.reason}", False)]
        if self.state == "hello":
            return self._violation(f"{type(msg).__name__.lower()} before hello", now)
        step = self.STEPS.get(type(msg))
        if step is None:
            return self._violation(f"unexpected {type(msg).__name__}", now)
        return step(self, msg, now)

    def ingested(self, batch: int, heads: Frontier, frontier: Frontier, now: float) -> list[Action]:
        """Batch `batch` is stored: `heads` is the newest event per author it held, `frontier` ours now."""
        self.ingesting -= 1
        self.last_heard = max(self.last_heard, now)      # the peer's silence while we stored its batch is ours
        _merge(self.theirs, heads)
        _merge(self.sent, heads)
        for author, pos in list(self.wanted.items()):
            if frontier.get(author, (0, 0)) >= pos:
                del self.wanted[author]
        out = [self._send(Ack(batch, self._shown_frontier(frontier)), now)]
        out += self._flush(now) + self._release(now)
        if not self.guarded and not self.payloads_pending:   # the batch may have left payloads wanted (a
            out += self._ask_payloads(now)                  # header-only relay, a new key); one want in flight
        self._maybe_live()
        return out

    def rejected(self, batch: int, exc: EventError, now: float) -> list[Action]:
        """Batch `batch` failed validation: nothing of it was stored; tell the peer why and close."""
        self.ingesting -= 1
        code = getattr(exc, "check", "event")
        return self._fail(code, f"batch {batch}: {exc}", now)

    def installed(self, frontier: Frontier, now: float) -> list[Action]:
        """The peer's snapshot is installed and `frontier` is ours now: ack its last chunk, re-announce
        our frontier and ask for the events after it."""
        self.installing, chunks, self.snap_in = False, self.snap_in.chunks, None
        self.last_heard = max(self.last_heard, now)
        _merge(self.announced, frontier)
        if self._needs_snapshot():
            return self._fail("snapshot", "the peer's snapshot does not reach its own truncation points", now)
        out = [self._send(SnapshotAck(chunks), now),
               self._send(FrontierMsg(self._shown_frontier(frontier), self._cuts()), now)]
        out += self._catch_up(now) + self._release(now)
        self._maybe_live()
        return out

    def install_failed(self, reason: str, now: float) -> list[Action]:
        """The peer's snapshot did not hold (signature, digest, author): nothing was installed; refuse it."""
        self.installing, self.snap_in = False, None
        return self._fail("snapshot", f"snapshot refused: {reason}", now)

    def snapshot_progress(self) -> tuple[int, int] | None:
        """(state bytes received, bytes offered) while a snapshot arrives, else None."""
        return (self.snap_in.received, self.snap_in.total) if self.snap_in else None

    def local_changed(self, now: float) -> list[Action]:
        """New events are held locally (appended here, or ingested from any peer).

        They are pushed only once the peer holds, or has asked for, everything our hello
        announced: sent before that want is answered, they would arrive ahead of the
        events they follow (a gap in an author's chain, or a clock naming a missing event).
        """
        if self.state not in ("syncing", "live") or self.guarded:
            return []
        asked = self._ask_payloads(now)
        if self._announced_unasked():
            self.push_held = True
            return asked
        self.push_held = False
        ours = self.log.frontier()
        for author, (epoch, seq) in ours.items():
            have = _after(self.sent, author, epoch)
            if have is not None and seq > have:
                self.outbox.owe(author, epoch, have + 1, seq)
                self.sent[author] = (epoch, seq)
        return asked + self._flush(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: send a heartbeat when due; close a peer that went silent."""
        if self.state == "closed":
            return []
        if not self.ingesting and not self.installing and now - self.last_heard >= PARTITION_AFTER * self.heartbeat:
            self.state = "closed"
            return [Close(f"partitioned: nothing heard for {now - self.last_heard:.1f} s", False)]
        if self.state != "hello" and now - self.last_sent >= self.heartbeat:
            out = [self._send(Heartbeat(frontier_digest(self._shown_frontier())), now)]
            return out if self.guarded else out + self._ask_payloads(now)
        return []

    def _ask_payloads(self, now: float) -> list[Action]:
        """Ask the peer again for events we hold without their payload or with damaged signature bytes: when
        the set changed, and again every PAYLOAD_RETRY heartbeats while any remains (the peer may have got
        them meanwhile)."""
        missing = tuple(self.log.withheld())
        if not missing or (missing == self.payloads_asked
                           and now - self.payloads_asked_at < PAYLOAD_RETRY * self.heartbeat):
            self.payloads_asked = missing
            return []
        self.payloads_asked, self.payloads_asked_at = missing, now
        self.payloads_pending += 1
        return [self._send(Want((), missing), now)]

    def _announced_unasked(self) -> bool:
        """Whether the peer has neither asked for nor told us it holds some event our hello announced."""
        return any(_seq(self.sent, author) < seq and self.sent.get(author, (epoch, 0))[0] == epoch
                   for author, (epoch, seq) in self.announced.items())

    def _release(self, now: float) -> list[Action]:
        """Push the local changes held back by `local_changed`, if the peer's want or frontier now allows."""
        return self.local_changed(now) if self.push_held else []

    def deadline(self) -> float:
        """The time by which `tick` must be called next (a peer is not timed out while we store its batch)."""
        return min(self.last_sent + self.heartbeat, self.last_heard + PARTITION_AFTER * self.heartbeat)

    def goodbye(self, reason: str, now: float) -> list[Action]:
        self.state = "closed"
        return [self._send(Goodbye(reason), now), Close(reason, False)]

    def refuse(self, code: str, reason: str, now: float) -> list[Action]:
        """End the connection because the peer may no longer take part (e.g. it was revoked)."""
        return self._fail(code, reason, now)

    # -- steps -------------------------------------------------------------------------------

    def _hello(self, msg: Hello, now: float) -> list[Action]:
        if self.state != "hello":
            return self._violation("a second hello", now)
        if msg.version != VERSION:
            return self._fail("protocol", f"protocol version {msg.version} is not {VERSION}", now)
        if msg.group != self.group:
            return self._fail("group", "hello names another group", now)
        if msg.device != self.peer:
            return self._fail("protocol", "hello names another device than the one authenticated", now)
        self.state = "syncing"
        self.their_cuts = dict(msg.truncated)
        self.theirs = dict(msg.frontier)
        self.sent = dict(msg.frontier)              # what we announced beyond it, the peer will ask for
        if bad := self._cut_past_frontier():
            return self._violation(bad, now)
        out = self._catch_up(now) + self._show(now)
        out += self.local_changed(now)
        self._maybe_live()
        return out

    def _cut_past_frontier(self) -> str | None:
        """What is wrong when a truncation point the peer claims lies past the frontier it shows (it cannot
        have dropped events it never held), else None."""
        for author, cut in sorted(self.their_cuts.items()):
            shown = self.theirs.get(author)
            if shown is None or shown < cut:
                return (f"truncation point of {author.hex()[:16]} at seq {cut[1]} lies past the frontier shown "
                        f"for it ({f'seq {shown[1]}' if shown else 'none'})")
        return None

    def _needs_snapshot(self) -> bool:
        """Whether the peer dropped events of some author that we lack (and would accept); never our own:
        only this device writes them, so no peer can hold one it lacks."""
        ours, limits = self.log.frontier(), self.log.revoked_limits()
        for author, cut in self.their_cuts.items():
            have = ours.get(author)
            if author == self.me:
                continue
            if limits.get(author, cut[1]) > (have[1] if have else 0) and (have is None or have < cut):
                return True
        return False

    def _catch_up(self, now: float) -> list[Action]:
        """Ask for every range the peer holds and we lack (and have not asked for yet); or, when the peer
        truncated events we lack, for its snapshot first."""
        if self.snap_asked and not self._snapshot_settled():
            return []
        if self._needs_snapshot():
            if self.snap_asked:
                return self._fail("snapshot", "the peer truncated events this device lacks, and its snapshot "
                                  "was taken already", now)
            self.snap_asked = True
            return [self._send(SnapshotWant(self._shown_frontier()), now)]
        ours, limits = self.log.frontier(), self.log.revoked_limits()
        ranges = []
        for author, (epoch, seq) in sorted(self.theirs.items()):
            seq = min(seq, limits.get(author, seq))        # a revoked device's later events would be refused
            have = _after(ours, author, epoch)
            if have is not None and seq > have and self.wanted.get(author, (0, 0)) < (epoch, seq):
                ranges.append((author, epoch, have + 1, seq))
                self.wanted[author] = (epoch, seq)
        return [self._send(Want(tuple(ranges)), now)] if ranges else []

    def _snapshot_settled(self) -> bool:
        return self.snap_in is None and not self.installing and self.snap_offered

    def _snapshot_want(self, msg: SnapshotWant, now: float) -> list[Action]:
        if self.guarded:
            return self._fail("snapshot", "this device sends nothing to a device its roster does not know yet", now)
        if self.snap_out is not None:
            return self._violation("a snapshot asked for while one is being sent", now)
        cuts = self.log.truncated()
        if not any(msg.frontier.get(a, (-1, 0)) < cut for a, cut in cuts.items()):
            return self._violation("snapshot asked for, but your frontier is at or past my truncation points", now)
        found = self.log.snapshot()
        if found is None:
            return self._fail("snapshot", "this device has no snapshot to send", now)
        self.snap_out = Outgoing(*found, window=self.window)
        return [self._send(self.snap_out.offer(), now)] + [self._send(c, now) for c in self.snap_out.chunks()]

    def _snapshot_offer(self, msg: SnapshotOffer, now: float) -> list[Action]:
        if not self.snap_asked or self.snap_offered:
            return self._violation("a snapshot offer that was not asked for", now)
        self.snap_offered = True
        self.snap_in = Incoming(msg)
        return self._snapshot_arrived(now)

    def _snapshot_chunk(self, msg: SnapshotChunk, now: float) -> list[Action]:
        if self.snap_in is None or self.installing:
            return self._violation("a snapshot chunk outside a snapshot transfer", now)
        try:
            self.snap_in.take(msg)
        except ProtocolError as exc:
            return self._fail(exc.code, exc.reason, now)
        if not self.snap_in.complete:
            return [self._send(SnapshotAck(self.snap_in.chunks), now)]
        return self._snapshot_arrived(now)

    def _snapshot_arrived(self, now: float) -> list[Action]:
        if not self.snap_in.complete:
            return []
        self.installing = True
        offer = self.snap_in.offer
        return [Install(offer.record, offer.payload, self.snap_in.states(), dict(self.their_cuts))]

    def _snapshot_ack(self, msg: SnapshotAck, now: float) -> list[Action]:
        if self.snap_out is None:
            return self._violation("a snapshot ack with no snapshot being sent", now)
        try:
            self.snap_out.ack(msg.chunk)
        except ProtocolError as exc:
            return self._violation(exc.reason, now)
        if self.snap_out.done:
            self.snap_out = None
            self._maybe_live()
            return []
        return [self._send(c, now) for c in self.snap_out.chunks()]

    def _heartbeat(self, msg: Heartbeat, now: float) -> list[Action]:
        if self.guarded:
            return self._show(now)
        if msg.digest != frontier_digest(self.log.frontier()) and self._idle():
            return [self._send(FrontierMsg(self.log.frontier(), self.log.truncated()), now)]
        return []

    def _frontier(self, msg: FrontierMsg, now: float) -> list[Action]:
        _merge(self.theirs, msg.frontier)
        _merge(self.sent, msg.frontier)
        _merge(self.their_cuts, msg.truncated)
        if bad := self._cut_past_frontier():
            return self._violation(bad, now)
        return self._catch_up(now) + self._show(now) + self._flush(now) + self._release(now)

    def _want(self, msg: Want, now: float) -> list[Action]:
        if msg.payloads:
            if len(self.refill) + len(msg.payloads) > MAX_ENTRIES:
                return self._violation(f"over {MAX_ENTRIES} payload ranges asked for and not yet sent", now)
            if not self.guarded:
                self.refill.extend(msg.payloads)
            self.refill.append(None)                 # the want's end: answered (guarded: with nothing)
        if self.guarded:
            return self._flush(now)                  # ranges skipped, as ranges not held: the peer asks again later
        for author, epoch, lo, hi in msg.ranges:
            self.outbox.owe(author, epoch, lo, hi)
            if _seq(self.sent, author) < hi:
                self.sent[author] = (epoch, hi)
        return self._flush(now) + self._release(now)

    def _events(self, msg: Events, now: float) -> list[Action]:
        if msg.batch != self.expect_batch:
            return self._violation(f"batch {msg.batch} arrived where batch {self.expect_batch} was due", now)
        if self.ingesting >= QUEUED_MAX:
            return self._violation(f"{self.ingesting + 1} batches in flight; the window is {WINDOW}", now)
        if msg.answered > self.payloads_pending:
            return self._violation(f"batch {msg.batch} answers {msg.answered} payload wants; "
                                   f"{self.payloads_pending} are open", now)
        self.payloads_pending -= msg.answered
        self.expect_batch += 1
        self.ingesting += 1
        return [Ingest(msg.batch, msg.events)]

    def _ack(self, msg: Ack, now: float) -> list[Action]:
        if msg.batch not in self.unacked:
            return self._violation(f"ack of batch {msg.batch}, which is not in flight", now)
        _merge(self.theirs, self.unacked.pop(msg.batch))
        _merge(self.theirs, msg.frontier)
        _merge(self.sent, msg.frontier)
        out = self._flush(now) + self._release(now)
        self._maybe_live()
        return out

    def _flush(self, now: float) -> list[Action]:
        """Send owed events in batches while the window allows."""
        out = []
        while len(self.unacked) < self.window and not self.outbox.empty():
            owed = self.outbox.batch(self.batch_events, self.batch_bytes, self.theirs)
            if not owed:
                break
            batch = self.next_batch
            self.next_batch += 1
            self.unacked[batch] = heads_of((a, e, s) for a, e, s, _ in owed)
            self.sent_events += len(owed)
            out.append(self._send(Events(batch, tuple(ev for _, _, _, ev in owed)), now))
        while len(self.unacked) < self.window and self.refill:
            owed, answered = self._refill_batch()
            batch = self.next_batch
            self.next_batch += 1
            self.unacked[batch] = heads_of((a, e, s) for a, e, s, _ in owed)
            out.append(self._send(Events(batch, tuple(ev for _, _, _, ev in owed), answered), now))
        return out

    def _refill_batch(self) -> tuple[list[tuple[bytes, int, int, WireEvent]], int]:
        """The next events whose payloads the peer asked for, whole, as (author, epoch, seq, event), and how
        many payload wants they finish: only events we hold with their payload go. The peer holds their
        headers already, so any order is causal for it."""
        out, size, answered = [], 0, 0
        while self.refill and len(out) < self.batch_events:
            if self.refill[0] is None:                   # the end of one payload want
                self.refill.popleft()
                answered += 1
                continue
            author, epoch, lo, hi = self.refill[0]
            got = self.log.read(author, epoch, lo, hi, min(READ_CHUNK, self.batch_events - len(out)))
            for i, (_, event) in enumerate(got):
                cost = len(event.record) + len(event.payload or b"") + 16
                if out and size + cost > self.batch_bytes:
                    self.refill[0] = (author, epoch, lo + i, hi)
                    return out, answered
                if event.payload is not None:
                    out.append((author, epoch, lo + i, event))
                    size += cost
            if not got or lo + len(got) > hi:
                self.refill.popleft()
            else:
                self.refill[0] = (author, epoch, lo + len(got), hi)
        return out, answered

    def _idle(self) -> bool:
        return (not self.unacked and self.outbox.empty() and not self.refill and not self.payloads_pending
                and not self.ingesting and not self.wanted
                and self.snap_out is None and (not self.snap_asked or self._snapshot_settled()))

    def _maybe_live(self) -> None:
        if self.state == "syncing" and self._idle():
            self.state = "live"

    def _send(self, msg: Message, now: float) -> Send:
        self.last_sent = now
        return Send(msg)

    def _violation(self, what: str, now: float) -> list[Action]:
        return self._fail("protocol", what, now)

    def _fail(self, code: str, message: str, now: float) -> list[Action]:
        self.state = "closed"
        return [self._send(Error(code, message), now), Close(f"{code}: {message}", True)]

    STEPS = {Want: _want, Events: _events, Ack: _ack, Heartbeat: _heartbeat, FrontierMsg: _frontier,
             SnapshotWant: _snapshot_want, SnapshotOffer: _snapshot_offer, SnapshotChunk: _snapshot_chunk,
             SnapshotAck: _snapshot_ack}
    """What each message does once hellos are exchanged (hello, error and goodbye are handled before)."""



def heads_of(events: Iterable[tuple[bytes, int, int]]) -> Frontier:
    """The newest (epoch, seq) per author among (author, epoch, seq) triples."""
    out: Frontier = {}
    for author, epoch, seq in events:
        if out.get(author, (-1, -1)) < (epoch, seq):
            out[author] = (epoch, seq)
    return out
