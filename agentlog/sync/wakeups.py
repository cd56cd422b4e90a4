"""The replicator's side of the writers' nudges (agentlog/store/nudge.py): a trio UDP socket on
127.0.0.1 whose port is published in the store for writers to send "look again" to."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import trio

from agentlog.errors import StoreError
from agentlog.store.nudge import PORT_FILE

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
