"""The local store as a relay peer sees it (blocking; run in worker threads): which events the relay lacks,
sealed for it; deliveries opened, deduplicated, reordered and ingested; the stream position this device has
consumed to, and what it knows the relay holds, kept in the store between runs."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from agentlog import crypto
from agentlog.errors import EventError, NotEnrolledError, RelayMessageError, SequenceError, SnapshotError
from agentlog.log.event import Event, decode_record, record_id
from agentlog.log.snapshot import Bundle
from agentlog.log.validate import predecode
from agentlog.relay import envelope
from agentlog.store import compaction, ledger
from agentlog.store.store import Store
from agentlog.sync.peer_log import StoreLog

log = structlog.get_logger("agentlog.sync.relay")

_U32, _CUT = struct.Struct(">I"), struct.Struct(">IQ")
PUBLISH_MAX = 4096          # events sealed and published in one round trip
RUN_EVENTS = 256            # events sealed together in one message, at most
RUN_BYTES = 128 * 1024      # a run's records and payloads, about (one larger event is sealed alone)
HELD_MAX = 4096             # events held for missing predecessors; past it the oldest wait for a redelivery
KEY_TRIES = 3               # deliveries of a message sealed with a relay key not held here before it counts as bad
DONE_KEPT = 65536           # stream sequences dealt with past the cursor that are kept between runs
SAVE_EVERY_S = 1.0          # the consumed position is kept at most this often while consuming (and at the end)
ECHOES_MAX = 1 << 17        # message ids this device published lately, whose deliveries back are not opened
BAD_LOGGED_MAX = 1024       # distinct bad messages remembered so that each is logged once
CARRY_HOLD_S = 1.0          # another device's events are published only when the relay still lacks them this long
CURSOR_META = "relay_cursor "   # + address -> JSON {"stream", "seq", "done": [seq], "has": {author hex: [epoch, seq]}}


def peer_id(address: str) -> bytes:
    """The relay's stable 32-byte id in the ledger and logs: its address, hashed (no device key collides)."""
    return crypto.keyed_blake2b(address.encode(), b"agentlog relay peer", 32)


@dataclass
class Held:
    """One event delivered and opened, waiting to be ingested, with the stream sequences of every delivery that
    holds it (a delivery is acked once every event it holds is dealt with: `RelayLog.deliveries`)."""

    author: bytes
    epoch: int
    seq: int
    lamport: int
    record: bytes
    payload: bytes | None
    key: tuple                                  # (author, epoch, seq, event id, payload): `held`'s
    event: Event | None = None                  # the record as opening it decoded it, with the payload
    seqs: list[int] = field(default_factory=list)


@dataclass
class Outcome:
    """What one batch of deliveries came to: the deliveries to ack and their stream sequences (dealt with), events
    stored here, duplicates, and messages skipped as bad. A delivery in neither waits (held, or for its key)."""

    acks: list = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0


class Cursor:
    """The stream sequence this device has consumed to (`seq`): every message at or before it was stored, found a
    duplicate, skipped as bad, or published from here. Those dealt with past it (`done`: others before them are
    still open) are kept too, so that a later run acks them again without a second look. The relay delivers in
    sequence order the first time, from `seq` + 1: a sequence it passed over (a message removed) is done."""

    HOLE_MAX = 100_000              # a longer run of removed messages is passed over only when nothing is open

    def __init__(self, seq: int, done=()):
        self.seq = self.last = seq
        self.done: set[int] = {s for s in done if s > seq}
        self.open: set[int] = set()

    def delivered(self, seq: int) -> None:
        if seq > self.last:
            if seq - self.last - 1 <= self.HOLE_MAX:
                self.done.update(range(self.last + 1, seq))
            elif not self.open:
                self.seq = max(self.seq, seq - 1)
            self.last = seq
        if seq > self.seq and seq not in self.done:
            self.open.add(seq)
        self._advance()

    def resolved(self, seqs) -> None:
        self.open.difference_update(seqs)
        self.done.update(s for s in seqs if s > self.seq)
        self._advance()

    def _advance(self) -> None:
        while self.seq + 1 in self.done and self.seq + 1 not in self.open:
            self.seq += 1
            self.done.discard(self.seq)

    def kept(self) -> list[int]:
        """What `done` the store keeps (at most DONE_KEPT of it)."""
        return sorted(self.done.copy())[:DONE_KEPT]          # copied at once: the trio thread may add to it


class AckFloor:
    """Which delivery to ack when acking one acks every earlier one in the stream (the consumer's AckAll policy):
    the latest dealt with at or below the cursor, so a delivery still open (held for its predecessors, or
    waiting for its key) is not acked and comes again after the ack wait. When more than `slack` deliveries
    dealt with wait above an open one, the latest of them is acked anyway, or the relay would stop delivering
    at its limit of deliveries awaiting an ack: those still open stay open in the cursor, and come again in the
    next session (it consumes from the cursor)."""

    def __init__(self, slack: int):
        self.slack = slack
        self.waiting: dict[int, object] = {}         # stream sequence -> handle: dealt with, not acked yet

    def settle(self, done: Iterable[tuple[int, object]], floor: int) -> object | None:
        """Take deliveries dealt with, (stream sequence, handle); the handle to ack now, or None."""
        waiting = self.waiting
        waiting.update(done)
        below = [seq for seq in waiting if seq <= floor]
        if len(waiting) - len(below) > self.slack:
            below = list(waiting)
        if not below:
            return None
        handle = waiting[max(below)]
        for seq in below:
            del waiting[seq]
        return handle


class RelayLog:
    """One store's side of one relay: `unpublished` to seal what the relay lacks, `absorb` to ingest deliveries."""

    def __init__(self, store: Store, address: str):
        self.store, self.address = store, address
        self.id = peer_id(address)
        self.group = store.group
        self.snapshot_subject = envelope.snapshot_subject(self.group)
        self.stream = envelope.stream_name(self.group)
        self.held: dict[tuple, Held] = {}
        self.deliveries: dict[int, list] = {}        # stream seq -> [handle, its events still held]
        self.bad_logged: dict[tuple[str, int], None] = {}
        self.no_key_logged = False
        self.echoes: dict[str, None] = {}
        self.there_id: tuple[bytes | None, bytes] | None = None   # (relay's snapshot message, the id it holds)
        self.too_large: bytes | None = None                         # the base snapshot the relay would not take
        self.saved_at = 0.0
        self.lacking_since: dict[bytes, float] = {}   # another author -> when the relay was first seen to lack some
        self.carried_waiting = False                  # the last `unpublished` held back carried events
        saved = self._load()
        same = saved.get("stream") == self.stream
        self.cursor = Cursor(saved.get("seq", 0), saved.get("done", [])) if same else Cursor(0)
        self.has: dict[bytes, tuple[int, int]] = {bytes.fromhex(a): tuple(v) for a, v in saved.get("has", {}).items()}

    # -- kept between runs ---------------------------------------------------------------------------

    def _load(self) -> dict:
        raw = self.store.meta(CURSOR_META + self.address)
        try:
            doc = json.loads(bytes(raw)) if raw else {}
        except ValueError:
            doc = {}
        return doc if isinstance(doc, dict) else {}

    def save(self) -> None:
        raw = self._kept()
        if raw != self.store.meta(CURSOR_META + self.address):
            self.store.set_meta({CURSOR_META + self.address: raw})

    def _kept(self) -> bytes:
        """The consumed position and what the relay holds, as the store keeps them (now)."""
        self.saved_at = time.monotonic()
        doc = {"stream": self.stream, "seq": self.cursor.seq, "done": self.cursor.kept(),
               "has": {a.hex(): list(pos) for a, pos in sorted(dict(self.has).items())}}
        return json.dumps(doc, sort_keys=True).encode()

    def relay_lost(self) -> None:
        """The relay holds less than this device consumed (its stream was made anew): start over, publish all."""
        self.cursor = Cursor(0)
        self.has.clear()

    # -- publishing ----------------------------------------------------------------------------------

    def behind(self) -> int:
        """Events this device holds that it does not know the relay to hold."""
        limits = self.store.revoked_limits()
        total = 0
        for author, head in self.store.heads().items():
            epoch, seq = self.has.get(author, (head.epoch, 0))
            top = min(head.seq, limits.get(author, head.seq))
            total += max(0, top - (seq if epoch == head.epoch else 0))
        return total

    def unpublished(self, max_payload: int = 1 << 20, hold_carried: float = 0.0
                    ) -> list[tuple[envelope.Sealed, list[tuple[bytes, int, int]], list[bytes]]]:
        """Up to PUBLISH_MAX events the relay lacks, in causal order, sealed in runs (each one author's consecutive
        events under one sealing key, at most RUN_EVENTS of them and about RUN_BYTES, or half the largest message
        the relay takes): (sealed, [(author, epoch, seq)], [record]) per message. None of them when this device
        holds no relay key yet (logged once). With `hold_carried` (seconds), another device's events are left
        out until the relay has lacked them that long: their author, when it reaches the relay, publishes them
        first, and the relay holds each event once (`carried_waiting` says some were left out)."""
        keys = self.store.relay_keys()
        if keys.current is None:
            if not self.no_key_logged:
                self.no_key_logged = True
                log.warning("relay: nothing published: this device holds no relay key yet", relay=self.address)
            return []
        self.no_key_logged = False
        limits, truncated = self.store.revoked_limits(), self.store.truncated()
        found, now, me = [], time.monotonic(), self.store.device
        self.carried_waiting = False
        for author, head in self.store.heads().items():
            epoch, seq = self.has.get(author, (head.epoch, 0))
            lo, hi = (seq + 1 if epoch == head.epoch else 1), min(head.seq, limits.get(author, head.seq))
            cut = truncated.get(author)
            if cut is not None and cut.epoch == head.epoch:
                lo = max(lo, cut.seq + 1)
            if lo > hi:
                self.lacking_since.pop(author, None)
                continue
            if hold_carried and author != me and now - self.lacking_since.setdefault(author, now) < hold_carried:
                self.carried_waiting = True
                continue
            rows = self.store.read_range(author, head.epoch, lo, hi, PUBLISH_MAX)
            found.extend((lamport, author, lo + i, head.epoch, record, payload)
                         for i, (lamport, record, payload) in enumerate(rows))
        found.sort(key=lambda r: (r[0], r[1], r[2]))
        runs: list[list] = []
        run_bytes = min(RUN_BYTES, max_payload // 2)
        for _, author, seq, epoch, record, payload in found[:PUBLISH_MAX]:
            eid = record_id(record)
            kid, size = keys.sealing_key(eid), len(record) + len(payload or b"")
            run = runs[-1] if runs else None
            if (run is None or run[0] != (author, epoch, kid) or run[2][-1][2] != seq - 1
                    or len(run[2]) >= RUN_EVENTS or run[1] + size > run_bytes):
                run = [(author, epoch, kid), 0, [], [], []]
                runs.append(run)
            run[1] += size
            run[2].append((author, epoch, seq))
            run[3].append(eid)
            run[4].append((record, payload))
        out = [(envelope.seal_run(keys, self.group, author, ids, events, kid), positions,
                [record for record, _ in events])
               for (author, _, kid), _, positions, ids, events in runs]
        self._echoes(sealed.msg_id for sealed, _, _ in out)     # before the relay can deliver them back
        return out

    def _echoes(self, msg_ids) -> None:
        """Remember ids of events sealed here: their deliveries back need no opening (this device holds them)."""
        self.echoes.update(dict.fromkeys(msg_ids))
        while len(self.echoes) > ECHOES_MAX:
            self.echoes.pop(next(iter(self.echoes)))

    def published(self, positions: list[tuple[bytes, int, int]], records: list[bytes]) -> None:
        """The relay acknowledged these events: remember it, enter them in the ledger, keep both (one commit)."""
        for author, epoch, seq in positions:
            self._relay_has(author, epoch, seq)
        ledger.Ledger(self.store).record_sent(self.id, [(time.time_ns() // 1_000_000, records)],
                                              {CURSOR_META + self.address: self._kept()})

    def _relay_has(self, author: bytes, epoch: int, seq: int) -> None:
        if (epoch, seq) > self.has.get(author, (0, 0)):
            self.has[author] = (epoch, seq)

    # -- snapshots ----------------------------------------------------------------------------------

    def snapshot_to_publish(self, there: bytes | None, max_bytes: int) -> envelope.Sealed | None:
        """This store's base snapshot sealed for the snapshot subject, with its views' state and truncation
        points, when the relay does not hold it (`there`: the relay's last snapshot message); None otherwise, and
        when it is larger than the relay takes (logged). Cheap when nothing changed: the base's id decides."""
        base = self.store.meta("base")
        keys = self.store.relay_keys()
        if base is None or keys.current is None or bytes(base) in (self._there(keys, there), self.too_large):
            return None
        bundle = compaction.base_bundle(self.store)
        cuts = StoreLog(self.store).truncated()
        sealed = envelope.seal(keys, self.group, bundle.record, _frame(bundle.payload, bundle.parts(), cuts),
                               snapshot=True)
        if len(sealed.body) > max_bytes:
            log.warning("relay: snapshot not published: larger than the relay takes", relay=self.address,
                        size=len(sealed.body), limit=max_bytes)
            self.too_large = bytes(base)                   # not again for this base
            return None
        return sealed._replace(msg_id=sealed.msg_id + "-snapshot")      # apart from the snapshot event's own

    def _there(self, keys, there: bytes | None) -> bytes | None:
        """The id of the snapshot the relay's last snapshot message holds (remembered per message)."""
        if there is None:
            return None
        if self.there_id is None or self.there_id[0] is not there:
            try:
                record, _ = envelope.open(keys, self.group, self.snapshot_subject, there)
                self.there_id = (there, decode_record(record).id)
            except (RelayMessageError, EventError):
                self.there_id = (there, b"")
        return self.there_id[1]

    def install(self, body: bytes) -> bool:
        """Start this store from the relay's snapshot message when it covers events this store lacks
        (compaction.bootstrap checks it); whether it did. One that does not open or hold is logged, not installed."""
        try:
            record, frame = envelope.open(self.store.relay_keys(), self.group, self.snapshot_subject, body)
            payload, states, cuts = _unframe(frame)
            bundle = Bundle.from_parts(record, payload, states)
            heads = self.store.heads()
            if all((heads[p.author].epoch, heads[p.author].seq) >= (p.epoch, p.seq) if p.author in heads else False
                   for p in bundle.snapshot().frontier):
                return False
            compaction.bootstrap(self.store, bundle, cuts)
        except (RelayMessageError, SnapshotError, EventError, ValueError) as exc:
            log.warning("relay: snapshot not installed", relay=self.address, reason=str(exc))
            return False
        return True

    # -- consuming -----------------------------------------------------------------------------------

    def absorb(self, deliveries: list) -> Outcome:
        """Open, deduplicate and ingest a batch of deliveries with what is held from before; an event whose
        predecessors are missing is held (unacked); a message that does not open or holds an invalid event is
        skipped, logged once, and acked. Keeps the cursor and what the relay holds (after the store
        committed) at most every SAVE_EVERY_S. A delivery dealt with before, or sent from here, is acked unopened."""
        out = Outcome()
        keys = self.store.relay_keys()
        waiting = self._take(deliveries, keys, out)
        if self.held:
            self._ingest(out)
        while waiting:                  # a key ingested just now (a rotation) opens those sealed with it: again
            fresh = self.store.relay_keys()
            if set(fresh) <= set(keys):
                break
            keys = fresh
            waiting = self._take([d for d, _ in waiting], keys, out)
            if self.held:
                self._ingest(out)
        for d, exc in waiting:          # its key may come with an event still on its way (or any key): wait
            if d.delivered >= KEY_TRIES and keys:
                self._skip(out, d, exc)
        if time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save()
        return out

    def _take(self, deliveries: list, keys, out: Outcome) -> list:
        """Open and hold (or ack) each delivery; returns those sealed with a relay key not held here, with why."""
        heads = self.store.heads()
        waiting = []
        for d in deliveries:
            seq = d.stream_seq
            if seq <= self.cursor.seq or seq in self.cursor.done or d.msg_id in self.echoes \
                    or d.subject == self.snapshot_subject:      # a snapshot is for a device back after retention
                out.acks.append(d.handle)
                out.done.append(seq)
                continue
            try:
                opened = envelope.open_events(keys, self.group, d.subject, d.body)
            except RelayMessageError as exc:
                if exc.code == "key":
                    waiting.append((d, exc))
                    continue
                self._skip(out, d, exc)
                continue
            entry = self.deliveries.get(seq)
            fresh = entry is None                   # else delivered again while its events are held: counted
            left = 0
            for record, payload, event in opened:
                h = event.header
                author, epoch, eseq = h.author, h.epoch, h.seq
                self._relay_has(author, epoch, eseq)
                head = heads.get(author)
                if head is not None and (head.epoch, head.seq) >= (epoch, eseq):
                    out.duplicates += 1
                    continue
                key = (author, epoch, eseq, event.id, payload)       # a forged copy kept apart
                held = self.held.get(key)
                if held is None:
                    held = self.held[key] = Held(author, epoch, eseq, h.lamport, record, payload, key, event)
                if seq not in held.seqs:
                    held.seqs.append(seq)
                elif not fresh:
                    continue
                left += 1
            if not fresh:
                entry[0] = d.handle
                entry[1] += left
            elif left:
                self.deliveries[seq] = [d.handle, left]
            else:
                out.acks.append(d.handle)
                out.done.append(seq)
        return waiting

    def _release(self, held: Held, out: Outcome) -> None:
        """An event is dealt with: ack each delivery holding it whose events are all dealt with now."""
        for seq in held.seqs:
            entry = self.deliveries.get(seq)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self.deliveries[seq]
                    out.acks.append(entry[0])
                    out.done.append(seq)

    def _ingest(self, out: Outcome) -> None:
        """Ingest the held events that continue their author's chain here, in causal order, in one transaction;
        when a check refuses one, that event is dropped (invalid) or its author's run waits (its predecessors
        are missing), and the rest go again (a batch is ingested whole or not at all)."""
        blocked: set[bytes] = set()
        single = False
        while todo := _ready(self.held.values(), self.store.heads(), blocked):
            todo = todo[:1] if single else todo
            try:
                result = self.store.ingest([predecode(h.record, h.payload, h.event) for h in todo],
                                           every_signature=False, source=self.id)
            except EventError as exc:
                culprit = next((h for h in todo if (h.author, h.seq) == (exc.author, exc.seq)), None)
                if culprit is None and len(todo) == 1:
                    culprit = todo[0]
                if culprit is None:                         # the check names no event: go one by one
                    single = True
                elif isinstance(exc, (SequenceError, NotEnrolledError)):
                    blocked.add(culprit.author)
                else:
                    del self.held[culprit.key]
                    subject = envelope.subject(self.group, culprit.author)
                    for seq in culprit.seqs:
                        self._bad(out, seq, subject, str(exc), exc.check)
                    self._release(culprit, out)
                continue
            out.accepted += result.accepted + result.filled + result.healed
            for h in todo:
                del self.held[h.key]
                self._release(h, out)
        heads = self.store.heads()
        for key, h in list(self.held.items()):                # another copy of an event now stored
            head = heads.get(h.author)
            if head is not None and (head.epoch, head.seq) >= (h.epoch, h.seq):
                del self.held[key]
                self._release(h, out)
                out.duplicates += len(h.seqs)
        while len(self.held) > HELD_MAX:            # the oldest wait for their redelivery, and so do theirs
            for seq in self.held.pop(next(iter(self.held))).seqs:
                self.deliveries.pop(seq, None)

    def _skip(self, out: Outcome, d, exc: RelayMessageError) -> None:
        """Skip a delivery that does not open or holds an invalid event: ack it, count it, log it once."""
        self._bad(out, d.stream_seq, d.subject, exc.reason, exc.code)
        out.acks.append(d.handle)
        out.done.append(d.stream_seq)

    def _bad(self, out: Outcome, seq: int, subject: str, reason: str, code: str) -> None:
        """Skip a message (or the event of a run that fails ingest's checks): count it, and log it the first time
        it is seen. Its caller acks it."""
        out.bad += 1
        if (subject, seq) not in self.bad_logged:
            self.bad_logged[(subject, seq)] = None
            if len(self.bad_logged) > BAD_LOGGED_MAX:
                self.bad_logged.pop(next(iter(self.bad_logged)))
            log.warning("relay: message skipped", relay=self.address, stream_seq=seq, subject=subject, check=code,
                        reason=reason)


def _frame(payload: bytes, states: dict[str, bytes], cuts: dict[bytes, tuple[int, int]]) -> bytes:
    """A snapshot's payload, named parts (the views' states, and the kept events when there are any) and
    truncation points as one sealed body holds them."""
    out = [_U32.pack(len(payload)), payload, _U32.pack(len(states))]
    for name, state in sorted(states.items()):
        raw = name.encode()
        out += [_U32.pack(len(raw)), raw, _U32.pack(len(state)), state]
    out.append(_U32.pack(len(cuts)))
    out += [author + _CUT.pack(epoch, seq) for author, (epoch, seq) in sorted(cuts.items())]
    return b"".join(out)


def _unframe(frame: bytes) -> tuple[bytes, dict[str, bytes], dict[bytes, tuple[int, int]]]:
    """`_frame` undone; ValueError naming what is wrong."""
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        if n < 0 or at + n > len(frame):
            raise ValueError("snapshot frame ends early")
        at += n
        return frame[at - n : at]

    def number() -> int:
        return _U32.unpack(take(4))[0]

    payload = take(number())
    states = {take(number()).decode("utf-8", "replace"): take(number()) for _ in range(number())}
    cuts = {}
    for _ in range(number()):
        author = take(32)
        cuts[author] = _CUT.unpack(take(_CUT.size))
    if at != len(frame):
        raise ValueError("snapshot frame has bytes after its truncation points")
    return payload, states, cuts


def _ready(held, heads: dict, blocked: set[bytes]) -> list[Held]:
    """Of the held events, those that continue their author's chain here without a gap (an author unknown here,
    or in another epoch, from its first held event), in causal order."""
    runs: dict[tuple[bytes, int], list[Held]] = {}
    for h in held:
        if h.author not in blocked:
            runs.setdefault((h.author, h.epoch), []).append(h)
    out = []
    for (author, epoch), items in runs.items():
        items.sort(key=lambda h: h.seq)
        head = heads.get(author)
        want = head.seq + 1 if head is not None and head.epoch == epoch else items[0].seq
        for h in items:
            if h.seq == want - 1 and out and out[-1].seq == h.seq:
                continue                                    # another copy of the one taken: tried if it fails
            if h.seq != want:
                break
            out.append(h)
            want += 1
    out.sort(key=lambda h: (h.lamport, h.author, h.seq))
    return out
