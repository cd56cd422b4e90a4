"""The reader's half of watching (`store.watch(...)`): a position in the change log, woken when the store changes.

A watcher binds a UDP socket on 127.0.0.1 and registers its port in `<store>/watchers/` (a file named by the
port, holding the pid). `agentlog serve` sends each registered port one byte whenever the store changed (a write
by any process, or a peer's events): the same wake-up the replicator takes for its live push, passed on, so a
writer does nothing per watcher. Without a running `serve` (or if a datagram is lost), the watcher notices a
change by LMDB's last transaction id, looked at every POLL_S while it waits, as the replicator does.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from pathlib import Path

from agentlog.errors import InvalidValueError
from agentlog.watch import changelog
from agentlog.watch.changes import GAP, Change, Filter, change_of

WATCHERS_DIR = "watchers"
POLL_S = 0.05
BATCH = 512


class Watcher:
    """Changes to the views after `position` (None: from now), as they commit. Iterate it in a thread (`for`),
    in asyncio or trio (`async for`), or call `poll()` for what is there now; `close()` (or `with`) ends it."""

    def __init__(self, store, flt: Filter, position: int | None = None):
        self.store, self.filter = store, flt
        self.db = store.dbs[changelog.DBS[0]]
        first, last = store.read(lambda txn: changelog.bounds(txn, self.db))
        if position is not None and (not isinstance(position, int) or isinstance(position, bool) or position < 0):
            raise InvalidValueError(f"position {position!r} must be a whole number from 0 (a Change's position)")
        if position is not None and position > last:
            raise InvalidValueError(f"position {position} is past the last change this store recorded ({last})")
        self.position = last if position is None else position
        self._pending: deque[Change] = deque()
        self._names: tuple[bytes, dict] = (b"", {})
        self._txnid = store.last_txnid()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(("127.0.0.1", 0))
        self._file = Path(store.path) / WATCHERS_DIR / str(self._sock.getsockname()[1])
        try:
            self._file.parent.mkdir(exist_ok=True)
            _prune(self._file.parent)
            self._file.write_text(str(os.getpid()))
        except OSError:                    # a read-only home: the watcher still sees changes by POLL_S
            self._file = None

    # -- reading -----------------------------------------------------------------------------------------

    def poll(self) -> list[Change]:
        """The changes recorded after the position that pass the filter (up to BATCH rows read); advances it."""
        device = self.store.device.hex()

        def read(txn):
            first, _ = changelog.bounds(txn, self.db)
            out = []
            if first > self.position + 1:
                out.append(Change(first - 1, GAP, self.store.now_ms()))
                self.position = first - 1
            names = self._device_names(txn)
            for row in changelog.rows_after(txn, self.db, self.position, BATCH):
                self.position = row.position
                if self.filter.wants(row):
                    change = change_of(row, device, names)
                    if self.filter.keeps(change):
                        out.append(change)
            return out
        return self.store.read(read)

    def _device_names(self, txn) -> dict[bytes, str]:
        raw = bytes(txn.get(b"state", db=self.store.dbs["views.roster"]) or b"")
        if raw != self._names[0]:
            roster = self.store.roster()
            self._names = (raw, {d: m.name for d, m in roster.members.items()})
        return self._names[1]

    def next_ready(self) -> Change | None:
        """The next change if one is recorded already, else None (never waits)."""
        if not self._pending:
            self._pending.extend(self.poll())
        return self._pending.popleft() if self._pending else None

    # -- waiting -----------------------------------------------------------------------------------------

    def fileno(self) -> int:
        """The wake-up socket: readable when the store may have changed."""
        return self._sock.fileno()

    def changed(self) -> bool:
        """Drain the wake-ups; whether the store changed since last asked (by any process)."""
        try:
            while self._sock.recv(64):
                pass
        except (BlockingIOError, OSError):
            pass
        txnid = self.store.last_txnid()
        moved, self._txnid = txnid != self._txnid, txnid
        return moved

    def wait(self, timeout: float | None = None) -> Change | None:
        """The next change, waiting up to `timeout` seconds (None: until one comes); None when none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            change = self.next_ready()
            if change is not None:
                return change
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            while True:
                step = POLL_S if left is None else min(POLL_S, max(left, 0))
                select.select([self._sock], [], [], step)
                if self.changed() or (deadline is not None and time.monotonic() >= deadline):
                    break

    def __iter__(self):
        return self

    def __next__(self) -> Change:
        return self.wait()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Change:
        from agentlog.watch.waiting import readable

        while True:
            change = self.next_ready()
            if change is not None:
                return change
            while not self.changed():
                await readable(self._sock, POLL_S)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.unlink()
            except OSError:
                pass
            self._file = None
        self._sock.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _prune(folder: Path) -> None:
    """Remove the registrations of watchers whose process is gone (killed before it could unregister)."""
    for entry in folder.iterdir():
        try:
            os.kill(int(entry.read_text() or 0), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue
