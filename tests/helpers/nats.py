"""A real `nats-server -js` for tests: on 127.0.0.1, its own store directory, started and stopped by PID.

The first start lets the server choose a free client port (`-p -1`) and reads it from the ports file the
server writes; a restart (after `stop` or `kill`) reuses that port, so devices configured with the relay's
address reach the same relay again. Without the binary the tests that need it skip with a reason, except
when AGENTLOG_REQUIRE_NATS=1 (set by .ci/run), where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

BINARY = "nats-server"
DEADLINE = 30.0          # seconds: generous, only a hang takes this long


def nats_server_binary() -> str:
    """The nats-server executable; skips the test without it (fails instead when AGENTLOG_REQUIRE_NATS=1)."""
    found = shutil.which(BINARY)
    if found is None:
        if os.environ.get("AGENTLOG_REQUIRE_NATS") == "1":
            pytest.fail("nats-server is not installed and AGENTLOG_REQUIRE_NATS=1: .ci/run installs Debian's "
                        "nats-server package")
        pytest.skip("nats-server is not installed (apt-get install nats-server); CI runs this test")
    return found


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


class NatsServer:
    """One nats-server with JetStream under `root / name`: start, stop (SIGTERM), kill (-9), its monitoring."""

    def __init__(self, root: Path, name: str = "nats"):
        self.dir = Path(root) / name
        self.store_dir = self.dir / "store"
        self.port: int | None = None
        self.monitor_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        assert self.port, "the nats-server was never started"
        return f"nats://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """HOST:PORT, as `agentlog peers add nats://...` takes it after the scheme."""
        return self.url.removeprefix("nats://")

    def start(self) -> NatsServer:
        """Start (or restart, on the same ports) and wait until it accepts clients."""
        assert not self.running(), "already running"
        binary = nats_server_binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = self.dir / f"nats-server.{self.starts}.log"
        ports = self.dir / "ports"
        shutil.rmtree(ports, ignore_errors=True)
        ports.mkdir()
        args = [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port or -1), "-m", str(self.monitor_port or -1),
                "-sd", str(self.store_dir), "-ports_file_dir", str(ports)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                log = self.log_path.read_text()
                raise AssertionError(f"nats-server exited {self.proc.returncode} on start:\n{log}")
            if self.port is None:
                self._read_ports(ports)
            if self.port is not None and _accepts(self.port) and "Server is ready" in self.log_path.read_text():
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"nats-server not ready within {DEADLINE:g} s:\n{self.log_path.read_text()}")
            time.sleep(0.02)

    def _read_ports(self, ports: Path) -> None:
        for path in ports.glob("*.ports"):
            try:
                found = json.loads(path.read_text())
            except ValueError:
                return
            self.port = int(found["nats"][0].rsplit(":", 1)[1])
            self.monitor_port = int(found["monitoring"][0].rsplit(":", 1)[1])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM and wait for the exit; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE)

    def kill(self) -> int:
        """SIGKILL (kill -9) and reap."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(DEADLINE)

    def cleanup(self) -> None:
        """Teardown: whatever state the test left it in, end this server (by its PID) and reap it."""
        if self.running():
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def monitor(self, endpoint: str, **query: object) -> dict:
        """A monitoring endpoint's JSON (`jsz`, `varz`, `connz`...), e.g. monitor("jsz", streams=1)."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/{endpoint}?{qs}", timeout=10) as r:
            return json.loads(r.read())

    def stored_files(self) -> list[Path]:
        """Every file under the server's store directory."""
        return sorted(p for p in self.store_dir.rglob("*") if p.is_file())
