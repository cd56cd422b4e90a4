"""The replicator's side of the writers' nudges (agentlog/store/nudge.py): a trio UDP socket on
127.0.0.1 whose port is published in the store for writers to send "look again" to; the look at LMDB it
wakes (`watch`); and the wake-ups it passes on to the store's watchers (`Fanout`)."""

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


async def watch(store, changed: Callable[[], None]) -> None:
    """Call `changed()` whenever LMDB's last transaction id moved (a commit by any process), then wake the
    store's watchers: writers nudge the published socket, and it is looked at every POLL_S in case a nudge is
    lost. Runs until cancelled."""
    sock = await listen(store.path)
    fanout = Fanout(store.path)
    try:
        last = store.last_txnid()
        while True:
            with trio.move_on_after(POLL_S):
                await sock.recv(64)
            txnid = store.last_txnid()
            if txnid != last:
                last = txnid
                changed()
                fanout()
    finally:
        unpublish(store.path, sock)
        sock.close()
        fanout.close()


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
