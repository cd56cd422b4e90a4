"""The local store as a relay peer sees it (blocking; run in worker threads): which events the relay lacks,
sealed for it; deliveries opened, deduplicated, reordered and ingested; the stream position this device has
consumed to, and what it knows the relay holds, kept in the store between runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import structlog

from agentlog import crypto
from agentlog.errors import EventError, NotEnrolledError, RelayMessageError, SequenceError
from agentlog.log.event import peek_record
from agentlog.relay import envelope
from agentlog.store import ledger
from agentlog.store.store import Store

log = structlog.get_logger("agentlog.sync.relay")

PUBLISH_MAX = 4096          # events sealed and published in one round trip
HELD_MAX = 4096             # events held for missing predecessors; past it the oldest wait for a redelivery
KEY_TRIES = 3               # deliveries of a message sealed with a relay key not held here before it counts as bad
DONE_KEPT = 65536           # stream sequences dealt with past the cursor that are kept between runs
BAD_LOGGED_MAX = 1024       # distinct bad messages remembered so that each is logged once
CURSOR_META = "relay_cursor "   # + address -> JSON {"stream", "seq", "done": [seq], "has": {author hex: [epoch, seq]}}


def peer_id(address: str) -> bytes:
    """The relay's stable 32-byte id in the ledger and logs: its address, hashed (no device key collides)."""
    return crypto.keyed_blake2b(address.encode(), b"agentlog relay peer", 32)


@dataclass
class Held:
    """One event delivered and opened, waiting to be ingested, with every delivery of it (to ack them all)."""

    author: bytes
    epoch: int
    seq: int
    lamport: int
    record: bytes
    payload: bytes | None
    handles: list = field(default_factory=list)

    @property
    def key(self) -> tuple[bytes, int, int, bytes]:
        return self.author, self.epoch, self.seq, crypto.blake2b256(self.record + (self.payload or b""))
    seqs: list[int] = field(default_factory=list)


@dataclass
class Outcome:
    """What one batch of deliveries came to: deliveries to ack (with their stream sequences), those left unacked
    for a redelivery, events stored here, and whether a snapshot message was seen."""

    acks: list = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0


class Cursor:
    """The stream sequence this device has consumed to (`seq`): every message at or before it was stored, found a
    duplicate, or skipped as bad. Those dealt with past it (`done`: others before them are still open) are kept
    too, so that a later run acks them again without a second look. The stream delivers in sequence order the
    first time: a sequence it skipped (a message removed) counts as dealt with."""

    HOLE_MAX = 100_000              # a longer run of removed messages, below open ones, is left for a later run

    def __init__(self, seq: int, done=()):
        self.seq = seq
        self.done: set[int] = {s for s in done if s > seq}
        self.top = max([seq, *self.done])
        self.open: set[int] = set()

    def delivered(self, seq: int) -> None:
        if seq > self.top:
            if not self.open and self.seq == self.top:
                self.seq = self.top = seq - 1
            elif seq - self.top <= self.HOLE_MAX:
                self.done.update(range(self.top + 1, seq))
            self.top = seq
        if seq > self.seq and seq not in self.done:
            self.open.add(seq)

    def resolved(self, seqs) -> None:
        self.open.difference_update(seqs)
        self.done.update(s for s in seqs if s > self.seq)
        while self.seq + 1 in self.done and self.seq + 1 not in self.open:
            self.seq += 1
            self.done.discard(self.seq)

    def kept(self) -> list[int]:
        """What `done` the store keeps (at most DONE_KEPT of it)."""
        return sorted(self.done.copy())[:DONE_KEPT]          # copied at once: the trio thread may add to it


class RelayLog:
    """One store's side of one relay: `unpublished` to seal what the relay lacks, `absorb` to ingest deliveries."""

    def __init__(self, store: Store, address: str):
        self.store, self.address = store, address
        self.id = peer_id(address)
        self.group = store.group
        self.snapshot_subject = envelope.snapshot_subject(self.group)
        self.stream = envelope.stream_name(self.group)
        self.held: dict[tuple[bytes, int, int, bytes], Held] = {}
        self.bad_logged: dict[tuple[str, int], None] = {}
        self.no_key_logged = False
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
        doc = {"stream": self.stream, "seq": self.cursor.seq, "done": self.cursor.kept(),
               "has": {a.hex(): list(pos) for a, pos in sorted(dict(self.has).items())}}
        raw = json.dumps(doc, sort_keys=True).encode()
        if raw != self.store.meta(CURSOR_META + self.address):
            self.store.set_meta({CURSOR_META + self.address: raw})

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

    def unpublished(self) -> list[tuple[envelope.Sealed, tuple[bytes, int, int], bytes]]:
        """Up to PUBLISH_MAX events the relay lacks, in causal order, sealed: (sealed, (author, epoch, seq), record).
        None of them when this device holds no relay key yet (logged once)."""
        keys = self.store.relay_keys()
        if keys.current is None:
            if not self.no_key_logged:
                self.no_key_logged = True
                log.warning("relay: nothing published: this device holds no relay key yet", relay=self.address)
            return []
        self.no_key_logged = False
        limits, truncated = self.store.revoked_limits(), self.store.truncated()
        found = []
        for author, head in self.store.heads().items():
            epoch, seq = self.has.get(author, (head.epoch, 0))
            lo, hi = (seq + 1 if epoch == head.epoch else 1), min(head.seq, limits.get(author, head.seq))
            cut = truncated.get(author)
            if cut is not None and cut.epoch == head.epoch:
                lo = max(lo, cut.seq + 1)
            if lo > hi:
                continue
            rows = self.store.read_range(author, head.epoch, lo, hi, PUBLISH_MAX)
            found.extend((lamport, author, lo + i, head.epoch, record, payload)
                         for i, (lamport, record, payload) in enumerate(rows))
        found.sort(key=lambda r: (r[0], r[1], r[2]))
        return [(envelope.seal(keys, self.group, record, payload), (author, epoch, seq), record)
                for _, author, seq, epoch, record, payload in found[:PUBLISH_MAX]]

    def published(self, positions: list[tuple[bytes, int, int]], records: list[bytes]) -> None:
        """The relay acknowledged these events: remember it, enter them in the ledger, keep both."""
        for author, epoch, seq in positions:
            self._relay_has(author, epoch, seq)
        ledger.Ledger(self.store).record_sent(self.id, [(time.time_ns() // 1_000_000, records)])
        self.save()

    def _relay_has(self, author: bytes, epoch: int, seq: int) -> None:
        if (epoch, seq) > self.has.get(author, (0, 0)):
            self.has[author] = (epoch, seq)

    # -- consuming -----------------------------------------------------------------------------------

    def absorb(self, deliveries: list) -> Outcome:
        """Open, deduplicate and ingest a batch of deliveries with what is held from before; an event whose
        predecessors are missing is held (unacked); a message that does not open or holds an invalid event is
        skipped, logged once, and acked. Saves the cursor and what the relay holds after the store committed."""
        out = Outcome()
        keys = self.store.relay_keys()
        heads = self.store.heads()
        for d in deliveries:
            if d.stream_seq in self.cursor.done:           # dealt with before: stored, a duplicate, or bad
                out.acks.append(d.handle)
                out.done.append(d.stream_seq)
                continue
            if d.subject == self.snapshot_subject:
                self._bad(out, d.handle, d.stream_seq, d.subject, "snapshots through the relay are not installed "
                          "yet", "snapshot")
                continue
            try:
                record, payload = envelope.open(keys, self.group, d.subject, d.body)
            except RelayMessageError as exc:
                if exc.code == "key" and d.delivered < KEY_TRIES:
                    continue                    # its key may come with an event still on its way: wait
                self._bad(out, d.handle, d.stream_seq, d.subject, exc.reason, exc.code)
                continue
            (author, epoch, seq), = ledger.positions([record])  # envelope.open decoded the whole record
            self._relay_has(author, epoch, seq)
            head = heads.get(author)
            if head is not None and (head.epoch, head.seq) >= (epoch, seq):
                out.acks.append(d.handle)
                out.done.append(d.stream_seq)
                out.duplicates += 1
                continue
            key = (author, epoch, seq, crypto.blake2b256(record + (payload or b"")))   # a forged copy apart
            held = self.held.get(key)
            if held is None:
                held = self.held[key] = Held(author, epoch, seq, peek_record(record)[0], record, payload)
            held.handles.append(d.handle)
            held.seqs.append(d.stream_seq)
        if self.held:
            self._ingest(out)
        self.save()
        return out

    def _ingest(self, out: Outcome) -> None:
        """Ingest the held events that continue their author's chain here, in causal order, in one transaction;
        when a check refuses one, that event is dropped (invalid) or its author's run waits (its predecessors
        are missing), and the rest go again (a batch is ingested whole or not at all)."""
        blocked: set[bytes] = set()
        single = False
        while todo := _ready(self.held.values(), self.store.heads(), blocked):
            todo = todo[:1] if single else todo
            try:
                result = self.store.ingest([(h.record, h.payload) for h in todo], every_signature=False,
                                           source=self.id)
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
                    for handle, seq in zip(culprit.handles, culprit.seqs, strict=True):
                        self._bad(out, handle, seq, subject, str(exc), exc.check)
                continue
            out.accepted += result.accepted + result.filled + result.healed
            for h in todo:
                del self.held[h.key]
                out.acks.extend(h.handles)
                out.done.extend(h.seqs)
        heads = self.store.heads()
        for key, h in list(self.held.items()):                # another copy of an event now stored
            head = heads.get(h.author)
            if head is not None and (head.epoch, head.seq) >= (h.epoch, h.seq):
                del self.held[key]
                out.acks.extend(h.handles)
                out.done.extend(h.seqs)
                out.duplicates += len(h.handles)
        while len(self.held) > HELD_MAX:                     # the oldest wait for their redelivery
            self.held.pop(next(iter(self.held)))

    def _bad(self, out: Outcome, handle, seq: int, subject: str, reason: str, code: str) -> None:
        """Skip a message: ack it, count it, and log it the first time it is seen."""
        out.acks.append(handle)
        out.done.append(seq)
        out.bad += 1
        if (subject, seq) not in self.bad_logged:
            self.bad_logged[(subject, seq)] = None
            if len(self.bad_logged) > BAD_LOGGED_MAX:
                self.bad_logged.pop(next(iter(self.bad_logged)))
            log.warning("relay: message skipped", relay=self.address, stream_seq=seq, subject=subject, check=code,
                        reason=reason)


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
