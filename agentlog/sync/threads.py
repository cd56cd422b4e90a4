"""Blocking store work in a worker thread for the replicator (`run_sync`): trio.to_thread.run_sync without the
scheduler pass its default thread limiter spends handing out a free slot: a live push is stored by its receiver in
a worker thread, and every pass before that commit delays the event."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class _Limiter:
    """trio's default thread limiter, taken at once when a slot is free, waited for as trio does when none is."""

    def __init__(self, inner: trio.CapacityLimiter):
        self.inner = inner

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        try:
            self.inner.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            await self.inner.acquire_on_behalf_of(borrower)

    def release_on_behalf_of(self, borrower: object) -> None:
        self.inner.release_on_behalf_of(borrower)


async def run_sync(fn: Callable[..., T], *args) -> T:
    """`fn(*args)` in a worker thread of trio's cache, within trio's default thread limit; its result."""
    return await trio.to_thread.run_sync(fn, *args, limiter=_Limiter(trio.to_thread.current_default_thread_limiter()))
