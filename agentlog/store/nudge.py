"""Writers nudge a running replicator over loopback UDP, so local events leave within a millisecond.

`agentlog serve` binds a UDP socket on 127.0.0.1 and writes its port to
`<store>/replicator.port`. After each committed write, a Store in any process sends one
byte there. The datagram carries nothing but "look again": the replicator reads what
changed from LMDB, and also looks every POLL_S in case a nudge is lost.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agentlog.errors import StoreError

PORT_FILE = "replicator.port"
POLL_S = 0.05


class Nudger:
    """Sends the nudge; costs one stat (and one sendto while a replicator runs) per write."""

    def __init__(self, store_dir: Path):
        self.path = Path(store_dir) / PORT_FILE
        self._stamp: int | None = None
        self._port: int | None = None
        self._sock: socket.socket | None = None

    def __call__(self) -> None:
        try:
            stamp = os.stat(self.path).st_mtime_ns
            if stamp != self._stamp:
                self._stamp, self._port = stamp, int(self.path.read_text().strip() or 0)
            if self._port:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(b"\x01", ("127.0.0.1", self._port))
        except (OSError, ValueError):
            return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def listen(store_dir: Path):
    """A bound trio UDP socket whose port is published for writers; the caller closes it and calls `unpublish`."""
    import trio

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
