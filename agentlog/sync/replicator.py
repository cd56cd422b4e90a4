"""The replicator: runs protocol.Connection over net.Channel for every peer, pushes local changes, reconnects.

Each connection has one loop task that owns its `Connection` and performs its actions,
a reader task that decodes frames into that loop's inbox, a sender task that writes the
loop's messages (each within the silence timeout, so a peer that stops reading is dropped
and never blocks the loop), and an ingester that stores received batches in a worker thread
(LMDB's writer blocks; the event loop must not). Whatever a link's tasks raise ends that link
alone: it is logged as one line and the link is dropped; the listener and other links go on.
Local changes by any process are noticed by watching LMDB's last transaction id.
Peer states are saved in the store for `agentlog status` (peers.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import structlog
import trio

from agentlog.errors import ConnectionLost, PeerClosed, PeerError, ProtocolError, SnapshotError, Unreachable, describe
from agentlog.relay.config import is_relay_address
from agentlog.store import ledger
from agentlog.store.peers import FoundState, Peers, PeerState, address, parse_address
from agentlog.store.store import Store
from agentlog.sync import listener, messages, net, threads, wakeups
from agentlog.sync.admission import admits, check_peer
from agentlog.sync.dialing import Dialers
from agentlog.sync.peer_log import StoreLog
from agentlog.sync.protocol import HEARTBEAT_S, PARTITION_AFTER, Close, Connection, Ingest, Install, Send

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 30.0
REFUSED_MAX_S = 1.0             # the longest pause after a refused dial (the host is up, its serve may be starting) ...
REFUSED_FOR_S = 60.0            # ... while refusals have lasted less than this; then it grows as for any failure
UNREAD_MAX = 16                 # messages read ahead of the connection's loop
SAVE_EVERY_S = 1.0              # peer states are written at most this often, and only when they changed
SEEN_EVERY_S = 30.0             # a peer's last-seen time alone is written at most this often
LEDGER_PAUSE_S = 0.5            # sent batches are entered in the ledger at most this often (a crash may lose that much)
OUTBOX_MAX = 64                 # messages waiting for the sender; a peer that lets more pile up is not reading
FLUSH_S = 2.0                   # a closing link's last messages (error, goodbye) get this long to leave
TAKEOVER_AFTER = 2              # heartbeat intervals a link was silent or stuck in a send before a new
                                # connection from its device replaces it
RESTART_S = 5.0                 # a background task that failed starts again after this pause
INGEST_GROUP = 8                # received batches stored in one commit, at most
SIGNATURES_PER_S = 1024  # signatures stored unchecked (inside a peer's run) checked in the background each second

log = structlog.get_logger("agentlog.sync.replicator")
FORK_ROUNDS = 3                      # `sync` connects again when a chain did not link (a fork to look for)


def _now() -> float:
    return trio.current_time()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SyncResult:
    """What one connection moved."""

    peer: bytes
    address: str
    received: int = 0           # events stored here
    sent: int = 0               # events sent
    reason: str = ""
    error: bool = False
    synced: bool = False
    bootstrapped: bool = False  # this device started from the peer's snapshot


class Link:
    """One live connection: its protocol state, channel, inbox and outbox."""

    def __init__(self, replicator: Replicator, channel: net.Channel, address_: str, client: bytes):
        self.r, self.channel, self.address = replicator, channel, address_
        self.client = client                # the device that dialed: decides which of two duplicate links stays
        store = replicator.store
        self.log = StoreLog(store, channel.peer)
        self.conn = Connection(self.log, store.group, store.device, channel.peer, _now(),
                               heartbeat=replicator.heartbeat, guarded=not admits(store, channel.peer))
        self.silence = PARTITION_AFTER * replicator.heartbeat   # a send that takes longer drops the link
        self.inbox_send, self.inbox = trio.open_memory_channel(math.inf)
        self.unread = trio.Semaphore(UNREAD_MAX)     # decoded messages the loop has not taken yet
        self.outbox_send, self.outbox = trio.open_memory_channel(OUTBOX_MAX)
        self.sending_since: float | None = None      # when the send under way began
        self.flushed = trio.Event()                  # the sender wrote everything (or gave up)
        self.ingest_send, self.ingest_recv = trio.open_memory_channel(math.inf)
        self.result = SyncResult(channel.peer, address_)
        self.local_pending = False
        self.local_held = False             # a poke waiting for the peer's batch being stored (`poke`)
        self.caught_up = False              # the peer's frontier was checked against this device's suspects
        self.done = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.on_progress: Callable[[int, int], None] | None = None   # (events stored, events expected in all)
        self.on_snapshot: Callable[[int, int], None] | None = None   # (state bytes received, bytes offered)
        self.sent_log: list[tuple[int, tuple[bytes, ...]]] = []      # (time_ms, records) sent, not yet in the ledger
        self.sent_wake = trio.Event()

    def poke(self, noticed: bool = False) -> None:
        """Local events changed: wake the loop (coalesced). `noticed`: a commit the watcher saw, which may be
        this link's own store of the peer's batch: while one is under way, wait for its result, so the peer's
        events are known to be its own and are not pushed back to it (the daemon's echo)."""
        if noticed and self.conn.ingesting:
            self.local_held = True
            return
        if not self.local_pending:
            self.local_pending = True
            self.inbox_send.send_nowait(("local",))

    def cancel(self, reason: str = "") -> None:
        """End the link from outside; `reason`, if given, is logged as why it closed."""
        if reason:
            self._close(reason, False)
        self.scope.cancel()

    def stale(self) -> bool:
        """Whether the peer has been silent, or a send has been stuck, for TAKEOVER_AFTER heartbeats."""
        since = min(self.conn.last_heard, self.sending_since if self.sending_since is not None else math.inf)
        return _now() - since >= TAKEOVER_AFTER * self.r.heartbeat

    async def run(self, stop_when_synced: bool = False) -> SyncResult:
        """Run the connection to its end. Whatever its tasks raise ends this link only: logged, then dropped."""
        try:
            with trio.CancelScope() as self.scope:
                async with trio.open_nursery() as nursery:
                    for task in (self._read, self._send, self._ingest, self._tick, self._ledger):
                        nursery.start_soon(task)
                    self._perform(self.conn.start(_now()))
                    async for item in self.inbox:
                        await self._step(item)
                        if stop_when_synced and self.conn.state == "live" and self._peer_synced():
                            self.result.synced = True
                            self._perform(self.conn.goodbye("sync done", _now()))
                        if self.conn.state == "closed":
                            break
                    self.outbox_send.close()
                    with trio.move_on_after(FLUSH_S):
                        await self.flushed.wait()
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            self._failed(exc)
        finally:
            with trio.CancelScope(shield=True):
                await self._end()
        return self.result

    def _failed(self, exc: Exception) -> None:
        log.error("link failed", peer=self.name, address=self.address, error=describe(exc))
        self.result.reason, self.result.error = f"internal error: {describe(exc)}", True
        self.conn.state = "closed"

    async def _end(self) -> None:
        try:
            await self._enter_sent()
        except Exception as exc:
            log.error("ledger entry failed", peer=self.name, address=self.address, error=describe(exc))
        try:
            await self.channel.aclose()
        finally:
            self.done.set()

    def _peer_synced(self) -> bool:
        announced = self.conn.announced
        return all(self.conn.theirs.get(a, (0, 0)) >= pos for a, pos in announced.items())

    async def _step(self, item) -> None:
        kind, now = item[0], _now()
        if kind == "msg":
            self.unread.release()
            actions = self.conn.receive(item[1], now)
            if self.on_snapshot and isinstance(item[1], (messages.SnapshotOffer, messages.SnapshotChunk)):
                self.on_snapshot(*(self.conn.snapshot_progress() or (0, 0)))
        elif kind == "ingested":
            _, batch, heads, frontier, accepted = item
            self.result.received += accepted
            actions = self.conn.ingested(batch, heads, frontier, now)
            if accepted:
                self.r.changed(exclude=self)
            if self.local_held:
                self.local_held = False
                self.poke()
            if self.on_progress:
                remaining = sum(max(0, seq - frontier.get(a, (0, 0))[1]) for a, (_, seq) in self.conn.theirs.items())
                self.on_progress(self.result.received, self.result.received + remaining)
        elif kind == "rejected":
            actions = self.conn.rejected(item[1], item[2], now)
        elif kind == "installed":
            log.info("bootstrapped from the peer's snapshot", peer=self.name, address=self.address)
            self.result.bootstrapped = True
            actions = self.conn.installed(item[1], now)
            self.r.changed(exclude=self)
        elif kind == "install_failed":
            actions = self.conn.install_failed(item[1], now)
        elif kind == "local":
            await trio.sleep(0)              # let writes that arrive together go out in one batch
            self.local_pending = False
            actions = self.conn.local_changed(_now())
        elif kind == "tick":
            actions = self.conn.tick(now)
        elif kind == "closed":
            actions = [Close(item[1], item[2])]
        elif kind == "refuse":
            actions = self.conn.refuse(item[1], item[2], now)
        elif kind == "admit":
            log.info("roster admits the peer: sending to it", peer=self.name, address=self.address)
            actions = self.conn.admit(now)
        else:
            raise AssertionError(kind)
        self._perform(actions)
        if self.conn.state == "live" and not self.caught_up:
            self.caught_up = True
            await self.r.run_sync(self.log.caught_up, dict(self.conn.theirs))
        if kind != "local":                  # heard nothing of the peer: a push leaves before any bookkeeping
            self.r.note(self)

    def _perform(self, actions) -> None:
        for act in actions:
            if isinstance(act, Send):
                if isinstance(act.message, messages.Events):
                    self.result.sent += len(act.message.events)
                try:
                    self.outbox_send.send_nowait(act.message)
                except trio.WouldBlock:
                    self._close(f"connection ended: the peer read nothing while {OUTBOX_MAX} messages piled up", False)
                    return
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return                      # the sender gave up; its reason is in the inbox
            elif isinstance(act, (Ingest, Install)):
                self.ingest_send.send_nowait(act)
            elif isinstance(act, Close):
                self._close(act.reason, act.error)

    def _close(self, reason: str, error: bool) -> None:
        if not self.result.reason:
            self.result.reason, self.result.error = reason, error
            (log.warning if error else log.info)("connection closed", peer=self.name, address=self.address,
                                                  reason=reason)
        self.conn.state = "closed"

    @property
    def name(self) -> str:
        return self.r.name_of(self.channel.peer)

    async def _read(self) -> None:
        while True:
            try:
                raw = await self.channel.receive()
                msg = messages.decode(raw)
            except (PeerClosed, ConnectionLost) as exc:
                self.inbox_send.send_nowait(("closed", f"connection ended: {exc.reason}", False))
                return
            except ProtocolError as exc:
                if exc.code != "decrypt":
                    self._perform([Send(messages.Error(exc.code, exc.reason))])
                self.inbox_send.send_nowait(("closed", str(exc), True))
                return
            except PeerError as exc:             # e.g. the peer refused us after its side of the handshake
                self.inbox_send.send_nowait(("closed", str(exc), True))
                return
            await self.unread.acquire()              # a peer faster than we process waits in TCP, not in memory
            self.inbox_send.send_nowait(("msg", msg))

    async def _send(self) -> None:
        """Write the loop's messages in order, each within the silence timeout: a peer that stops
        reading (a suspended process, a window it never drains) is dropped, not waited on."""
        try:
            async with self.outbox:
                async for message in self.outbox:
                    if not await self._write(message):
                        return
        finally:
            self.flushed.set()

    async def _write(self, message: messages.Message) -> bool:
        self.sending_since = _now()
        with trio.move_on_after(self.silence):
            try:
                await self.channel.send(messages.encode(message))
            except PeerError as exc:
                self.inbox_send.send_nowait(("closed", str(exc), False))
                return False
            self.sending_since = None
            if isinstance(message, messages.Events) and message.events:
                self.sent_log.append((_wall_ms(), tuple(e.record for e in message.events)))
                self.sent_wake.set()
            return True
        self.inbox_send.send_nowait(("closed", f"connection ended: the peer read nothing for {self.silence:g} s",
                                     False))
        return False

    async def _ingest(self) -> None:
        """Store received batches in a worker thread; batches that queued up meanwhile go together, in one
        commit (Store.ingest_batches), and each is acked only once that commit is on disk."""
        act = None
        while True:
            act = act or await self.ingest_recv.receive()
            if isinstance(act, Install):
                try:
                    frontier = await self.r.run_sync(self.log.install, act.record, act.payload, act.states, act.cuts)
                except SnapshotError as exc:
                    self.inbox_send.send_nowait(("install_failed", str(exc)))
                    return
                except Exception as exc:
                    self._cannot_store("the snapshot", exc)
                    return
                self.inbox_send.send_nowait(("installed", frontier))
                act = None
                continue
            group, act = self._queued(act)
            self.r.ingests += 1
            try:
                stored, failed = await self.r.run_sync(self.log.ingest_batches, [a.events for a in group])
            except Exception as exc:
                self._cannot_store(f"batch {group[0].batch}", exc)
                return
            finally:
                self.r.ingests -= 1
                if self.r.watcher is not None:       # its commit was pushed by `_step`, not by the watcher
                    self.r.watcher.settle(self.log.own)
            for done, (heads, frontier, accepted) in zip(group, stored):
                self.inbox_send.send_nowait(("ingested", done.batch, heads, frontier, accepted))
                self.r.stored += accepted
            for author, count in self.log.forked.items():
                (log.warning if count >= 2 else log.info)(
                    "a device's log forked: both branches kept" if count < 2 else
                    "a device forked again: two devices may be writing with one copied key; revoke one and "
                    "enrol it anew", peer=self.name, author=author.hex()[:16], forks=count)
            if failed is not None:
                self.inbox_send.send_nowait(("rejected", group[len(stored)].batch, failed))
                return
            if self.log.forked:
                self.poke()                  # a healed fork wrote an epoch.start: this peer needs it too

    def _queued(self, first: Ingest) -> tuple[list[Ingest], Install | None]:
        """`first` and the batches queued behind it (at most INGEST_GROUP), and the snapshot install that
        ended the run, if one did."""
        group = [first]
        while len(group) < INGEST_GROUP:
            try:
                act = self.ingest_recv.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(act, Install):
                return group, act
            group.append(act)
        return group, None

    def _cannot_store(self, what: str, exc: Exception) -> None:
        """Storing failed for another reason than a check (a reducer, LMDB, a bug): the transaction
        left the store as it was; refuse the batch to the peer as `internal` and end the link."""
        log.error("ingest failed", peer=self.name, address=self.address, what=what, error=describe(exc))
        self.inbox_send.send_nowait(("refuse", "internal", f"{what} could not be stored here ({type(exc).__name__})"))

    async def _ledger(self) -> None:
        """Enter sent batches in the replication ledger: one write transaction for whatever piled up
        meanwhile, at most one per LEDGER_PAUSE_S, off the protocol loop so sending never waits on LMDB
        (and a live push does not cost its sender a second durable transaction). Each batch keeps the
        time it was handed over; the link's end enters what is left."""
        while True:
            await self.sent_wake.wait()
            self.sent_wake = trio.Event()
            await self._enter_sent()
            await trio.sleep(LEDGER_PAUSE_S)

    async def _enter_sent(self) -> None:
        if self.sent_log:
            batches, self.sent_log = self.sent_log, []
            await self.r.run_sync(ledger.Ledger(self.r.store).record_sent, self.channel.peer, batches)

    async def _tick(self) -> None:
        while True:
            await trio.sleep_until(max(self.conn.deadline(), _now() + 0.01))
            self.inbox_send.send_nowait(("tick",))


class Replicator:
    """`agentlog serve`: listen, dial peers, keep every connection synced, push local changes."""

    def __init__(self, store: Store, *, listen: tuple[str, int] | None = None, peers: list[str] = (),
                 heartbeat: float = HEARTBEAT_S, on_state: Callable[[], None] | None = None,
                 connect: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
                 run_sync: Callable[..., Awaitable] | None = None, watch: bool = True,
                 rng: random.Random | None = None, on_pair: net.OnPair | None = None):
        """`connect(address)` opens a stream instead of TCP, `run_sync` runs blocking store work instead
        of a worker thread, `watch=False` leaves noticing local writes to the caller (`changed()`), and
        `rng` draws backoff jitter: together they let a simulation run the replicator deterministically.
        `on_pair` answers a connection that opens a pairing (agentlog.sync.pair_net); without it, one ends at once."""
        self.store, self.listen, self.heartbeat, self.on_pair = store, listen, heartbeat, on_pair
        self.connect = connect
        self.run_sync = run_sync or threads.run_sync
        self.watch = watch
        self.ingests = 0                    # links' stores of a peer's batches under way (`Watch.settle`)
        self.watcher = wakeups.Watch(store, self._noticed, lambda: self.ingests > 0) if watch else None
        self.rng = rng or random.Random()
        self.peer_book = Peers(store)
        fixed = [address(*parse_address(p)) for p in peers if not is_relay_address(p)]
        self.dialers = Dialers(self._dial_forever, lambda: self.run_sync(self.peer_book.addresses), fixed,
                               self.peer_book.addresses())
        self.relays, self.upkeep = [], None
        relays = [p for p in peers if is_relay_address(p)]
        if relays or self.peer_book.relays():   # the relay's modules load only for a group that uses one
            from agentlog.sync.relay_peer import KeyUpkeep, relay_peers
            self.relays = relay_peers(store, relays, run_sync=self.run_sync,
                                      on_ingested=lambda relay: self.changed(exclude=relay), rng=self.rng)
            self.upkeep = KeyUpkeep(store, self.run_sync) if self.relays else None
        self.links: dict[bytes, Link] = {}
        self.stored = 0                     # events links stored since the last round of signature checks
        self.states: dict[bytes, PeerState] = self.peer_book.states()
        self.port: int | None = None
        self._dirty = False
        self._on_state = on_state
        self._names: dict[bytes, str] = {}
        self._device_at: dict[str, bytes] = {}
        self._seen_saved: dict[bytes, int] = {}      # device -> when its last-seen time last went to disk
        self.slots = listener.Slots()                # incoming connections in their handshake

    # -- running ----------------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, watch and save until cancelled. Only a failure to listen ends it: every
        connection and background task is supervised (logged and dropped, or restarted)."""
        for state in self.states.values():
            if state.state == "connected":
                state.state = "partitioned"
        async with trio.open_nursery() as nursery:
            if self.listen:
                host, port = self.listen
                listeners = await trio.open_tcp_listeners(port, host=host)
                self.port = listeners[0].socket.getsockname()[1]
                for sock in listeners:
                    nursery.start_soon(listener.accept_forever, sock, self.accept, nursery, self.slots)
                log.info("listening", address=address(host, self.port), device=self.store.device.hex()[:16])
            self.dialers.start(nursery)
            for relay in self.relays:
                nursery.start_soon(relay.run)
            if self.upkeep:
                nursery.start_soon(self._supervised, "relay key upkeep", self.upkeep.run)
            if self.watch:
                nursery.start_soon(self._supervised, "watching local writes", self.watcher.run)
                nursery.start_soon(self._supervised, "following the peer book", self.dialers.follow_book)
            nursery.start_soon(self._supervised, "saving peer states", self._save_states)
            nursery.start_soon(self._supervised, "checking signatures", self._check_signatures)
            task_status.started(self)

    async def _supervised(self, what: str, task: Callable[[], Awaitable[None]]) -> None:
        """Run a background task; when it fails, log one line and start it again after RESTART_S."""
        while True:
            try:
                return await task()
            except Exception as exc:
                log.error(f"{what} failed", error=describe(exc), retry_in_s=RESTART_S)
            await trio.sleep(RESTART_S)

    async def accept(self, stream: trio.abc.Stream) -> None:
        """Serve one incoming stream: handshake (holding a slot), then the protocol until it ends.
        Nothing it raises leaves it: a failure is logged and the connection dropped."""
        try:
            await self._accept(stream)
        except Exception as exc:
            log.error("connection failed", address=listener.address_of(stream), error=describe(exc))
            await trio.aclose_forcefully(stream)

    async def _accept(self, stream: trio.abc.Stream) -> None:
        channel = None
        with self.slots.hold(listener.host_of(stream)) as slot:
            try:
                channel = await net.accept_channel(stream, self.store.key, self.store.meta("group_key"),
                                                   check_peer(self.store), on_data=slot.activate, on_pair=self.on_pair)
            except PeerError as exc:
                log.warning("handshake refused", address=listener.address_of(stream), reason=str(exc))
                await trio.aclose_forcefully(stream)
        if channel is None:                     # refused, or evicted from its slot (the stream is closed)
            return
        try:
            await self._serve(channel, channel.remote, client=channel.peer)
        except PeerError as exc:
            log.warning("connection failed", address=channel.remote, reason=str(exc))

    async def _dial_forever(self, addr: str) -> None:
        host, port = parse_address(addr)
        backoff, refused_since = BACKOFF_MIN_S, None
        while True:
            up = self.links.get(self._device_at.get(addr, b""))
            if up is not None:                      # that device dialed us: wait until its link ends
                await up.done.wait()
                continue
            outcome = "failed"
            try:
                outcome = await self._dial(addr, host, port, backoff)
                if outcome == "ended":
                    backoff = BACKOFF_MIN_S
            except Exception as exc:
                log.error("connection failed", address=addr, error=describe(exc), retry_in_s=round(backoff, 2))
            if outcome != "refused":
                refused_since = None
            elif refused_since is None:
                refused_since = _now()
            await trio.sleep(backoff * self.rng.uniform(0.8, 1.2))
            refusing = refused_since is not None and _now() - refused_since < REFUSED_FOR_S
            backoff = min(backoff * 2, REFUSED_MAX_S if refusing else BACKOFF_MAX_S)

    async def _dial(self, addr: str, host: str, port: int, backoff: float) -> str:
        """One connection to `addr`, run to its end: "ended" without an error, "refused" (nothing listened there
        yet) or "failed"."""
        try:
            channel = await self._open(addr, host, port)
        except PeerError as exc:
            log.info("connect failed", address=addr, reason=str(exc), retry_in_s=round(backoff, 2))
            self.dialers.outcome(addr, str(exc))
            return "refused" if isinstance(exc, Unreachable) and exc.refused else "failed"
        self._device_at[addr] = channel.peer
        self.dialers.outcome(addr, device=channel.peer)
        try:
            result = await self._serve(channel, addr, client=self.store.device)
        except PeerError as exc:
            log.warning("connection failed", address=addr, reason=str(exc))
            return "failed"
        return "ended" if result is not None and not result.error else "failed"

    async def _open(self, addr: str, host: str, port: int) -> net.Channel:
        key, group_key, check = self.store.key, self.store.meta("group_key"), check_peer(self.store)
        if self.connect is None:
            return await net.open_channel(host, port, key, group_key, check)
        try:
            stream = await self.connect(addr)
        except OSError as exc:
            raise PeerError(f"cannot connect: {exc}", addr) from None
        return await net.connect_channel(stream, key, group_key, check, remote=addr)

    async def _serve(self, channel: net.Channel, addr: str, client: bytes) -> SyncResult | None:
        """Run one authenticated connection to its end. Of two links to one device (both dialed at
        once), both sides keep the one whose dialer has the smaller key, unless the one kept has been
        silent or stuck in a send for TAKEOVER_AFTER heartbeats: then the new connection replaces it."""
        device = channel.peer
        while (other := self.links.get(device)) is not None:
            if other.client <= client and not other.stale():
                log.info("duplicate connection closed", peer=self.name_of(device), address=addr)
                await channel.aclose()
                return None
            other.cancel("connection ended: replaced by a new one from the same device (this one was silent or "
                         "stuck)" if other.client <= client else "")
            await other.done.wait()
        link = self.links[device] = Link(self, channel, addr, client)
        log.info("connected", peer=link.name, address=addr)
        self.set_state(device, "connected", addr)
        try:
            result = await link.run()
        finally:
            if self.links.get(device) is link:
                del self.links[device]
            self.set_state(device, "partitioned", addr, link.result.reason if link.result.error else "")
        return result

    def _noticed(self) -> None:
        """The watcher saw events written by any process (the CLI, an agent) or ingested: push them to live peers."""
        self.changed(noticed=True)
        self.dialers.book_changed()

    async def _check_signatures(self) -> None:
        """Check, a little at a time, the signatures of events a peer sent inside a run (ingest checked each
        run's last only): one found damaged is asked of peers again (StoreLog.withheld) until one heals it.
        A round is skipped while links store more events than it would check (a catch-up under way, which
        would wait on it): they are checked once the catch-up slows."""
        while True:
            busy, self.stored = self.stored >= SIGNATURES_PER_S, 0
            checked = busy or await self.run_sync(self.store.check_signatures, SIGNATURES_PER_S)
            await trio.sleep(1.0 if checked else self.heartbeat)

    def changed(self, exclude: Link | None = None, noticed: bool = False) -> None:
        """Local events changed: push them, drop any peer the roster no longer accepts (revoked; unknown once
        the history is here), and start sending to a receive-only peer the roster now admits. `noticed`: by
        the watcher, which cannot tell a link's own store of its peer's events from another write (`poke`)."""
        check = check_peer(self.store) if self.links else None
        for link in self.links.values():
            reason = check(link.channel.peer)
            if reason:
                link.inbox_send.send_nowait(("refuse", "enrolment", reason))
            elif link.conn.guarded and admits(self.store, link.channel.peer):
                link.inbox_send.send_nowait(("admit",))
            elif link is not exclude:
                link.poke(noticed)
        for relay in self.relays:
            if relay is not exclude:
                relay.poke()
        if self.upkeep:
            self.upkeep.poke()

    # -- state for `agentlog status` -----------------------------------------------------------------

    def name_of(self, device: bytes) -> str:
        name = self._names.get(device)
        if name is None:
            try:
                member = self.store.roster().members.get(device)
            except Exception:                       # a log line names the device even when the store fails
                member = None
            if member is None:
                return device.hex()[:12]            # not in the roster yet: look again once it has arrived
            name = self._names[device] = member.name
        return name

    def set_state(self, device: bytes, state: str, addr: str, error: str = "") -> None:
        s = self.states.setdefault(device, PeerState())
        s.name, s.address, s.state, s.error = self.name_of(device), addr, state, error
        s.last_seen_ms = _wall_ms()
        self._dirty = True

    def note(self, link: Link) -> None:
        """A link made progress: remember when we last heard from it and what it holds (saved when the
        frontier moved, or every SEEN_EVERY_S for the last-seen time alone, so idle daemons stay idle)."""
        s = self.states.setdefault(link.channel.peer, PeerState())
        now = _wall_ms()
        frontier = {a.hex(): pos[1] for a, pos in link.conn.theirs.items()}
        if frontier != s.frontier or now - self._seen_saved.get(link.channel.peer, 0) >= SEEN_EVERY_S * 1000:
            self._dirty = True
            self._seen_saved[link.channel.peer] = now
            s.frontier = frontier
        s.last_seen_ms = now

    async def _save_states(self) -> None:
        while True:
            await trio.sleep(SAVE_EVERY_S)
            await self.save_states()

    async def save_states(self) -> None:
        if self._dirty or self.dialers.dirty:
            found = {a: FoundState(**vars(f)) for a, f in self.dialers.found.items()} if self.dialers.dirty else None
            self._dirty = self.dialers.dirty = False
            snapshot = {d: PeerState(**vars(s)) for d, s in self.states.items()}
            try:
                await self.run_sync(self.peer_book.save, snapshot, found)
            except BaseException:
                self._dirty, self.dialers.dirty = True, self.dialers.dirty or found is not None
                raise
            if self._on_state:
                self._on_state()


async def sync_once(store: Store, addr: str, *, timeout: float = 60.0,
                    progress: Callable[[int, int], None] | None = None,
                    snapshot_progress: Callable[[int, int], None] | None = None) -> SyncResult:
    """`agentlog sync`: connect, exchange what each side lacks (bootstrapping from the peer's snapshot
    when it truncated events this device lacks), say goodbye. `progress(stored, expected)` hears of each
    batch stored, `snapshot_progress(received, offered)` of each piece of a snapshot's state.

    Raises:
        PeerError: the connection or handshake failed, was refused, or nothing moved for `timeout` seconds.
    """
    for _ in range(FORK_ROUNDS):
        epoch = _own_epoch(store)
        result = await _sync_round(store, addr, timeout, progress, snapshot_progress)
        healed = result.synced and _own_epoch(store) > epoch
        if not (healed or (result.error and result.reason.startswith("prev:"))):
            break      # else a chain that did not link (asked again from below), or a fork healed meanwhile
    if result.error or not result.synced:
        raise PeerError(result.reason or "the connection ended before the logs were in sync", addr)
    return result


def _own_epoch(store: Store) -> int:
    head = store.heads().get(store.device)
    return head.epoch if head else 0


async def _sync_round(store: Store, addr: str, timeout: float, progress, snapshot_progress) -> SyncResult:
    """One connection of `sync_once`, to its end."""
    host, port = parse_address(addr)
    replicator = Replicator(store)
    result = None
    with trio.move_on_after(timeout) as scope:
        channel = await net.open_channel(host, port, store.key, store.meta("group_key"), check_peer(store))
        link = Link(replicator, channel, address(host, port), store.device)

        def moved(report: Callable[[int, int], None] | None, done: int, total: int) -> None:
            scope.deadline = trio.current_time() + timeout        # the timeout is for silence, not for size
            if report:
                report(done, total)
        link.on_progress = partial(moved, progress)
        link.on_snapshot = partial(moved, snapshot_progress)
        result = await link.run(stop_when_synced=True)
        replicator.set_state(channel.peer, "partitioned", link.address, result.reason if result.error else "")
        replicator.note(link)
        await replicator.save_states()
    if scope.cancelled_caught or result is None:
        raise PeerError(f"sync stalled: nothing moved for {timeout:g} s", addr)
    return result


def sync_once_blocking(store: Store, addr: str, *, timeout: float = 60.0,
                       progress: Callable[[int, int], None] | None = None,
                       snapshot_progress: Callable[[int, int], None] | None = None) -> SyncResult:
    """`sync_once` as a blocking call, for a caller that runs no trio of its own (the CLI)."""
    return trio.run(partial(sync_once, store, addr, timeout=timeout, progress=progress,
                            snapshot_progress=snapshot_progress))
