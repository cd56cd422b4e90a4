"""The listening side of `agentlog serve`: an accept loop that survives running out of file
descriptors, and handshake slots that keep floods of idle connections from starving honest peers.

trio.serve_tcp logs a failed accept through stdlib logging with a traceback and keeps every
accepted connection until its handler ends. Here a failed accept is one JSON line (at most one
per REPORT_EVERY_S); out of file descriptors, the oldest unauthenticated connection is closed
to make room. Connections that have not passed the handshake hold one of SLOTS slots (at most
SLOTS_PER_HOST per remote address): a new connection past either cap evicts a holder of that
kind, the oldest that has sent nothing yet, else the oldest. An idle flood therefore never
evicts a handshake under way; an attacker who sends must open connections from one address
faster than an honest handshake completes to keep one out. Authenticated links hold no slot and are never
closed to make room.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from contextlib import contextmanager

import structlog
import trio

from agentlog.errors import describe
from agentlog.store.peers import address

SLOTS = 64                      # connections in their handshake at once
SLOTS_PER_HOST = 16             # ... of which from one remote address
ACCEPT_PAUSE_S = 0.1            # after a failed accept (out of file descriptors, buffers, memory)
REPORT_EVERY_S = 10.0           # a repeated log line is written at most this often
SHORTAGE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

log = structlog.get_logger("agentlog.sync.listener")


class Throttled:
    """A log line written at most once per `every` seconds; the ones held back are counted in the next."""

    def __init__(self, level: str, event: str, every: float = REPORT_EVERY_S):
        self.level, self.event, self.every = level, event, every
        self.next_at = float("-inf")
        self.held = 0

    def __call__(self, **fields) -> None:
        now = trio.current_time()
        if now < self.next_at:
            self.held += 1
            return
        getattr(log, self.level)(self.event, **fields, **({"repeated": self.held} if self.held else {}))
        self.held, self.next_at = 0, now + self.every


class Slot:
    """One connection's place while it is in its handshake; `active` once the peer has sent anything."""

    __slots__ = ("host", "scope", "active")

    def __init__(self, host: str):
        self.host, self.scope, self.active = host, trio.CancelScope(), False

    def activate(self) -> None:
        self.active = True


class Slots:
    """Connections in their handshake, oldest first. Taking a slot past a cap evicts a holder of that
    kind: the oldest that has sent nothing yet, else the oldest (an idle flood never evicts a handshake
    under way)."""

    def __init__(self, total: int = SLOTS, per_host: int = SLOTS_PER_HOST):
        self.total, self.per_host = total, per_host
        self.held: list[Slot] = []                  # oldest first
        self.evicted = 0
        self._report = Throttled("warning", "handshake slots full: unauthenticated connections closed")

    @contextmanager
    def hold(self, host: str):
        """Hold a slot for the block; the block is cancelled (slot.scope.cancelled_caught) if it is evicted."""
        same = [s for s in self.held if s.host == host]
        if len(same) >= self.per_host:
            self._evict(same)
        elif len(self.held) >= self.total:
            self._evict(self.held)
        slot = Slot(host)
        with slot.scope:
            self.held.append(slot)
            try:
                yield slot
            finally:
                if slot in self.held:
                    self.held.remove(slot)

    def evict_oldest(self) -> bool:
        """Close a connection in its handshake (to free its file descriptor); whether there was one."""
        if not self.held:
            return False
        self._evict(self.held)
        return True

    def _evict(self, among: list[Slot]) -> None:
        victim = next((s for s in among if not s.active), among[0])
        self.held.remove(victim)
        victim.scope.cancel()
        self.evicted += 1
        self._report(address=victim.host, slots=self.total, per_host=self.per_host, evicted_in_all=self.evicted)


async def accept_forever(listener: trio.SocketListener, handler: Callable[[trio.SocketStream], Awaitable[None]],
                         nursery: trio.Nursery, slots: Slots) -> None:
    """Accept connections and start `handler(stream)` for each in `nursery`. Out of file descriptors
    (or buffers, or memory), it closes the oldest unauthenticated connection to make room, or pauses
    while there is none (new connections wait in the kernel's backlog); one log line, never a traceback."""
    report = Throttled("error", "accept failed")
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            evicted = exc.errno in SHORTAGE and slots.evict_oldest()
            pause = ACCEPT_PAUSE_S / 100 if evicted else ACCEPT_PAUSE_S    # the evicted task closes its socket
            report(error=describe(exc), closed_oldest_unauthenticated=evicted, pause_s=pause)
            await trio.sleep(pause)
            continue
        nursery.start_soon(handler, stream)


def host_of(stream: trio.abc.Stream) -> str:
    """The remote IP address of a socket stream ("?" for any other stream)."""
    try:
        return str(stream.socket.getpeername()[0])
    except (AttributeError, OSError, IndexError, TypeError):
        return "?"


def address_of(stream: trio.abc.Stream) -> str:
    """The remote HOST:PORT of a socket stream ("?" for any other stream)."""
    try:
        host, port = stream.socket.getpeername()[:2]
        return address(host, port)
    except (OSError, AttributeError, ValueError, TypeError):
        return "?"
