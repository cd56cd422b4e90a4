"""A relay in the replicator (docs/relay.md): publish every event this device holds that the relay lacks (its
own and those it carries), live as local writes commit; consume the others' events live, ingest them in any
order and any number of times, and ack each once the store committed it. The NATS client runs on its own asyncio
loop in a thread (agentlog.relay.bridge); this is its trio side, and the store work runs in worker threads
(relay_log.py). A relay that is down or refuses this device is a peer in state unreachable or refused, tried
again with backoff: never a crash. In sync and idle, nothing is published."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from agentlog.errors import AgentlogError, PeerError, RelayUnavailable, describe
from agentlog.relay import envelope
from agentlog.relay.config import RelayConfig
from agentlog.store import relay as relay_keys
from agentlog.store.store import Store
from agentlog.sync.relay_log import CARRY_HOLD_S, AckFloor, RelayLog

if TYPE_CHECKING:
    from agentlog.relay.bridge import Bridge, Delivery

log = structlog.get_logger("agentlog.sync.relay")

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
BATCH_BYTES = 4 << 20       # deliveries taken into one ingest: about this many bytes of them
UPKEEP_EVERY_S = 1.0
STATE_EVERY_S = 1.0         # the relay's state and lag are written at most this often, and only when they changed


@dataclass
class RelayResult:
    """What one round with a relay moved (`agentlog sync nats://...`)."""

    address: str
    received: int = 0           # events stored here
    sent: int = 0               # events the relay acknowledged
    skipped: int = 0            # messages skipped as bad
    held: int = 0               # events still missing a predecessor at the end
    bootstrapped: bool = False  # this device started from the relay's snapshot


class RelayPeer:
    """One relay: `run` keeps a session up (with backoff) until cancelled; `poke` says local events changed."""

    def __init__(self, store: Store, config: RelayConfig, *, run_sync: Callable = trio.to_thread.run_sync,
                 on_ingested: Callable[[RelayPeer], None] | None = None, rng: random.Random | None = None,
                 ack_wait_s: float | None = None):
        self.store, self.config = store, config
        self.address = config.address
        self.run_sync = run_sync
        self.on_ingested = on_ingested
        self.rng = rng or random.Random()
        self.ack_wait_s = ack_wait_s
        self.log = RelayLog(store, self.address)
        self.subjects = envelope.stream_subjects(store.group)
        self.state, self.error = "never", ""
        self.we_lack: int | None = None
        self.they_lack: int | None = None
        self.result = RelayResult(self.address)
        self._wake = trio.Event()
        self._acks = AckFloor(_ack_pending() // 2)
        self._saved: tuple | None = None
        self._pending = 0
        self._end = 0              # the stream's last sequence when consuming began: a round reads up to it
        self._seen = 0             # the highest stream sequence delivered
        self._snapshot_there: bytes | None = None      # the relay's last snapshot message, as last seen

    def poke(self) -> None:
        """Local events changed: publish what the relay lacks (coalesced)."""
        self._wake.set()

    # -- running -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a session with the relay until cancelled: on failure, the state says why and the next try waits
        twice as long (up to BACKOFF_MAX_S, jittered); a session that went live starts the backoff over."""
        backoff = BACKOFF_MIN_S
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._report_forever)
            while True:
                went_live = False
                try:
                    went_live = await self.session()
                except RelayUnavailable as exc:
                    self.set_state("refused" if exc.refused else "unreachable", exc.reason)
                except Exception as exc:                 # a bug or the store failing: logged, tried again
                    self.set_state("unreachable", f"internal error: {describe(exc)}")
                    log.error("relay session failed", relay=self.address, error=describe(exc))
                else:
                    self.set_state("unreachable", "connection to the relay ended")
                if went_live:
                    backoff = BACKOFF_MIN_S
                log.info("relay unavailable", relay=self.address, state=self.state, reason=self.error,
                         retry_in_s=round(backoff, 2))
                await self.report()
                await trio.sleep(backoff * self.rng.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def session(self, *, once: bool = False) -> bool:
        """Connect, bring the stream to the configured bounds, consume from the kept sequence, publish what the
        relay lacks, and go on live (`once`: until consumed to the end and published). Returns whether it went
        live; raises RelayUnavailable when the relay is down, refuses us, or the connection is lost."""
        token = trio.lowlevel.current_trio_token()
        send, deliveries = trio.open_memory_channel(math.inf)
        lost: list[str] = []
        down = trio.Event()

        def deliver(batch: list[Delivery]) -> None:
            _soon(token, send.send_nowait, batch)

        def on_down(reason: str) -> None:
            lost.append(reason)
            _soon(token, down.set)

        from agentlog.relay.bridge import Bridge, Credentials  # nats loads only where a relay is used

        c = self.config
        credentials = Credentials(user=c.user, password=c.password, creds=c.creds, tls_ca=c.tls_ca,
                                  tls_cert=c.tls_cert, tls_key=c.tls_key)
        options = {} if self.ack_wait_s is None else {"ack_wait_s": self.ack_wait_s}
        bridge = Bridge(c.address, credentials, on_deliver=deliver, on_down=on_down,
                        name=f"agentlog {self.log.stream}", **options).start()
        went_live = False
        try:
            self.set_state("connecting", self.error)
            await _result(bridge.connect())
            state = await _result(bridge.ensure_stream(self.log.stream, [self.subjects], max_age_s=c.max_age_seconds,
                                                       max_bytes=c.max_bytes))
            if self.log.cursor.seq > state.last_seq:
                log.warning("relay holds less than this device consumed: its stream was made anew; publishing all",
                            relay=self.address, consumed=self.log.cursor.seq, relay_last=state.last_seq)
                self.log.relay_lost()
            there = await _result(bridge.last_message(self.log.stream, self.log.snapshot_subject))
            first = self.log.cursor.seq == 0                     # new here: what the relay holds may start past us
            if there is not None and (first or state.first_seq > self.log.cursor.seq + 1):   # or ours are gone
                if await self.run_sync(self.log.install, there):
                    log.info("bootstrapped from the relay's snapshot", relay=self.address)
                    self.result.bootstrapped = True
                    if self.on_ingested:
                        self.on_ingested(self)
            self._snapshot_there = there
            self._end, self._seen = state.last_seq, self.log.cursor.seq
            self._acks = AckFloor(_ack_pending() // 2)        # a new consumer: what the last one left comes again
            self._pending = await _result(bridge.consume(self.log.stream, self.subjects, self.log.cursor.seq + 1))
            self.set_state("live")
            went_live = True
            caught_up = trio.Event()
            if self._pending == 0 or self._caught_up():
                caught_up.set()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._consume, bridge, deliveries, caught_up)
                    nursery.start_soon(_raise_when, down, lost, self.address)
                    if once:
                        await caught_up.wait()
                        await _result(bridge.stop_consuming())   # what this round publishes need not come back
                        await self._publish_all(bridge)
                    else:
                        await self._publish_forever(bridge, caught_up)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:              # the relay's failure in a task, raised as itself
                unavailable, _ = group.split(RelayUnavailable)
                if unavailable is None:
                    raise
                raise _first(unavailable) from None
            await self._drain(deliveries, bridge)          # the consumer has stopped: what it left, in order
            return True
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(bridge.close)
                if went_live:
                    await self.run_sync(self.log.save)

    # -- consuming -----------------------------------------------------------------------------------

    async def _consume(self, bridge: Bridge, deliveries, caught_up: trio.Event) -> None:
        async for first in deliveries:
            batch, size = list(first), sum(len(d.body) for d in first)
            while size < BATCH_BYTES:
                try:
                    more = deliveries.receive_nowait()
                except trio.WouldBlock:
                    break
                batch += more
                size += sum(len(d.body) for d in more)
            await self._take(bridge, batch)
            if self._caught_up() and deliveries.statistics().current_buffer_used == 0:
                caught_up.set()

    def _caught_up(self) -> bool:
        """Whether everything the stream held when consuming began was delivered: by sequence, since the pending
        count a delivery carries can run ahead of the stream (nats-server 2.9, a push consumer just made)."""
        return self._seen >= self._end

    async def _take(self, bridge: Bridge, batch: list[Delivery]) -> None:
        for d in batch:
            self.log.cursor.delivered(d.stream_seq)
        self._pending = batch[-1].pending
        self._seen = max(self._seen, max(d.stream_seq for d in batch))
        outcome = await self.run_sync(self.log.absorb, batch)
        self.log.cursor.resolved(outcome.done)
        bridge.ack(self._acks.settle(zip(outcome.done, outcome.acks, strict=True), self.log.cursor.seq))
        self.result.received += outcome.accepted
        self.result.skipped += outcome.bad
        self.we_lack = self._pending + len(self.log.held)
        if outcome.accepted and self.on_ingested:
            self.on_ingested(self)

    async def _drain(self, deliveries, bridge: Bridge) -> None:
        """Take whatever was delivered meanwhile (a round's end)."""
        batch = []
        while True:
            try:
                batch += deliveries.receive_nowait()
            except trio.WouldBlock:
                break
        if batch:
            await self._take(bridge, batch)

    # -- publishing ----------------------------------------------------------------------------------

    async def _publish_forever(self, bridge: Bridge, caught_up: trio.Event) -> None:
        """Once consumed to the end (what the relay holds need not be published again), publish what it lacks,
        then again whenever local events change."""
        await caught_up.wait()
        while True:
            self._wake = trio.Event()
            await self._publish_all(bridge, CARRY_HOLD_S)
            with trio.move_on_after(CARRY_HOLD_S if self.log.carried_waiting else math.inf):
                await self._wake.wait()

    async def _publish_all(self, bridge: Bridge, hold_carried: float = 0.0) -> None:
        """Publish what the relay lacks (another device's events only once it lacked them `hold_carried` s)."""
        while found := await self.run_sync(self.log.unpublished, bridge.max_payload, hold_carried):
            sealed = [message for message, _, _ in found]
            positions = [p for _, run, _ in found for p in run]
            self.log.cursor.resolved(await _result(bridge.publish(self.log.stream, sealed)))   # no need to consume
            await self.run_sync(self.log.published, positions, [r for _, _, run in found for r in run])
            self.result.sent += len(positions)
        sealed = await self.run_sync(self.log.snapshot_to_publish, self._snapshot_there, bridge.max_payload)
        if sealed is not None:
            self.log.cursor.resolved(await _result(bridge.publish(self.log.stream, [sealed], rollup=True)))
            self._snapshot_there = sealed.body
            log.info("snapshot published to the relay", relay=self.address, size=len(sealed.body))
        self.they_lack = await self.run_sync(self.log.behind)

    # -- state for `agentlog status` -----------------------------------------------------------------

    def set_state(self, state: str, error: str = "") -> None:
        self.state, self.error = state, error

    async def _report_forever(self) -> None:
        while True:
            await trio.sleep(STATE_EVERY_S)
            await self.report()

    async def report(self) -> None:
        """Write state, lag and last error to the peer book when they changed (a relay not in the peer book,
        named on the command line only, is not written)."""
        now = (self.state, self.we_lack, self.they_lack, self.error)
        if now != self._saved and self.state != "never":
            self._saved = now
            try:
                await self.run_sync(partial(self.store.peer_book.set_relay_state, self.address, state=self.state,
                                            we_lack=self.we_lack, they_lack=self.they_lack, error=self.error))
            except Exception as exc:
                self._saved = None
                log.warning("relay state not saved", relay=self.address, error=describe(exc))


class KeyUpkeep:
    """`serve`'s upkeep of the relay key (agentlog.store.relay.upkeep): grant it to enrolled devices that lack
    it, and a new key when a revoked device holds the current one; run at start and after local changes (at
    most once every UPKEEP_EVERY_S)."""

    def __init__(self, store: Store, run_sync: Callable = trio.to_thread.run_sync):
        self.store, self.run_sync = store, run_sync
        self._wake = trio.Event()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake = trio.Event()
            written = await self.run_sync(relay_keys.upkeep, self.store)
            if written:
                log.info("relay key upkeep", events=len(written))
            await self._wake.wait()
            await trio.sleep(UPKEEP_EVERY_S)


def relay_peers(store: Store, extra: list[str] = (), **options) -> list[RelayPeer]:
    """A RelayPeer for every relay in the peer book and every relay address in `extra` (named on the command
    line, with no options); a peer book entry that does not parse is logged and left out."""
    found: dict[str, RelayConfig] = {}
    for addr, doc in store.peer_book.relays().items():
        try:
            found[addr] = RelayConfig.from_doc(addr, doc or {})
        except AgentlogError as exc:
            log.error("relay left out", relay=addr, error=str(exc))
    for text in extra:
        config = RelayConfig.parse(text)
        found.setdefault(config.address, config)
    return [RelayPeer(store, config, **options) for config in found.values()]


def _ack_pending() -> int:
    """The bridge's bound on unacknowledged deliveries, imported when a relay is used (nats loads slowly)."""
    from agentlog.relay.bridge import MAX_ACK_PENDING
    return MAX_ACK_PENDING


async def _raise_when(down: trio.Event, lost: list[str], address: str) -> None:
    await down.wait()
    raise RelayUnavailable(lost[0] if lost else "connection to the relay lost", address)


def _first(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the exception itself when it is none)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _soon(token, fn, *args) -> None:
    """Run `fn(*args)` in trio's thread, from the bridge's; nothing when trio has finished."""
    try:
        token.run_sync_soon(fn, *args)
    except trio.RunFinishedError:
        pass


async def _result(future):
    """Wait in trio for a bridge call's concurrent Future; cancelling the wait cancels the call."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    future.add_done_callback(lambda _: _soon(token, done.set))
    try:
        await done.wait()
    except trio.Cancelled:
        future.cancel()
        raise
    return future.result()


async def sync_once(store: Store, config: RelayConfig, *, timeout: float = 60.0) -> RelayResult:
    """`agentlog sync nats://...`: consume what the relay holds that this device has not, publish what it lacks.

    Raises:
        PeerError: the relay is down or refused us (RelayUnavailable), or the round took longer than `timeout`.
    """
    peer = RelayPeer(store, config)
    with trio.move_on_after(timeout) as scope:
        try:
            await peer.session(once=True)
        except RelayUnavailable as exc:
            peer.set_state("refused" if exc.refused else "unreachable", exc.reason)
            await peer.report()
            raise
    if scope.cancelled_caught:
        raise PeerError(f"sync with the relay did not finish within {timeout:g} s", config.address)
    peer.result.held = len(peer.log.held)
    peer.we_lack, peer.they_lack = len(peer.log.held), await trio.to_thread.run_sync(peer.log.behind)
    await peer.report()
    return peer.result


def sync_once_blocking(store: Store, config: RelayConfig, *, timeout: float = 60.0) -> RelayResult:
    """`sync_once` for a caller that runs no trio of its own (the CLI)."""
    return trio.run(partial(sync_once, store, config, timeout=timeout))
