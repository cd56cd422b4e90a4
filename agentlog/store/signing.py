"""A large batch's signatures made on several threads: libsodium drops the GIL, so append_many's ids are
signed in chunks at once, by the calling thread and a small pool of workers. A smaller batch is signed on the
calling thread alone: each signature takes the GIL back, and below POOL_FROM ids the hand-offs between the
threads cost more CPU than the second core saves in wall time (append_many of 100 on 2 cores: the same wall
time, and 8 µs more CPU per event, a third more than signing on one thread)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from agentlog.crypto import DeviceKey

WORKERS = max(1, min(4, os.cpu_count() or 1))
CHUNK = 256
POOL_FROM = 4096


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(WORKERS - 1, thread_name_prefix="agentlog-crypto")


def sign_many(key: DeviceKey, event_ids: list[bytes]) -> list[bytes]:
    """Sign many ids with `key`, order kept: this thread and the workers take chunks in turn.

    The caller signs too and never waits for a worker to wake up (that can take a
    millisecond on a VM), only for chunks a worker has already taken.
    """
    if len(event_ids) < POOL_FROM or WORKERS == 1:
        return key.sign_all(event_ids)
    chunks = [event_ids[i : i + CHUNK] for i in range(0, len(event_ids), CHUNK)]
    parts: list = [None] * len(chunks)
    todo, done = iter(range(len(chunks))), threading.Condition()

    def work() -> None:
        for k in todo:
            try:
                part = key.sign_all(chunks[k])
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                part = exc
            with done:
                parts[k] = part
                done.notify()

    for _ in range(WORKERS - 1):
        _executor().submit(work)
    work()
    with done:
        done.wait_for(lambda: all(part is not None for part in parts))
    for part in parts:
        if isinstance(part, Exception):
            raise part
    return [sig for part in parts for sig in part]
