"""The addresses a running replicator dials, one dial task each, started and stopped as the set changes: the
`--peer` options, the peer book (read again after the store changed, so `agentlog peers add` and `peers remove`
take effect in a running `serve`), and the devices discovered on the network (agentlog.sync.mdns) while their
announcement lasts. What became of each discovered address is kept for `agentlog status`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
import trio

from agentlog.errors import AgentlogError
from agentlog.store.peers import FoundState

log = structlog.get_logger("agentlog.sync.dialing")
BOOK_PAUSE_S = 0.2           # the peer book is read again at most this often
DISCOVERED_MAX = 32          # discovered addresses dialed at once (announcements are cheap to fake)


class Dialers:
    """One dial task per wanted address, in the replicator's nursery (`start`). `dial(address)` runs until
    cancelled."""

    def __init__(self, dial: Callable[[str], Awaitable[None]], read_book: Callable[[], Awaitable[list[str]]],
                 fixed: list[str], book: list[str]):
        self._dial, self._read_book = dial, read_book
        self.fixed, self.book = list(fixed), list(book)
        self.found: dict[str, FoundState] = {}      # discovered address -> what became of it
        self.dirty = False                          # `found` changed since it was last saved
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._book_changed = trio.Event()

    def wanted(self) -> list[str]:
        announced = [a for a, f in self.found.items() if f.state != "gone"][:DISCOVERED_MAX]
        return list(dict.fromkeys([*self.fixed, *self.book, *announced]))

    def start(self, nursery: trio.Nursery) -> None:
        """Dial every wanted address, in `nursery`, from now on."""
        self._nursery = nursery
        self._update()

    async def follow_book(self) -> None:
        """Read the peer book again after each `book_changed`, and dial what it adds, until cancelled."""
        while True:
            await self._book_changed.wait()
            self._book_changed = trio.Event()
            try:
                book = await self._read_book()
            except AgentlogError as exc:
                log.warning("peer book not read", error=str(exc))
            else:
                if book != self.book:
                    self.book = book
                    self._update()
            await trio.sleep(BOOK_PAUSE_S)

    def book_changed(self) -> None:
        """The store changed: read the peer book again (coalesced)."""
        self._book_changed.set()

    def discovered(self, addr: str, present: bool) -> None:
        """A device of this group announced itself at `addr` (`present`), or withdrew that announcement."""
        old = self.found.get(addr)
        if present or old is not None:
            self.found[addr] = FoundState("announced" if present else "gone", old.device if old else "",
                                          old.error if old else "", time.time_ns() // 1_000_000)
            self.dirty = True
        self._update()

    def outcome(self, addr: str, error: str = "", device: bytes = b"") -> None:
        """A dial of `addr` passed the handshake with `device`, or failed with `error`: kept when `addr` was
        discovered."""
        found = self.found.get(addr)
        if found is not None and (found.error, found.device) != (error, device.hex() or found.device):
            found.error, found.device, self.dirty = error, device.hex() or found.device, True

    def _update(self) -> None:
        if self._nursery is None:
            return
        wanted = self.wanted()
        for addr in [a for a in self._scopes if a not in wanted]:
            log.info("peer no longer dialed", address=addr)
            self._scopes.pop(addr).cancel()
        for addr in wanted:
            if addr not in self._scopes:
                scope = self._scopes[addr] = trio.CancelScope()
                self._nursery.start_soon(self._one, addr, scope)

    async def _one(self, addr: str, scope: trio.CancelScope) -> None:
        with scope:
            await self._dial(addr)
        if self._scopes.get(addr) is scope:
            del self._scopes[addr]
