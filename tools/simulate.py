"""Deterministic simulation of replication: N devices in one process, faults drawn from one seed.

    python tools/simulate.py --seed N [--devices 3] [--verbose]

Each device is a real home (LMDB store, Ed25519 key made from the seed) running a real
`Replicator` under trio with a `MockClock`, so time is free and every run of a seed
takes the same steps. Devices talk over simulated streams (`SimNet`): in-memory pipes
that deliver each write after a seeded delay, in order. While the fault phase lasts,
devices write random preference and memory events and the network suffers:

- partitions: a random split of the devices; connects across it fail, and its open
  connections are either reset or blackholed (nothing arrives, not even a close, until
  it heals, so only heartbeats notice);
- drops: a byte stream cannot lose one message, so a drop breaks a connection: reset,
  closed after what was sent, or cut at a random byte of what is in flight (mid-frame);
  and a few writes are cut part way and the connection closed behind them;
- delays: every write waits a random few milliseconds, now and then seconds;
  ingests sometimes take a while, so messages arrive while a batch is being stored;
- restarts: a device's replicator is cancelled with its connections broken (a crash),
  sometimes its store closed and reopened, and it comes back after a while.

Then the faults stop, every partition heals, and the devices must reach the same
frontier (every event each device wrote) and the same view digests (roster,
preferences, memory), equal to those a rebuild from the log gives. No connection may
end for a reason a fault cannot explain (a protocol error, a refusal, a fork).

Everything random comes from `random.Random(seed)`, and trio's scheduler is made
deterministic (its Hypothesis mode, seeded), so a failing seed fails the same way on
every run: the trace (harness events and replicator logs, stamped with mock time)
is identical, and `--verbose` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import errno
import hashlib
import logging
import os
import random
import shutil
import sys
import tempfile
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import structlog.testing
import trio
import trio.testing

if __package__ in (None, ""):                          # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentlog.crypto import DeviceKey  # noqa: E402
from agentlog.errors import InvalidValueError  # noqa: E402
from agentlog.log import payloads  # noqa: E402
from agentlog.store import devices as enrolment
from agentlog.store import forks  # noqa: E402
from agentlog.store.store import Store  # noqa: E402
from agentlog.sync.replicator import Replicator  # noqa: E402

START_MS = 1_750_000_000_000        # wall clock of the stores at mock time 0
HEARTBEAT_S = 1.0                   # mock seconds: a silent peer counts as partitioned after 3
FAULT_S = 30.0                      # how long writes and faults go on
SETTLE_S = 300.0                    # how long the healed devices get to converge
POLL_S = 0.25
DROP_PER_WRITE = 0.01               # during faults: chance a stream write is cut and its connection closed
SETTINGS = ("theme", "units")
VALUES = ("dark", "light", "auto")
CONTEXTS = (None, {"daypart": "night"}, {"device_class": "phone"})
TAGS = ("home", "work", "todo")
BENIGN = ("connection closed by the peer", "connection ended", "connection broke", "connection closed inside a frame",
          "channel is broken", "frame stalled", "partitioned:", "peer said goodbye", "handshake timed out",
          "during the handshake", "cannot connect")
"""Reasons a connection may end or fail under the simulated faults; any other one is a finding."""

_device_var: contextvars.ContextVar[str] = contextvars.ContextVar("simulated_device", default="-")


class SimulationFailure(AssertionError):
    """A seed broke an invariant; the message names the seed and how to rerun it."""


# -- the trace --------------------------------------------------------------------------------------


class Trace:
    """What happened, in order, stamped with mock time: harness events and the replicators' logs."""

    def __init__(self, verbose: bool = False):
        self.lines: list[str] = []
        self.findings: list[str] = []
        self.verbose = verbose
        # more reasons a fault explains, after a restore: a prev that does not link or a branch that arrives
        # without its first event (a chain that forked), and an event whose clock names an event of a restored
        # device's lost branch (its sender may hold that branch while the receiver holds the other)
        self.benign: tuple[str, ...] = ()

    def add(self, device: str, event: str, **fields) -> None:
        try:
            now = trio.current_time()
        except RuntimeError:
            now = 0.0
        line = f"{now:12.6f} {device:6} {event}" + "".join(f" {k}={fields[k]}" for k in sorted(fields))
        self.lines.append(line)
        if self.verbose:
            print(line, flush=True)

    def processor(self, _logger, method: str, event_dict: dict) -> dict:
        """A structlog processor: record a replicator log line under the device whose task logged it."""
        fields = dict(event_dict)
        event = fields.pop("event")
        self.add(_device_var.get(), f"{method}:{event}", **fields)
        if event in ("connection closed", "handshake refused", "connect failed", "connection failed", "link failed",
                     "ingest failed"):
            reason = str(fields.get("reason", fields.get("error", "")))
            if not any(b in reason for b in BENIGN + self.benign):
                self.findings.append(f"{_device_var.get()}: {event}: {reason}")
        raise structlog.DropEvent

    def digest(self) -> str:
        return hashlib.blake2b("\n".join(self.lines).encode(), digest_size=16).hexdigest()


@contextlib.contextmanager
def _logs_into(trace: Trace):
    """Route structlog (every level) into the trace for the duration, then restore its configuration."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs(processors=[trace.processor]):
            yield
    finally:
        structlog.configure(wrapper_class=wrapper)


@contextlib.contextmanager
def _deterministic_trio(seed: int):
    """Make trio's run loop order runnable tasks from a seeded generator (as it does under Hypothesis).

    Trio shuffles each batch of runnable tasks with a module-level Random; in its
    deterministic mode it sorts them by creation before shuffling. Both are private, so
    the previous values are put back afterwards.
    """
    run = trio._core._run
    allow, state = run._ALLOW_DETERMINISTIC_SCHEDULING, run._r.getstate()
    run._ALLOW_DETERMINISTIC_SCHEDULING = True
    run._r.seed(seed)
    try:
        yield
    finally:
        run._ALLOW_DETERMINISTIC_SCHEDULING = allow
        run._r.setstate(state)


# -- the network ------------------------------------------------------------------------------------


class Pipe:
    """One direction of a connection: chunks of bytes, each deliverable from its mock time on, in order."""

    def __init__(self):
        self.chunks: deque[list] = deque()      # [deliver_at, bytes]
        self.eof = False                        # the writer closed: b"" once the chunks are read
        self.broken = False                     # reset: the reader fails, what was in flight is lost
        self.lot = trio.lowlevel.ParkingLot()

    def wake(self) -> None:
        self.lot.unpark_all()

    def pending(self) -> int:
        return sum(len(c[1]) for c in self.chunks)

    def cut(self, keep: int) -> None:
        """Keep only the first `keep` bytes in flight, then end the stream."""
        kept: deque[list] = deque()
        for at, data in self.chunks:
            if keep <= 0:
                break
            kept.append([at, data[:keep]])
            keep -= len(data)
        self.chunks, self.eof = kept, True
        self.wake()


class SimConnection:
    """A connection between two devices: two pipes, two ends, and whether a partition froze it."""

    def __init__(self, net: SimNet, number: int, client: SimDevice, server: SimDevice):
        self.net, self.number, self.devices = net, number, (client, server)
        self.latency = net.rng.uniform(0.001, 0.02)
        self.up, self.down = Pipe(), Pipe()     # client -> server, server -> client
        self.frozen = False
        self.dead = False                       # broken by a fault: writes fail
        self.client = SimStream(self, self.up, self.down)
        self.server = SimStream(self, self.down, self.up)

    def name(self) -> str:
        return f"#{self.number} {self.devices[0].name}->{self.devices[1].name}"

    def pair(self) -> frozenset:
        return frozenset(d.name for d in self.devices)

    def done(self) -> bool:
        return self.client.closed and self.server.closed or self.dead and self.up.broken

    def break_(self, mode: str) -> None:
        """End the connection: "reset" (both sides fail at once), "fin" (after what is in flight) or
        "cut" (at a random byte of what is in flight, so usually inside a frame)."""
        self.dead = True
        for pipe in (self.up, self.down):
            if mode == "reset":
                pipe.broken = True
                pipe.chunks.clear()
            elif mode == "cut":
                pipe.cut(self.net.rng.randrange(pipe.pending() + 1))
            else:
                pipe.eof = True
            pipe.wake()

    def thaw(self) -> None:
        self.frozen = False
        self.up.wake()
        self.down.wake()


class SimStream(trio.abc.Stream):
    """One end of a SimConnection, as a trio stream."""

    def __init__(self, conn: SimConnection, out: Pipe, into: Pipe):
        self.conn, self.out, self.into = conn, out, into
        self.closed = False

    def _peer(self) -> SimStream:
        return self.conn.server if self is self.conn.client else self.conn.client

    async def send_all(self, data) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError("this end is closed")
        if self.out.broken or self.conn.dead:
            raise trio.BrokenResourceError("connection reset")
        data = bytes(data)
        if self._peer().closed:
            if not self.conn.frozen:
                raise trio.BrokenResourceError("connection reset by the peer")
            return                                  # lost in the partition; the reset comes when it heals
        if not data:
            return
        net = self.conn.net
        at = net.deliver_at(self.out, self.conn.latency)
        if net.faulty and len(data) > 1 and net.rng.random() < DROP_PER_WRITE:
            keep = net.rng.randrange(1, len(data))
            net.trace.add("net", "drop mid-write", conn=self.conn.name(), kept=f"{keep}/{len(data)}")
            self.out.chunks.append([at, data[:keep]])
            self.conn.break_("fin")
            return
        if len(data) > 1 and net.rng.random() < 0.2:       # arrives in two pieces
            split = net.rng.randrange(1, len(data))
            self.out.chunks.append([at, data[:split]])
            data, at = data[split:], net.deliver_at(self.out, self.conn.latency)
        self.out.chunks.append([at, data])
        self.out.wake()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        max_bytes = max_bytes or 65536
        while True:
            if self.closed:
                raise trio.ClosedResourceError("this end is closed")
            pipe = self.into
            now = trio.current_time()
            if not self.conn.frozen:                # a partition hides even a reset until it heals
                if pipe.broken:
                    await trio.lowlevel.checkpoint()
                    raise trio.BrokenResourceError("connection reset")
                if pipe.chunks and pipe.chunks[0][0] <= now:
                    out = bytearray()
                    while pipe.chunks and pipe.chunks[0][0] <= now and len(out) < max_bytes:
                        chunk = pipe.chunks[0]
                        take = chunk[1][:max_bytes - len(out)]
                        out += take
                        chunk[1] = chunk[1][len(take):]
                        if not chunk[1]:
                            pipe.chunks.popleft()
                    await trio.lowlevel.checkpoint()
                    return bytes(out)
                if not pipe.chunks and pipe.eof:
                    await trio.lowlevel.checkpoint()
                    return b""
            wake_at = pipe.chunks[0][0] if pipe.chunks and not self.conn.frozen else float("inf")
            with trio.move_on_at(wake_at):
                await pipe.lot.park()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.eof = True
            self.out.wake()
            self.into.wake()
        await trio.lowlevel.checkpoint()


class SimNet:
    """Addresses, connections and partitions between simulated devices."""

    def __init__(self, rng: random.Random, trace: Trace):
        self.rng, self.trace = rng, trace
        self.devices: dict[str, SimDevice] = {}     # address -> device
        self.conns: list[SimConnection] = []
        self.blocked: dict[frozenset, int] = {}     # pair of device names -> partitions separating them
        self.faulty = True
        self.count = 0

    def deliver_at(self, pipe: Pipe, latency: float) -> float:
        """When the next chunk on `pipe` arrives: after a random delay, never before the one ahead of it."""
        delay = latency + self.rng.expovariate(1 / 0.005)
        if self.faulty and self.rng.random() < 0.02:
            delay += self.rng.uniform(0.5, 4.0)             # a slow moment: heartbeats may call it a partition
        at = trio.current_time() + delay
        return max(at, pipe.chunks[-1][0]) if pipe.chunks else at

    def live(self) -> list[SimConnection]:
        self.conns = [c for c in self.conns if not c.done()]
        return self.conns

    async def connect(self, src: SimDevice, addr: str) -> trio.abc.Stream:
        """`Replicator(connect=...)` for `src`: a stream to the device at `addr`, served by its replicator."""
        await trio.sleep(self.rng.uniform(0.001, 0.01))
        dst = self.devices.get(addr)
        if dst is None or not dst.up:
            raise OSError(errno.ECONNREFUSED, "connection refused")
        if self.blocked.get(frozenset((src.name, dst.name))):
            await trio.sleep(self.rng.uniform(0.0, 2.0))
            raise OSError(errno.EHOSTUNREACH, "no route to host")
        self.count += 1
        conn = SimConnection(self, self.count, src, dst)
        self.conns.append(conn)
        self.trace.add(src.name, "connect", conn=conn.name())
        dst.nursery.start_soon(dst.serve_incoming, conn.server)
        return conn.client

    def partition(self, side: set[str], mode: str) -> list[frozenset]:
        """Separate `side` from the other devices; "reset" breaks their connections, "blackhole" freezes them."""
        names = {d.name for d in self.devices.values()}
        pairs = [frozenset((a, b)) for a in sorted(side) for b in sorted(names - side)]
        for p in pairs:
            self.blocked[p] = self.blocked.get(p, 0) + 1
        for conn in self.live():
            if conn.pair() in pairs:
                if mode == "reset":
                    conn.break_("reset")
                else:
                    conn.frozen = True
        return pairs

    def heal(self, pairs: list[frozenset]) -> None:
        for p in pairs:
            self.blocked[p] -= 1
            if not self.blocked[p]:
                del self.blocked[p]
        for conn in self.live():
            if conn.frozen and not self.blocked.get(conn.pair()):
                conn.thaw()

    def heal_all(self) -> None:
        self.blocked.clear()
        for conn in self.live():
            if conn.frozen:
                conn.thaw()

    def crash(self, device: SimDevice) -> None:
        """The device's process died: the other ends see a reset or a close after what was in flight."""
        for conn in self.live():
            if device in conn.devices:
                conn.break_(self.rng.choice(("reset", "fin")))


# -- devices ------------------------------------------------------------------------------------------


async def _run_sync(delay, fn, *args):
    """`Replicator(run_sync=...)`: blocking store work runs here and now (mock time does not pass during it),
    after a random pause while faults last, so messages keep arriving while a batch is being stored."""
    pause = delay()
    if pause:
        await trio.sleep(pause)
    result = fn(*args)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result


class SimDevice:
    """One device: its home, its store, and its current replicator incarnation."""

    def __init__(self, sim: Simulation, name: str, path: Path):
        self.sim, self.name, self.path = sim, name, path
        self.key = DeviceKey(sim.rng.randbytes(32))
        self.address = f"{name}:4711"
        self.store = self._open()
        self.replicator: Replicator | None = None
        self.nursery: trio.Nursery | None = None
        self.scope: trio.CancelScope | None = None
        self.stopped = trio.Event()
        self.up = False

    def _open(self) -> Store:
        return Store(self.path, self.key, clock=self.sim.now_ms)

    async def start(self) -> None:
        await self.sim.nursery.start(self._run)

    async def _run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        _device_var.set(self.name)
        self.stopped = trio.Event()
        sim = self.sim
        peers = [d.address for d in sim.devices if d is not self]
        self.replicator = Replicator(self.store, peers=peers, heartbeat=HEARTBEAT_S,
                                     connect=lambda addr: sim.net.connect(self, addr),
                                     run_sync=lambda fn, *a: _run_sync(sim.ingest_delay, fn, *a),
                                     watch=False, rng=random.Random(sim.rng.getrandbits(64)))
        sim.trace.add(self.name, "start")
        try:
            with trio.CancelScope() as self.scope:
                async with trio.open_nursery() as self.nursery:
                    await self.nursery.start(self.replicator.run)
                    self.up = True
                    task_status.started()
        finally:
            self.up = False
            self.stopped.set()

    async def serve_incoming(self, stream: SimStream) -> None:
        _device_var.set(self.name)
        await self.replicator.accept(stream)

    async def stop(self, reopen: bool) -> None:
        """Crash: cancel the replicator and its connections; `reopen` closes and reopens the store too."""
        self.sim.trace.add(self.name, "crash", reopen=reopen)
        self.up = False
        self.scope.cancel()
        self.sim.net.crash(self)
        await self.stopped.wait()
        if reopen:
            self.store.close()
            self.store = self._open()

    def changed(self) -> None:
        if self.up:
            self.replicator.changed()


# -- the simulation -----------------------------------------------------------------------------------


@dataclass
class Result:
    seed: int
    trace: list[str]
    digest: str
    events: int                             # events every device holds at the end
    converged_after_s: float                # mock seconds from the end of the faults
    stats: dict = field(default_factory=dict)


@contextlib.contextmanager
def seeded_urandom(rng: random.Random):
    """os.urandom drawn from `rng` meanwhile: random bytes a store makes would otherwise change the sizes of
    the messages that carry them, so where a write is cut, and the rest of the run."""
    real = os.urandom
    os.urandom = rng.randbytes
    try:
        yield
    finally:
        os.urandom = real


class Simulation:
    """One seeded run over `n` devices in `root` (a fresh directory)."""

    def __init__(self, seed: int, n: int, root: Path, verbose: bool = False):
        self.seed, self.n, self.root = seed, n, root
        self.rng = random.Random(seed)
        self.trace = Trace(verbose)
        self.net = SimNet(self.rng, self.trace)
        self.devices: list[SimDevice] = []
        self.nursery: trio.Nursery | None = None
        self.memories: list[bytes] = []         # entries put by any device
        self.decisions: list[bytes] = []        # decisions made by any device
        self.stats = {"writes": 0, "refused": 0, "partitions": 0, "drops": 0, "restarts": 0, "reopens": 0,
                      "restores": 0}
        self.restored: set[bytes] = set()       # devices restored from a backup: their logs may fork, and heal
        self.converged_after = -1.0

    def now_ms(self) -> int:
        try:
            return START_MS + int(trio.current_time() * 1000)
        except RuntimeError:
            return START_MS

    def ingest_delay(self) -> float:
        if self.net.faulty and self.rng.random() < 0.2:
            return self.rng.choice((0.001, 0.02, 0.3))
        return 0.0

    def fail(self, problem: str) -> SimulationFailure:
        return SimulationFailure(f"seed {self.seed}: {problem}\n  rerun: python tools/simulate.py --seed {self.seed} "
                                 f"--devices {self.n} --verbose")

    # -- setup: one group, every device enrolled and holding the roster --------------------------------

    def setup(self) -> None:
        for i in range(self.n):
            device = SimDevice(self, f"dev{i}", self.root / f"dev{i}")
            device.store.set_meta({"device": device.key.public, "name": device.name.encode()})
            self.devices.append(device)
            self.net.devices[device.address] = device
        first = self.devices[0].store
        with seeded_urandom(self.rng):          # the group's id and key: in every event, so in what is sent
            first.create_group(self.devices[0].name)
        for d in self.devices[1:]:
            enrolment.join(d.store, enrolment.enroll(first, d.store.device, d.name))
        for d in self.devices[1:]:
            d.store.ingest([(e.record, e.payload) for e in first.events_after(d.store.frontier())])

    # -- the run ----------------------------------------------------------------------------------------

    async def main(self) -> None:
        async with trio.open_nursery() as self.nursery:
            for d in self.devices:
                await d.start()
            async with trio.open_nursery() as chaos:
                chaos.start_soon(self._faults, chaos)
                await self._workload()
                chaos.cancel_scope.cancel()
            await self._heal()
            await self._converge()
            for _ in range(len(self.devices)):
                grown = self._grow_equal_length_forks()
                if not grown:
                    break
                await self._converge()
            for d in self.devices:
                if d.up:
                    d.scope.cancel()
            self.nursery.cancel_scope.cancel()

    async def _workload(self) -> None:
        """Each device writes 10 to 30 events at random moments of the fault phase."""
        plan = sorted((self.rng.uniform(0.5, FAULT_S), i) for i, d in enumerate(self.devices)
                      for _ in range(self.rng.randint(10, 30)))
        for at, i in plan:
            await trio.sleep_until(at)
            self._write(self.devices[i])
        await trio.sleep_until(FAULT_S)

    def _write(self, d: SimDevice) -> None:
        rng, store = self.rng, d.store
        op = rng.choice(("observe", "observe", "burst", "decide", "correct", "set", "forget", "override",
                         "put", "put", "update", "delete"))
        setting, value, context = rng.choice(SETTINGS), rng.choice(VALUES), rng.choice(CONTEXTS)
        try:
            if op == "observe":
                store.prefs.observe(setting, value, context, weight=rng.choice((0.5, 1.0, 3.0)))
            elif op == "burst":               # several events in one transaction: one batch for the peers
                store.append_many([payloads.Observation(setting=setting, value=rng.choice(VALUES), context=(),
                                                        weight_milli=1000) for _ in range(rng.randint(2, 6))])
            elif op == "decide":
                self.decisions.append(store.prefs.decide(setting, value, rng.random(), context))
            elif op == "correct":                 # of a decision by any device, if this one holds it
                held = [x for x in self.decisions if store.get(x) is not None]
                if not held:
                    raise InvalidValueError("no decision held here")
                store.prefs.correct(rng.choice(held), value)
            elif op == "set":
                store.prefs.set(setting, value, context)
            elif op == "forget":
                store.prefs.forget(setting)
            elif op == "override":
                store.prefs.override(setting, value)
            elif op == "put":                 # the entry id comes from the seed (Memory.put draws os.urandom)
                entry = rng.randbytes(16)
                store.append(payloads.MemoryPut(entry=entry, type="fact", content=f"note {len(self.memories)}",
                                                tags=tuple(rng.sample(TAGS, rng.randint(0, 2)))), scope="user")
                self.memories.append(entry)
            elif op == "update":
                if not self.memories:
                    raise InvalidValueError("no memory yet")
                entry = rng.choice(self.memories)
                store.memory.update(entry, content=f"edited on {d.name} {rng.randint(0, 99)}",
                                    add_tags=(rng.choice(TAGS),))
            elif op == "delete":
                if not self.memories:
                    raise InvalidValueError("no memory yet")
                store.memory.delete(rng.choice(self.memories), reason=f"by {d.name}")
        except InvalidValueError as exc:
            self.stats["refused"] += 1
            self.trace.add(d.name, f"write {op} refused", why=str(exc)[:60])
            return
        self.stats["writes"] += 1
        self.trace.add(d.name, f"write {op}", seq=store.frontier()[store.device])
        d.changed()

    async def _faults(self, nursery: trio.Nursery) -> None:
        """Partitions, drops and restarts at random moments until cancelled; each heals on its own."""
        while True:
            await trio.sleep(self.rng.expovariate(1 / 1.5))
            kind = self.rng.choice(("partition", "partition", "drop", "drop", "restart", "restore"))
            if kind == "partition":
                names = [d.name for d in self.devices]
                side = set(self.rng.sample(names, self.rng.randint(1, len(names) - 1)))
                mode = self.rng.choice(("reset", "blackhole"))
                pairs = self.net.partition(side, mode)
                self.stats["partitions"] += 1
                self.trace.add("net", "partition", side=",".join(sorted(side)), mode=mode)
                nursery.start_soon(self._heal_later, pairs, self.rng.uniform(0.2, 8.0))
            elif kind == "drop":
                live = [c for c in self.net.live() if not c.dead]
                if live:
                    conn, mode = self.rng.choice(live), self.rng.choice(("reset", "fin", "cut"))
                    self.stats["drops"] += 1
                    self.trace.add("net", "drop", conn=conn.name(), mode=mode)
                    conn.break_(mode)
            else:
                up = [d for d in self.devices if d.up]
                if up and kind == "restart":
                    nursery.start_soon(self._restart, self.rng.choice(up), self.rng.uniform(0.0, 5.0),
                                       self.rng.random() < 0.4)
                elif up:
                    nursery.start_soon(self._restore, self.rng.choice(up), self.rng.uniform(0.5, 6.0))

    async def _heal_later(self, pairs: list[frozenset], after: float) -> None:
        await trio.sleep(after)
        self.net.heal(pairs)
        self.trace.add("net", "heal", pairs=" ".join("|".join(sorted(p)) for p in pairs))

    async def _restart(self, d: SimDevice, down_for: float, reopen: bool) -> None:
        self.stats["restarts"] += 1
        self.stats["reopens"] += reopen
        with trio.CancelScope(shield=True):
            await d.stop(reopen)
        await trio.sleep(down_for)               # the end of the faults may cancel this: _heal starts it then
        with trio.CancelScope(shield=True):
            await d.start()

    async def _restore(self, d: SimDevice, after: float) -> None:
        """Back the device up now, then, `after` mock seconds on, crash it and restore its home from the backup:
        what it wrote meanwhile and no peer holds is lost; what it writes next may fork its log, which heals."""
        copy = self.root / f"{d.name}.backup.{self.stats['restores']}"
        copy.mkdir()
        d.store.environment.copy(copy)
        self.stats["restores"] += 1
        self.trace.benign = self.trace.benign or ("prev:", "fork:")
        self.trace.add(d.name, "backup", at=d.store.frontier().get(d.store.device, 0))
        await trio.sleep(after)
        if not d.up:                            # a restart has it down: its own start follows
            return
        with trio.CancelScope(shield=True):
            await d.stop(reopen=False)
            d.store.close()
            shutil.copyfile(copy / "data.mdb", d.path / "data.mdb")
            d.store = d._open()
            forks.mark_restored(d.store)
            self.restored.add(d.store.device)
            self.trace.benign += (f"follows {d.store.device.hex()[:16]} ",)
            self.trace.add(d.name, "restored", at=d.store.frontier().get(d.store.device, 0))
            await d.start()

    async def _heal(self) -> None:
        self.net.faulty = False
        self.net.heal_all()
        self.trace.add("net", "faults over: every partition healed")
        for d in self.devices:
            if not d.up:
                await d.stopped.wait()
                await d.start()

    async def _converge(self) -> None:
        """Wait until every device holds every event written, or fail after SETTLE_S."""
        began = trio.current_time()
        while True:
            want = {d.store.device: d.store.frontier()[d.store.device] for d in self.devices}
            if all(d.store.frontier() == want for d in self.devices):
                self.converged_after = trio.current_time() - began
                self.trace.add("net", "converged", events=sum(want.values()))
                return
            if trio.current_time() - began > SETTLE_S:
                held = "; ".join(f"{d.name} holds {self._held(d, want)}" for d in self.devices)
                raise self.fail(f"no convergence within {SETTLE_S:g} mock s after the faults ended: {held}")
            await trio.sleep(POLL_S)

    def _grow_equal_length_forks(self) -> list[str]:
        """Equal frontiers do not mean equal logs when a restored device wrote as many events as its backup
        lost: the two branches have equal length and stay apart until one grows (a documented limit,
        docs/operations.md, forks). Each restored device whose head event differs between devices writes
        one event, as a person's next use would, so that the fork shows and heals; returns their names."""
        grown = []
        for d in self.devices:
            author = d.store.device
            if author not in self.restored or not d.up:
                continue
            if len({x.store.heads()[author].id for x in self.devices}) > 1:
                d.store.prefs.observe("sim.fork", "grown")
                self.trace.add(d.name, "equal-length fork: one more write", seq=d.store.frontier()[author])
                d.changed()
                grown.append(d.name)
        return grown

    def _held(self, d: SimDevice, want: dict) -> str:
        names = {x.store.device: x.name for x in self.devices}
        have = d.store.frontier()
        return ", ".join(f"{names[a]}:{have.get(a, 0)}/{want[a]}" for a in want)

    # -- the checks after convergence ---------------------------------------------------------------------

    def check(self) -> None:
        if self.trace.findings:
            raise self.fail("a connection ended for a reason no fault explains: " + " | ".join(self.trace.findings[:5]))
        views = [d.store.views() for d in self.devices]
        for d, v in zip(self.devices, views):
            forked = {f.author for f in d.store.forks()} - self.restored
            if forked:
                raise self.fail(f"{d.name} recorded fork(s) of devices never restored")
            for name in ("roster", "pref", "memory"):
                if v[name]["digest"] != views[0][name]["digest"]:
                    raise self.fail(f"{name} view of {d.name} differs from {self.devices[0].name}'s at equal frontiers")
        first = self.devices[0].store
        first.rebuild_views()
        rebuilt = first.views()
        for name in ("roster", "pref", "memory"):
            if rebuilt[name]["digest"] != views[0][name]["digest"]:
                raise self.fail(f"{name} view differs from the one rebuilt from the log")


def run(seed: int, devices: int = 3, *, verbose: bool = False, root: str | Path | None = None) -> Result:
    """Run one seed; raises SimulationFailure naming the seed if an invariant breaks."""
    base = root or ("/dev/shm" if Path("/dev/shm").is_dir() else None)   # tmpfs: LMDB's fsyncs cost nothing
    tmp = Path(tempfile.mkdtemp(prefix=f"agentlog-sim-{seed}-", dir=base))
    sim = Simulation(seed, devices, tmp, verbose)
    try:
        with _logs_into(sim.trace), _deterministic_trio(seed):
            sim.setup()
            try:
                trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
            except SimulationFailure:
                raise
            except ExceptionGroup as group:         # trio's nurseries wrap what their tasks raise
                failed, _ = group.split(SimulationFailure)
                while isinstance(failed, ExceptionGroup):
                    failed = failed.exceptions[0]
                if failed is not None:
                    raise failed from None
                raise sim.fail(f"the simulation crashed: {group!r}") from group
            except Exception as exc:
                raise sim.fail(f"the simulation crashed: {type(exc).__name__}: {exc}") from exc
            sim.check()
        events = sum(sim.devices[0].store.frontier().values())
        return Result(seed, sim.trace.lines, sim.trace.digest(), events, sim.converged_after, sim.stats)
    finally:
        for d in sim.devices:
            d.store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--count", type=int, default=1, help="run this many seeds from --seed on")
    parser.add_argument("--verbose", action="store_true", help="print the trace as it happens")
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.count):
        try:
            r = run(seed, args.devices, verbose=args.verbose)
        except SimulationFailure as exc:
            if args.verbose and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            print(f"FAIL {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"seed {seed}: ok, {r.events} events on every device, converged {r.converged_after_s:.2f} mock s "
              f"after the faults; {r.stats}; trace {r.digest}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
