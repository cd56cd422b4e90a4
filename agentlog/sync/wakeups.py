"""The replicator's side of the writers' nudges (agentlog/store/nudge.py): a trio UDP socket on
127.0.0.1 whose port is published in the store for writers to send "look again" to; the look at LMDB it
wakes (`Watch`); and the wake-ups it passes on to the store's watchers (`Fanout`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import trio

from agentlog.errors import StoreError
from agentlog.store.nudge import PORT_FILE
from agentlog.watch.watcher import WATCHERS_DIR

POLL_S = 0.05
"""The replicator also looks this often, in case a nudge is lost."""


async def listen(store_dir: Path):
    """A bound trio UDP socket whose port is published for writers; the caller closes it and calls `unpublish`."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    path = Path(store_dir) / PORT_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(str(sock.getsockname()[1]))
        os.replace(tmp, path)
    except OSError as exc:                    # a full disk
        sock.close()
        raise StoreError(f"cannot write {tmp}: {exc.strerror or exc}") from None
    return sock


def unpublish(store_dir: Path, sock) -> None:
    """Remove the port file if it is still this socket's."""
    path = Path(store_dir) / PORT_FILE
    try:
        if path.read_text().strip() == str(sock.getsockname()[1]):
            path.unlink()
    except (OSError, ValueError):
        pass


class Watch:
    """The replicator's look at LMDB's last transaction id (`run`): `changed()` hears of every commit by any
    process, then the store's watchers are woken; writers nudge the published socket, and it is looked at every
    POLL_S in case a nudge is lost. A commit seen while the replicator stores a peer's batch (`busy()`) waits
    for that store's result (`settle`): when it was only that store, which the replicator pushes on itself,
    `changed` hears nothing of it."""

    def __init__(self, store, changed: Callable[[], None], busy: Callable[[], bool]):
        self.store, self.changed, self.busy = store, changed, busy
        self.last: int | None = None
        self.pending: tuple[int, int] | None = None    # commits (after, up to) seen while busy
        self.fanout: Fanout | None = None

    async def run(self) -> None:
        """Look until cancelled."""
        sock = await listen(self.store.path)
        self.fanout = Fanout(self.store.path)
        try:
            self.last = self.store.last_txnid()
            while True:
                with trio.move_on_after(POLL_S):
                    await sock.recv(64)
                txnid = self.store.last_txnid()
                if txnid != self.last:
                    since, self.last = self.last, txnid
                    self.fanout()
                    if self.busy():
                        self.pending = (self.pending[0] if self.pending else since, txnid)
                    else:
                        self.changed()
        finally:
            unpublish(self.store.path, sock)
            sock.close()
            self.fanout.close()
            self.fanout = None

    def settle(self, own: tuple[int, int] | None) -> None:
        """A store of a peer's batch ended; `own`: it made exactly the commits after `own[0]` up to `own[1]`,
        and no other process committed meanwhile. Those commits are taken as seen (the store's watchers are
        woken now when they were not yet); the commits seen meanwhile reach `changed` unless they were only
        those."""
        if own is not None and self.fanout is not None and self.last == own[0]:
            self.last = own[1]
            self.fanout()
        pending, self.pending = self.pending, None
        if pending is not None and not (own is not None and own[0] <= pending[0] and pending[1] <= own[1]):
            self.changed()


class Fanout:
    """Passes the replicator's wake-ups on to the watchers registered in the store (agentlog/watch/watcher.py):
    one byte to each, re-listing them only when their directory changed. A writer never does this: `serve`
    does it once per change, whatever the number of watchers."""

    def __init__(self, store_dir: Path):
        self.dir = Path(store_dir) / WATCHERS_DIR
        self._stamp: int | None = None
        self._ports: list[int] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def __call__(self) -> None:
        try:
            stamp = os.stat(self.dir).st_mtime_ns
        except OSError:
            return
        if stamp != self._stamp:
            self._stamp = stamp
            self._ports = [int(p.name) for p in self.dir.iterdir() if p.name.isdigit()]
        for port in self._ports:
            try:
                self._sock.sendto(b"\x01", ("127.0.0.1", port))
            except OSError:                     # a watcher that ended without unregistering
                continue

    def close(self) -> None:
        self._sock.close()
