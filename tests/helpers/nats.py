"""A real `nats-server -js` for tests: a port on 127.0.0.1 it picks itself (`-p -1`, read back from its ports
file, so parallel tests never race for one), its own store directory, started and stopped by PID. Tests skip
(with the reason) when the binary is missing, unless AGENTLOG_REQUIRE_NATS=1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

READY_S = 10.0


def binary() -> str | None:
    return shutil.which("nats-server")


def require() -> str:
    """The nats-server binary; skips the test when it is missing (fails instead under AGENTLOG_REQUIRE_NATS=1)."""
    found = binary()
    if found is None:
        reason = "nats-server is not installed (apt-get install nats-server)"
        if os.environ.get("AGENTLOG_REQUIRE_NATS") == "1":
            pytest.fail(reason + ", and AGENTLOG_REQUIRE_NATS=1")
        pytest.skip(reason)
    return found


def free_port() -> int:
    """A port no one listens on now (nats-server takes no port 0 for clients): bind 127.0.0.1:0 and close."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """`NatsServer(tmp_path).start()`: a JetStream server with its store under tmp_path; `.url`, `.stop()`
    (SIGTERM), `.kill()` (SIGKILL); start again on the same port (the one it picked first) and store after
    either."""

    def __init__(self, root: Path, *, user: str | None = None, password: str | None = None,
                 port: int | None = None):
        self.root = Path(root)
        self.store_dir = self.root / "nats-store"
        self.user, self.password = user, password
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "nats.log"
        self.ports_dir = self.root / "nats-ports"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        exe = require()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.ports_dir, ignore_errors=True)
        self.ports_dir.mkdir(parents=True)
        args = [exe, "-js", "-a", "127.0.0.1", "-p", str(self.port or -1), "-sd", str(self.store_dir),
                "-ports_file_dir", str(self.ports_dir)]
        if self.user:
            args += ["--user", self.user, "--pass", self.password or ""]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            if self.port is None:
                self.port = self._picked()
            if self.port is not None and self._ready():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server on port {self.port} not ready within {READY_S:g} s")

    def _picked(self) -> int | None:
        """The client port the server picked, once its ports file is written."""
        for path in self.ports_dir.glob("*.ports"):
            try:
                return int(json.loads(path.read_text())["nats"][0].rsplit(":", 1)[1])
            except (ValueError, KeyError, IndexError):
                return None
        return None

    def _ready(self) -> bool:
        """The client port answers with INFO and the log says JetStream is up."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if not s.recv(4096).startswith(b"INFO"):
                    return False
        except OSError:
            return False
        return "Server is ready" in self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        # The next start appends to the same log: clear "ready" so a restart waits for its own.
        if self.log_path.exists():
            self.log_path.rename(self.log_path.with_suffix(f".{time.monotonic_ns()}.log"))
        return code
