"""The store under stress and damage: map growth with many threads and processes at once,
files cut short or overwritten, a store that vanished, a full disk."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentlog import home, payloads
from agentlog.crypto import DeviceKey
from agentlog.store import Store

WORKER = Path(__file__).with_name("store_worker.py")
TINY_MAP = 256 * 1024


def _big(i: int, size: int = 40_000) -> payloads.MemoryPut:
    return payloads.MemoryPut(entry=i.to_bytes(16, "big"), type="fact", content=f"{i}:" + "x" * size)


def test_map_grows_safely_under_threads_and_processes(tmp_path, laptop):
    """From a 256 KiB map the store grows about eight times while three reader threads keep
    transactions open, two writer threads append large events and three other processes (with
    tiny maps of their own) open, read and append to the same home; nothing fails and nothing is
    lost. Before the gate, growing the map under open transactions failed within a few growths."""
    laptop.close()
    path = tmp_path / "laptop"
    store = Store(path / "store", DeviceKey(home.read_key(path)[1]), map_size=TINY_MAP, create=False)
    stop, errors = threading.Event(), []
    stop_file = tmp_path / "stop"
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(path), str(stop_file), str(TINY_MAP)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]

    def guarded(fn):
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
        return run

    def read():
        while not stop.is_set():
            store.count()
            store.prefs.get("worker.seen")
            with store.raw_txn() as txn:          # a transaction held while others write and grow
                txn.stat(store.db("events"))
                time.sleep(0.001)
                txn.get(b"group", db=store.db("meta"))

    def write(first):
        for i in range(first, first + 400, 5):
            if stop.is_set():
                return
            store.append_many([_big(j) for j in range(i, i + 5)])

    assert [w.stdout.readline().strip() for w in workers] == ["ready"] * 3
    readers = [threading.Thread(target=guarded(read)) for _ in range(3)]
    writers = [threading.Thread(target=guarded(lambda first=first: write(first))) for first in (0, 1000)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    stop_file.touch()
    results = [(w.wait(timeout=120), w.stdout.read(), w.stderr.read()) for w in workers]
    try:
        assert not errors, errors
        assert all(code == 0 for code, _, _ in results), results
        assert store.map_size() >= 64 * TINY_MAP
        written = sum(int(out.split()[1]) for _, out, _ in results)
        assert store.count() == 1 + 800 + written
        from agentlog.verify import verify_store
        assert verify_store(store).ok
    finally:
        store.close()
