"""The listening side of `agentlog serve`: an accept loop that survives running out of file
descriptors, and handshake slots that keep floods of idle connections from starving honest peers.

trio.serve_tcp logs a failed accept through stdlib logging with a traceback and keeps every
accepted connection until its handler ends; here a failed accept is one JSON line (at most one
per REPORT_EVERY_S) and a pause, and connections that have not passed the handshake hold one of
SLOTS slots (at most SLOTS_PER_HOST per remote address): a new connection past either cap
evicts the oldest one holding a slot of that kind, so an attacker must keep opening connections
faster than an honest handshake completes to keep one out. Authenticated links hold no slot.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from contextlib import contextmanager

import structlog
import trio

SLOTS = 64                      # connections in their handshake at once
SLOTS_PER_HOST = 16             # ... of which from one remote address
ACCEPT_PAUSE_S = 0.1            # after a failed accept (out of file descriptors, buffers, memory)
REPORT_EVERY_S = 10.0           # a repeated log line is written at most this often
SHORTAGE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ERROR_TEXT_MAX = 300            # characters of an exception's text in a log line

log = structlog.get_logger("agentlog.listener")


def describe(exc: BaseException) -> str:
    """One bounded line for a log: the exception's type and text (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    if len(text) > ERROR_TEXT_MAX:
        text = text[:ERROR_TEXT_MAX] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


class Slots:
    """Connections in their handshake, oldest first; taking a slot past a cap evicts the oldest holder."""

    def __init__(self, total: int = SLOTS, per_host: int = SLOTS_PER_HOST):
        self.total, self.per_host = total, per_host
        self.held: dict[trio.CancelScope, str] = {}         # insertion order is age
        self.evicted = 0
        self._report = Throttled("warning", "handshake slots full: oldest unauthenticated connections closed")

    @contextmanager
    def hold(self, host: str):
        """Hold a slot for the block; the block is cancelled (scope.cancelled_caught) if it is evicted."""
        mine = [s for s, h in self.held.items() if h == host]
        if len(mine) >= self.per_host:
            self._evict(mine[0], host)
        elif len(self.held) >= self.total:
            self._evict(next(iter(self.held)), host)
        with trio.CancelScope() as scope:
            self.held[scope] = host
            try:
                yield scope
            finally:
                self.held.pop(scope, None)

    def _evict(self, scope: trio.CancelScope, newcomer: str) -> None:
        host = self.held.pop(scope)
        scope.cancel()
        self.evicted += 1
        self._report(address=host, newcomer=newcomer, slots=self.total, per_host=self.per_host,
                     evicted_in_all=self.evicted)


async def accept_forever(listener: trio.SocketListener, handler: Callable[[trio.SocketStream], Awaitable[None]],
                         nursery: trio.Nursery) -> None:
    """Accept connections and start `handler(stream)` for each in `nursery`; a failed accept pauses
    the loop (the connection waits in the kernel's backlog) and logs one line, never a traceback."""
    report = Throttled("error", "accept failed; pausing")
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            report(error=describe(exc), shortage=exc.errno in SHORTAGE, pause_s=ACCEPT_PAUSE_S)
            await trio.sleep(ACCEPT_PAUSE_S)
            continue
        nursery.start_soon(handler, stream)


def host_of(stream: trio.abc.Stream) -> str:
    """The remote IP address of a socket stream ("?" for any other stream)."""
    try:
        return str(stream.socket.getpeername()[0])
    except (AttributeError, OSError, IndexError, TypeError):
        return "?"
