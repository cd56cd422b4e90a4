"""Writers nudge a running replicator over loopback UDP, so local events leave within a millisecond.

`agentlog serve` binds a UDP socket on 127.0.0.1 and writes its port to
`<store>/replicator.port` (agentlog/sync/wakeups.py). After each committed write, a Store in
any process sends one byte there. The datagram carries nothing but "look again": the replicator
reads what changed from LMDB, and also looks every wakeups.POLL_S in case a nudge is lost.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

PORT_FILE = "replicator.port"


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
