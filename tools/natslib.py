"""A real `nats-server -js` for the tools (bench, scaling measurements, demo): on 127.0.0.1 with its own store
directory, a client and a monitoring port it picks itself (`-p -1 -m -1`, read back from its ports file; a
restart reuses them), stopped by PID. tests/helpers/nats.py is the tests' twin, with pytest's skip."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

BINARY = "nats-server"
DEADLINE = 30.0


class NatsMissing(RuntimeError):
    """nats-server is not installed."""


def binary() -> str:
    """The nats-server executable, or NatsMissing naming the package that provides it."""
    found = shutil.which(BINARY)
    if found is None:
        raise NatsMissing("nats-server is not installed (Debian: apt-get install nats-server)")
    return found


class NatsServer:
    """One nats-server with JetStream under `root`: start, stop (SIGTERM), kill (-9), monitoring JSON."""

    def __init__(self, root: Path, *extra: str):
        self.dir, self.extra = Path(root), list(extra)
        self.store_dir = self.dir / "store"
        self.port: int | None = None
        self.monitor_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> NatsServer:
        """Start (or restart, on the same ports) and wait until it accepts clients."""
        exe = binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log_path, ports = self.dir / f"nats-server.{self.starts}.log", self.dir / "ports"
        shutil.rmtree(ports, ignore_errors=True)
        ports.mkdir()
        args = [exe, "-js", "-a", "127.0.0.1", "-p", str(self.port or -1), "-m", str(self.monitor_port or -1),
                "-sd", str(self.store_dir), "-ports_file_dir", str(ports), *self.extra]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited {self.proc.returncode} on start: {log_path.read_text()[-800:]}")
            for path in ports.glob("*.ports") if self.port is None else ():
                try:
                    found = json.loads(path.read_text())
                except ValueError:
                    continue
                self.port = int(found["nats"][0].rsplit(":", 1)[1])
                self.monitor_port = int(found["monitoring"][0].rsplit(":", 1)[1])
            if self.port is not None and _accepts(self.port) and "Server is ready" in log_path.read_text():
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not ready within {DEADLINE:g} s: {log_path.read_text()[-800:]}")
            time.sleep(0.02)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the deadline; reaped either way. Does nothing when not running."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(DEADLINE)

    def monitor(self, endpoint: str, **query: object) -> dict:
        """A monitoring endpoint's JSON (`varz`, `jsz`, ...), e.g. monitor("jsz", streams=1)."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/{endpoint}?{qs}", timeout=30) as r:
            return json.loads(r.read())

    def rss_mb(self) -> float:
        """The server process's resident memory, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def open_files(self) -> int:
        """File descriptors the server process holds (store files and sockets)."""
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))

    def store_mb(self) -> float:
        return sum(p.stat().st_size for p in self.store_dir.rglob("*") if p.is_file()) / 1e6


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False
