"""A rogue peer for property tests: an enrolled device that says whatever hypothesis draws.

The rogue is a properly enrolled device of the group (its own key, joined by token), played by
the test process: it passes the handshake (net.connect_channel) and then sends, to a real
`agentlog serve`, a drawn `Session`:

- protocol messages in any order and any number: hello, want, events, ack, heartbeat, frontier,
  error, goodbye and the snapshot messages, each field at the edges of its range (0, 1, 2^31-1,
  2^32, 2^63-1, 2^64-1, negative where signed), packed lists empty, malformed or of 4,096+
  entries, texts empty, long or full of control characters, and whole messages with bytes flipped;
- events signed by its own key (`RogueEvent`) with header fields at their edges (seq, epoch,
  lamport, time; prev right or wrong; clock entries naming unknown authors or huge seqs; odd
  scopes and kinds; payload length and hash right or not; payload withheld), with payloads that
  decode or not and whose fields are extreme (confidences, weights, half-lives, long content,
  thousands of tags), roster events included (enrolling a stranger, revoking itself or a key
  nobody enrolled; never an honest device, which any member may do by design);
- events of the honest devices replayed, withheld or altered (`Replay`);
- a snapshot it signed (`Offer`), after a hello claiming truncation points the laptop lies below,
  so that the laptop asks for it: covering honest authors past their heads, wiping the views;
- a little frame-level abuse (`RawFrame`, `Plain`): lengths out of range, truncated frames,
  undecryptable bodies, unknown flags, a compression bomb;
- after its steps, hanging up or holding the connection open while the honest devices are
  checked: still reading, no longer reading, or in the middle of a frame (`Session.linger`).

Everything is symbolic until `build` resolves it against the live world (`Context`: the keys
and events the honest devices hold now), so hypothesis prints a readable, reproducible example.
Valid-shaped bytes come from the project's own encoders (event.encode_header, messages.encode,
payloads.encode); where an encoder refuses a value, the Cap'n Proto bytes are built with pycapnp
from the schemas directly.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

import trio
from hypothesis import strategies as st

from agentlog import crypto
from agentlog.codec.schema import payloads as payload_schema
from agentlog.crypto import DeviceKey
from agentlog.errors import PeerError
from agentlog.log import payloads, snapshot
from agentlog.log.event import ClockEntry, Event, Header, encode_header
from agentlog.sync import messages, net
from agentlog.sync.handshake import FLAG_COMPRESSED

U8, U16, U32, U64 = (0, 2**8 - 1), (0, 2**16 - 1), (0, 2**32 - 1), (0, 2**64 - 1)
I64 = (-(2**63), 2**63 - 1)
EDGES = (0, 1, 2, 10_000, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
         2**64 - 1, -1, -(2**31), -(2**63))



@dataclass(frozen=True)
class Big:
    """`unit` repeated `n` times, built only when sent (so that a printed example stays short)."""

    unit: str | bytes
    n: int


ODD_TEXTS = ("", "user", Big("x", 300), "\x00", "\x1b[2J\x1b[31mred\x1b[0m", 'line\n{"event": "forged log line"}\r\n',
             "\u202etxt.exe", "\u200b\ufeff", Big("é", 5000), "%s%n{0}", Big("a", 100_000), Big("\n", 10_000))
NAMES = ("laptop", "phone", "rogue", "stranger", "zero", "ones")
"""Symbolic device keys: the honest pair, the rogue, a key nobody enrolled, all-zero and all-0xff bytes."""
NOT_HONEST = NAMES[2:]
"""What the rogue may revoke. Not the honest pair: any enrolled device may revoke any other (docs/threat-model.md,
membership is flat), and a revoked device is meant to be shut out, so that is no failure to look for."""

STEP_WAIT = 0.05                 # seconds the rogue listens after each step before the next one
SETTLE = 0.5                     # seconds it listens after its last step before hanging up


def edge_ints(lo_hi: tuple[int, int]) -> st.SearchStrategy[int]:
    """Integers of a range, the edges (and a few famous values inside it) drawn often."""
    lo, hi = lo_hi
    edges = sorted({v for v in (*EDGES, lo, hi, lo + 1, hi - 1) if lo <= v <= hi})
    return st.sampled_from(edges) | st.integers(lo, hi)


def texts(long: bool = True) -> st.SearchStrategy[str]:
    odd = ODD_TEXTS if long else tuple(t for t in ODD_TEXTS if not isinstance(t, Big) or t.n < 1000)
    return st.sampled_from(odd) | st.text(max_size=30)


def blobs(max_size: int = 48) -> st.SearchStrategy[bytes]:
    return st.sampled_from((b"", bytes(16), bytes(32), b"\xff" * 32)) | st.binary(max_size=max_size)


# -- symbolic values ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tags:
    """`n` distinct tags, built only when sent."""

    n: int


@dataclass(frozen=True)
class Sym:
    """A value only the live world knows: "group" (the group id) or "batch" (the next batch number)."""

    name: str


@dataclass(frozen=True)
class Key:
    """A device key by its symbolic name (NAMES) or number."""

    name: str | int


@dataclass
class Context:
    """What `build` resolves symbols against: the world as it is when the session starts."""

    keys: dict[str, bytes]                    # NAMES -> 32-byte device key
    rogue: DeviceKey
    stranger: DeviceKey
    group: bytes
    anchor: Event                             # the rogue's enrolment (its seq 1 must have seen it)
    honest: list[Event]                       # events the laptop holds, for replays
    head: tuple[int, bytes, int]  # the rogue's chain on the laptop: (seq, id, lamport); (0, zero, lamport)
    heads: dict[bytes, tuple[int, int, bytes]] = field(default_factory=dict)  # the laptop's: author -> (epoch, seq, id)
    roster: bytes = b""                       # the laptop's roster state (canonical JSON), for a snapshot's roster view
    epoch: int = 0                            # the epoch of the rogue's head on the laptop
    batch: int = 0

    def value(self, v):
        """`v` with Sym and Key resolved, in tuples and lists too."""
        if isinstance(v, Big):
            return v.unit * v.n
        if isinstance(v, Tags):
            return tuple(f"t{i}" for i in range(v.n))
        if isinstance(v, Key):
            return self.author(v.name)
        if v == Sym("group"):
            return self.group
        if v == Sym("batch"):
            self.batch += 1
            return self.batch
        if isinstance(v, (tuple, list)):
            return type(v)(self.value(x) for x in v)
        return v

    def author(self, name: str | int) -> bytes:
        """A symbolic author: a NAMES entry, or a number for one of many made-up keys."""
        if isinstance(name, int):
            return hashlib.blake2b(name.to_bytes(4, "big"), digest_size=32).digest()
        return self.keys[name]


@dataclass(frozen=True)
class Entries:
    """A packed frontier (to is None) or range list: entries of (author, epoch, seq or from, to)."""

    entries: tuple[tuple[str | int, int, int, int | None], ...]
    sort: bool = True
    many: int = 0                             # made-up distinct authors appended (huge lists)
    tail: bytes = b""                         # trailing bytes that break the record length

    def build(self, ctx: Context, ranges: bool) -> bytes:
        rows = [(ctx.author(a), e, s, t) for a, e, s, t in self.entries]
        rows += [(ctx.author(i), 0, 1, 1) for i in range(self.many)]
        if self.sort:
            rows.sort(key=lambda r: r[0])
        fmt = ">IQQ" if ranges else ">IQ"
        out = b"".join(a + struct.pack(fmt, *((e, s, t if t is not None else s) if ranges else (e, s)))
                       for a, e, s, t in rows)
        return out + self.tail


@dataclass(frozen=True)
class RogueEvent:
    """An event signed by the rogue (or by `signer`): each field "right" for the next event, or drawn."""

    seq: int | str = "next"                   # "next", "head" (a fork at the head), or a number
    epoch: int | str = "same"                 # "same": the epoch of the rogue's head (0 at first)
    lamport: int | str = "next"
    time_ms: int | str = "now"
    prev: str = "right"                       # "right", "zero", "random"
    clock: tuple[tuple[str | int, int, int], ...] | str = "anchor"    # "anchor": only the enrolment at seq 1;
                                                                        # "none": not even that; "many": 300 more
    scope: str = "user"
    kind: str = "observation"
    payload: tuple = ("observation", (("setting", "rogue"), ("value", "v")))
    length: str = "right"                     # "right", "plus1", "zero", "max"
    hash: str = "right"                       # "right", "wrong"
    codec: str = "plain"
    signer: str = "rogue"                     # "rogue", "stranger", "garbage"
    withheld: bool = False

    def event(self, ctx: Context) -> Event:
        """The event as signed (a garbage record when a field is beyond what the schema holds)."""
        seq_now, head_id, lamport_now = ctx.head
        seq = {"next": seq_now + 1, "head": max(seq_now, 1)}.get(self.seq, self.seq)
        prev = {"right": head_id if seq > 1 else crypto.ZERO_ID, "zero": crypto.ZERO_ID,
                "random": hashlib.blake2b(repr(self).encode(), digest_size=32).digest()}[self.prev]
        body = build_payload(ctx.value(self.payload))
        a = ctx.anchor.header
        clock = ((a.author, a.epoch, a.seq),) if seq == 1 and self.clock != "none" else ()
        if self.clock == "many":
            clock += tuple((ctx.author("laptop"), 0, i + 1) for i in range(300))
        elif self.clock not in ("anchor", "none"):
            clock += tuple((ctx.author(n), e, s) for n, e, s in self.clock)
        lamport = lamport_now + 1 if self.lamport == "next" else self.lamport
        length = {"right": len(body), "plus1": len(body) + 1, "zero": 0, "max": U32[1]}[self.length]
        digest = crypto.blake2b256(body) if self.hash == "right" else bytes(32)
        epoch = ctx.epoch if self.epoch == "same" else self.epoch
        header = Header(group=ctx.group, author=ctx.rogue.public, epoch=epoch, seq=seq, prev=prev,
                        lamport=lamport, clock=tuple(ClockEntry(*c) for c in clock),
                        time_ms=time.time_ns() // 1_000_000 if self.time_ms == "now" else self.time_ms,
                        scope=ctx.value(self.scope), kind=self.kind, payload_hash=digest, payload_len=length,
                        payload_codec=self.codec)
        try:
            raw = encode_header(header)
        except ValueError:                                     # a value the schema cannot hold: garbage
            return Event(b"\x00" * 16, bytes(64), header, bytes(32), body)
        signer = {"rogue": ctx.rogue, "stranger": ctx.stranger}.get(self.signer)
        signature = signer.sign(crypto.blake2b256(raw)) if signer else bytes(64)
        event = Event(raw, signature, header, crypto.blake2b256(raw), body)
        if seq == ctx.head[0] + 1:
            ctx.head, ctx.epoch = (seq, event.id, lamport), epoch
        return event

    def build(self, ctx: Context) -> messages.WireEvent:
        event = self.event(ctx)
        return messages.WireEvent(event.record, None if self.withheld else event.payload)


@dataclass(frozen=True)
class Replay:
    """An event the laptop holds (index modulo their number), sent again as is or altered."""

    index: int
    alter: str = "none"          # "none", "withhold", "payload", "header", "signature", "truncate"
    at: int = 0                  # which byte "header" and "truncate" touch

    def build(self, ctx: Context) -> messages.WireEvent:
        e = ctx.honest[self.index % len(ctx.honest)]
        record, body = bytearray(e.record), e.payload
        if self.alter == "withhold":
            body = None
        elif self.alter == "payload":
            body = (body or b"") + b"\x00"
        elif self.alter == "header":
            record[self.at % (len(record) - 64)] ^= 0x40
        elif self.alter == "signature":
            record[-1] ^= 0x01
        elif self.alter == "truncate":
            record = record[: self.at % len(record)]
        return messages.WireEvent(bytes(record), body)


@dataclass(frozen=True)
class RawWire:
    """A WireEvent of drawn bytes and flags."""

    record: bytes
    payload: bytes
    flags: int


@dataclass(frozen=True)
class Msg:
    """One protocol message: a member of the Message union and its fields (symbolic where needed)."""

    member: str
    fields: tuple[tuple[str, object], ...]
    flips: tuple[int, ...] = ()               # byte positions of the encoded message to flip

    def build(self, ctx: Context) -> bytes:
        raw = bytearray(_message(self.member, {k: _resolve(k, v, ctx) for k, v in self.fields}))
        for at in self.flips:
            raw[at % len(raw)] ^= 0xFF
        return bytes(raw)


@dataclass(frozen=True)
class Garbage:
    """Drawn bytes in place of a message (they decrypt: the rogue holds the session keys)."""

    data: bytes


@dataclass(frozen=True)
class Plain:
    """An encrypted frame of `flags ‖ body` with any flags; `bomb` makes the body a zlib bomb."""

    flags: int
    body: bytes = b""
    bomb: bool = False


@dataclass(frozen=True)
class RawFrame:
    """Bytes straight onto the socket: a length prefix and a body of any length (then nothing)."""

    length: int
    body: bytes


@dataclass(frozen=True)
class Offer:
    """A snapshot signed by the rogue, offered (with its chunks) whether it was asked for or not.

    Its frontier covers each named author at the laptop's head seq plus `delta` (a number: that seq);
    `roster` is the laptop's real roster state or empty; the pref and memory states are empty
    (`wipe`) or garbage rows; `seq` places the snapshot event in the rogue's chain.
    """

    cover: tuple[tuple[str | int, int], ...] = (("rogue", 1),)
    roster: str = "real"                      # "real", "empty", "garbage"
    views: str = "wipe"                       # "wipe", "garbage"
    seq: int | str = "next"
    chunk: int = messages.SNAPSHOT_CHUNK

    def build(self, ctx: Context) -> list[bytes]:
        states = {
            "roster": {"real": ctx.roster, "empty": b"", "garbage": b"{"}[self.roster],
            "pref": b"\xff" * len(snapshot.VIEW_DBS["pref"]),
            "memory": b"\xff" * len(snapshot.VIEW_DBS["memory"]),
        }
        if self.views == "garbage":
            row = (3).to_bytes(4, "big") + b"key" + (5).to_bytes(4, "big") + b"value"
            states["pref"] = b"\xff" + row + states["pref"][1:]
        points = []
        for name, delta in self.cover:
            author = ctx.author(name)
            epoch, held, eid = ctx.heads.get(author, (0, 0, bytes(32)))
            seq = held + delta if -10 < delta < 10 else delta
            points.append(payloads.LogPoint(author=author, epoch=epoch, seq=max(seq, 0) % 2**64, id=eid, lamport=1,
                                            time=0))
        snap = payloads.Snapshot(frontier=tuple(sorted(points, key=lambda p: p.author)), views=tuple(
            payloads.ViewState(name=n, version=0, digest=crypto.blake2b256(states[n]), state=b"")
            for n in snapshot.VIEWS))
        body = payloads.encode(snap)
        event = RogueEvent(seq=self.seq, kind="snapshot", payload=("garbage", body)).event(ctx)
        offer = messages.SnapshotOffer(event.record, body, tuple((n, len(states[n])) for n in snapshot.VIEWS))
        out = [messages.encode(offer)]
        for name in snapshot.VIEWS:
            state = states[name]
            out += [messages.encode(messages.SnapshotChunk(name, at, state[at:at + self.chunk]))
                    for at in range(0, len(state), self.chunk)]
        return out


Step = Msg | Garbage | Plain | RawFrame | Offer


@dataclass(frozen=True)
class Hello:
    """The proper first message (version, group, the rogue's own key) with drawn frontier and truncation points."""

    frontier: Entries = Entries(())
    truncated: Entries = Entries(())

    def build(self, ctx: Context) -> bytes:
        return Msg("hello", (("version", messages.VERSION), ("group", Sym("group")), ("device", Key("rogue")),
                             ("frontier", self.frontier), ("truncated", self.truncated))).build(ctx)


@dataclass(frozen=True)
class Session:
    """One connection: a proper hello first (or not), then the steps; then the rogue hangs up, or holds
    the connection open while the invariant is checked (`linger`): reading, no longer reading, or in the
    middle of a frame whose rest never comes."""

    hello: Hello | None
    steps: tuple[Step, ...]
    linger: str = "close"                     # "close", "hold", "hold-unread", "hold-midframe"


def _resolve(name: str, value, ctx: Context):
    if isinstance(value, Entries):
        return value.build(ctx, ranges=name == "ranges")
    if name == "events":
        return [_wire(item, ctx) for item in value]
    return ctx.value(value)


def _wire(item, ctx: Context) -> dict:
    if isinstance(item, RawWire):
        return {"record": item.record, "payload": item.payload, "flags": item.flags}
    w = item.build(ctx)
    return {"record": w.record, "payload": w.payload or b"", "flags": messages.WITHHELD if w.payload is None else 0}


def _message(member: str, fields: dict) -> bytes:
    """Cap'n Proto bytes of one Message, single-segment, by the project's encoder of the union (which,
    unlike messages.encode, takes packed lists as they are); fields come in schema order. An events message
    that names no `answered` (version 3's field) answers no payload want."""
    if member == "events" and "answered" not in fields:
        fields = {**fields, "answered": 0}
    values = tuple(([_wire_tuple(w) for w in v] if k == "events" else list(v) if k == "views" else v)
                   for k, v in fields.items())
    return messages._LAYOUT.encode(messages._Wire(**{member: values}))    # noqa: SLF001


def _wire_tuple(w: dict) -> tuple:
    return w["record"], w["payload"], w["flags"]


def build_payload(spec: tuple) -> bytes:
    """Payload bytes: ("garbage", bytes), or (kind, fields) encoded by payloads.encode when it accepts
    them and by pycapnp from the schema when it does not (values out of their documented range)."""
    kind, fields = spec
    if kind == "garbage":
        return fields
    values = dict(fields)
    cls = payloads.KINDS[kind]
    try:
        return payloads.encode(cls(**{_snake(k): _tuple(v) for k, v in values.items()}))
    except Exception:       # noqa: BLE001 (any refusal: build it raw instead)
        pass
    struct_type = getattr(payload_schema, cls.__name__)
    raw = {k: ([{"key": a, "value": b} for a, b in v] if k == "context" else list(v) if isinstance(v, tuple) else v)
           for k, v in values.items()}
    try:
        return struct_type.new_message(**raw).to_bytes()
    except Exception:       # noqa: BLE001 (not even the schema holds it)
        return b"\x00" * 8


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


# -- strategies -----------------------------------------------------------------------------------

authors = st.sampled_from(NAMES) | st.integers(0, 5)


@st.composite
def entries(draw, ranges: bool = False) -> Entries:
    n = draw(st.integers(0, 4))
    rows = tuple((draw(authors), draw(edge_ints(U32)), draw(edge_ints(U64)), draw(edge_ints(U64)) if ranges else None)
                 for _ in range(n))
    many = draw(st.sampled_from((0, 0, 0, 1, messages.MAX_ENTRIES - 1, messages.MAX_ENTRIES, messages.MAX_ENTRIES + 1)))
    tail = draw(st.sampled_from((b"", b"", b"", b"\x00", bytes(43))))
    return Entries(rows, draw(st.booleans()), many, tail)


def payload_specs() -> st.SearchStrategy[tuple]:
    """Payload specs of several kinds, fields at the edges; or garbage bytes."""
    kv = st.lists(st.tuples(texts(False), texts(False)), max_size=3).map(tuple)
    many_tags = st.sampled_from((0, 1, 3, 5000)).map(lambda n: Tags(n))
    return st.one_of(
        st.builds(lambda v: ("observation", (("setting", "rogue"), ("value", v))), st.text(max_size=10)),
        st.builds(
            lambda s, v, c, w: ("observation", (("setting", s), ("value", v), ("context", c), ("weightMilli", w))),
            texts(),
            texts(),
            kv,
            edge_ints(U32),
        ),
        st.builds(
            lambda s, v, c, r: ("decision", (("setting", s), ("value", v), ("confidenceBp", c), ("reason", r))),
            texts(False),
            texts(False),
            edge_ints(U16),
            texts(),
        ),
        st.builds(
            lambda s, p, h, t, c: (
                "pref.config",
                (("setting", s), ("policy", p), ("halfLifeMs", h), ("valueType", t), ("choices", c)),
            ),
            texts(False),
            st.sampled_from(("unchanged", "sticky", "vote", "reconfirm")),
            edge_ints(U64),
            st.sampled_from(("unchanged", "text", "bool", "number", "choice")),
            st.lists(texts(False), max_size=3).map(tuple),
        ),
        st.builds(
            lambda e, t, c, tags, cb: (
                "memory.put",
                (("entry", e), ("type", t), ("content", c), ("tags", tags), ("confidenceBp", cb)),
            ),
            st.just(b"e" * 16) | blobs(20),
            st.sampled_from(("fact", "finding", "conversation")),
            texts() | st.just(Big("c", payloads.MAX_PAYLOAD_BYTES - 200)),
            many_tags,
            edge_ints(U16),
        ),
        st.builds(
            lambda d, n: ("device.enroll", (("device", d), ("name", n))),
            st.builds(Key, st.sampled_from(NAMES)) | blobs(),
            texts(False),
        ),
        st.builds(
            lambda d, u, r: ("device.revoke", (("device", d), ("untilSeq", u), ("reason", r))),
            st.builds(Key, st.sampled_from(NOT_HONEST)) | blobs(),
            edge_ints(U64),
            texts(False),
        ),
        st.builds(lambda b: ("garbage", b), blobs(200)),
    )


KINDS = ("observation", "decision", "pref.config", "memory.put", "device.enroll", "device.revoke", "snapshot",
         "epoch.start", "x.unknown", "", "Observation", "a" * 65, "memory..put")


@st.composite
def rogue_events(draw) -> RogueEvent:
    """A rogue event: mostly right, with one to a few fields drawn at their edges."""
    e = RogueEvent(payload=draw(payload_specs()))
    e = RogueEvent(**{**_fields(e), "kind": e.payload[0] if e.payload[0] != "garbage" else "observation"})
    for name in draw(st.lists(st.sampled_from(sorted(_BENT)), max_size=3, unique=True)):
        e = RogueEvent(**{**_fields(e), name: draw(_BENT[name])})
    return e


def _fields(e: RogueEvent) -> dict:
    return {name: getattr(e, name) for name in RogueEvent.__dataclass_fields__}


_BENT = {
    "seq": st.sampled_from(("head",)) | edge_ints(U64),
    "epoch": edge_ints(U32),
    "lamport": edge_ints(U64),
    "time_ms": edge_ints(I64),
    "prev": st.sampled_from(("zero", "random")),
    "clock": st.lists(st.tuples(authors, edge_ints(U32), edge_ints(U64)), max_size=3).map(tuple)
             | st.sampled_from(("many", "none")),
    "scope": texts(False) | st.sampled_from(("device:" + "0" * 64, "topic:tttt", Big("s", 257))),
    "kind": st.sampled_from(KINDS),
    "length": st.sampled_from(("plus1", "zero", "max")),
    "hash": st.just("wrong"),
    "codec": st.just("sealed"),
    "signer": st.sampled_from(("stranger", "garbage")),
    "withheld": st.just(True),
}

replays = st.builds(Replay, st.integers(0, 50),
                    st.sampled_from(("none", "withhold", "payload", "header", "signature", "truncate")),
                    st.integers(0, 400))
raw_wires = st.builds(RawWire, blobs(120), blobs(), edge_ints(U8))
wire_items = st.one_of(rogue_events(), replays, raw_wires)


def mostly(value, other: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """`value`, but one time in `odds` what `other` draws (one_of would not weigh them so)."""
    return st.integers(1, odds).flatmap(lambda i: other if i == 1 else st.just(value))


def events_msg(items: st.SearchStrategy, max_size: int = 6) -> st.SearchStrategy[Msg]:
    """An events message, its batch number mostly the right one."""
    batch = mostly(Sym("batch"), edge_ints(U64))
    return st.builds(lambda b, ev: Msg("events", (("batch", b), ("events", tuple(ev)))), batch,
                     st.lists(items, max_size=max_size))


def _msg(member: str, **fields: st.SearchStrategy) -> st.SearchStrategy[Msg]:
    names = list(fields)
    return st.builds(lambda *values: Msg(member, tuple(zip(names, values))), *fields.values())


keys = st.builds(Key, authors) | blobs()
messages_ = st.one_of(
    _msg("hello", version=st.just(messages.VERSION) | edge_ints(U16), group=st.just(Sym("group")) | blobs(),
         device=keys, frontier=entries(), truncated=entries()),
    _msg("want", ranges=entries(ranges=True)),
    events_msg(wire_items),
    _msg("ack", batch=edge_ints(U64), frontier=entries()),
    _msg("heartbeat", digest=blobs()),
    _msg("frontier", frontier=entries(), truncated=entries()),
    _msg("error", code=texts(), message=texts()),
    _msg("goodbye", reason=texts()),
    _msg("snapshotWant", frontier=entries()),
    _msg("snapshotOffer", record=blobs(200), payload=blobs(200),
         views=st.lists(st.tuples(texts(False), edge_ints(U64)), max_size=20).map(tuple)),
    _msg("snapshotChunk", view=texts(False), offset=edge_ints(U64),
         data=blobs() | st.sampled_from((Big(b"s", messages.SNAPSHOT_CHUNK), Big(b"s", messages.SNAPSHOT_CHUNK + 1)))),
    _msg("snapshotAck", chunk=edge_ints(U64)),
)
flipped = st.builds(lambda m, flips: Msg(m.member, m.fields, tuple(flips)), messages_,
                    st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
garbage = st.builds(Garbage, st.binary(max_size=64))
plains = st.builds(Plain, edge_ints(U8), st.binary(max_size=32), st.booleans())
raw_frames = st.builds(RawFrame, edge_ints(U32), st.sampled_from((b"", b"\x00" * 10, b"\xff" * 200)))


def sessions(steps: st.SearchStrategy[Step], max_steps: int = 6) -> st.SearchStrategy[Session]:
    """Sessions that mostly start with a proper hello, so that later steps reach the state machine."""
    hello = st.one_of(st.just(Hello()), st.just(Hello()), st.none(), st.builds(Hello, entries(), entries()))
    return st.builds(Session, hello, st.lists(steps, min_size=1, max_size=max_steps).map(tuple), lingers)


lingers = st.sampled_from(("close", "close", "close", "hold", "hold-unread", "hold-midframe"))


peer_texts = _msg("error", code=texts(), message=texts()) | _msg("goodbye", reason=texts())
message_sessions = sessions(st.one_of(messages_, messages_, flipped, garbage, peer_texts))
EDGE_HEADERS = {
    "lamport": (1, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1),
    "time_ms": (-(2**63), -(2**31), -1, 0, 1, 2**53 + 1, 2**63 - 1),
    "epoch": (1, 2**31 - 1, 2**32 - 1),
    "clock": tuple((("laptop", 0, s),) for s in (2, 2**63 - 1, 2**64 - 1)) + ((("stranger", 0, 1),), (("zero", 0, 1),)),
}
edge_events = st.sampled_from(sorted(EDGE_HEADERS)).flatmap(
    lambda name: st.sampled_from(EDGE_HEADERS[name]).map(lambda value: RogueEvent(**{name: value})))
"""A valid event but for one header field at an edge: the likeliest to be stored, and to hurt once stored."""
clean_events = st.builds(lambda v: RogueEvent(payload=("observation", (("setting", "rogue"), ("value", v)))),
                         st.text(max_size=8))
event_sessions = st.builds(
    Session, mostly(Hello(), st.none()),
    st.lists(st.booleans().flatmap(lambda mixed: events_msg(
        st.one_of(clean_events, rogue_events(), replays) if mixed else st.one_of(clean_events, edge_events), 4)),
             min_size=1, max_size=3).map(tuple), lingers)
offers = st.builds(
    Offer,
    st.lists(st.tuples(st.sampled_from(NAMES) | st.integers(0, 3), st.sampled_from((-1, 0, 1, 2)) | edge_ints(U64)),
             min_size=1, max_size=3, unique_by=lambda c: c[0]).map(tuple),
    st.sampled_from(("real", "real", "empty", "garbage")), st.sampled_from(("wipe", "garbage")),
    st.just("next") | edge_ints(U64), st.sampled_from((messages.SNAPSHOT_CHUNK, 7)))
snapshot_hellos = st.builds(lambda cut, more: Hello(truncated=Entries((("rogue", 0, cut, None), *more))),
                            st.integers(1, 5) | edge_ints(U64),
                            st.lists(st.tuples(authors, edge_ints(U32), edge_ints(U64), st.none()), max_size=2))
snapshot_sessions = st.builds(Session, snapshot_hellos | st.just(Hello()),
                              st.lists(st.one_of(offers, offers, events_msg(rogue_events(), 3), messages_),
                                       min_size=1, max_size=3).map(tuple))
frame_sessions = sessions(st.one_of(plains, raw_frames, garbage), max_steps=3)


# -- running a session --------------------------------------------------------------------------

async def run_session(session: Session, ctx: Context, host: str, port: int, group_key: bytes,
                      sent: threading.Event | None = None, release: threading.Event | None = None) -> list[str]:
    """Connect, handshake, send the session's steps, listen a little; returns what happened (for reports).

    A lingering session sets `sent` once its steps are out and keeps the connection until `release` is set.
    """
    stream = await trio.open_tcp_stream(host, port)
    channel = await net.connect_channel(stream, ctx.rogue, group_key, lambda device: None)
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        listening = trio.CancelScope()
        nursery.start_soon(_listen, channel, seen, listening)
        try:
            if session.hello is not None:
                await channel.send(session.hello.build(ctx))
            for step in session.steps:
                await _send(step, channel, stream, ctx)
                await trio.sleep(STEP_WAIT)
            await trio.sleep(SETTLE)
            if session.linger == "hold-unread":
                listening.cancel()
            elif session.linger == "hold-midframe":
                await stream.send_all(struct.pack(">I", 1000) + bytes(10))
        except (PeerError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            seen.append(f"send failed: {exc}")
        finally:
            if sent is not None:
                sent.set()
            while session.linger != "close" and release is not None and not release.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
            await trio.aclose_forcefully(stream)
    return seen


async def _send(step: Step, channel: net.Channel, stream, ctx: Context) -> None:
    if isinstance(step, Msg):
        await channel.send(step.build(ctx))
    elif isinstance(step, Offer):
        for message in step.build(ctx):
            await channel.send(message)
    elif isinstance(step, Garbage):
        await channel.send(step.data)
    elif isinstance(step, Plain):
        body = zlib.compress(bytes(messages.MAX_MESSAGE + 1), 9) if step.bomb else step.body
        flags = step.flags | FLAG_COMPRESSED if step.bomb else step.flags
        await channel._frames.write(channel._cipher.encrypt(bytes([flags]) + body))   # noqa: SLF001 (any flags)
    else:
        await stream.send_all(struct.pack(">I", step.length) + step.body)


async def _listen(channel: net.Channel, seen: list[str], scope: trio.CancelScope) -> None:
    """Read (and drop) what the daemon says, so its sends never block, until `scope` is cancelled;
    note errors and the close."""
    with scope:
        await _read(channel, seen)


async def _read(channel: net.Channel, seen: list[str]) -> None:
    while True:
        try:
            raw = await channel.receive()
        except PeerError as exc:
            seen.append(f"closed: {exc}")
            return
        try:
            msg = messages.decode(raw)
        except PeerError:
            continue
        if isinstance(msg, messages.Error):
            seen.append(f"error {msg.code}: {msg.message[:200]}")
