"""The cyclic garbage collector paused over bulk work that makes many small acyclic objects (tuples, payloads):
it would only walk them again and again."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_gc() -> Iterator[None]:
    """The cyclic collector off for the block (a replay's or refold's events: a sixth of a replay's time; a
    received batch's events, kept until stored), on again after it if it was on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
