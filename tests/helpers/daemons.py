"""Real `agentlog serve` daemons for tests: subprocesses on 127.0.0.1, started and stopped by PID.

Homes are provisioned with the Python API (a founder and devices it enrolled, each joined by
its token) and closed before any daemon opens them. A daemon's stderr goes to a file, one JSON
object per line, so a test reads its log at any time without a pipe to drain. Nothing here
asserts on timing: `wait_until` polls with generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agentlog.log import payloads
from agentlog.store import devices, home

DEADLINE = 30.0          # seconds: generous, only a hang or a real bug takes this long
POLL = 0.05


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}


def agentlog(home_dir: Path, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run the CLI as a user would: `python -m agentlog --home HOME ARGS...`."""
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(home_dir), *args],
                          capture_output=True, text=True, env=_env(), timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"agentlog {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def closed_port() -> int:
    """A loopback port nothing listens on (bound once to find it free, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(home_dir: Path) -> dict:
    return json.loads(agentlog(home_dir, "status", "--json").stdout)


def provision(root: Path, *names: str) -> dict[str, Path]:
    """Homes under `root`: the first name founds a group and enrols the others, which join by token."""
    homes = {name: root / name for name in names}
    founder = home.create(homes[names[0]], names[0])
    try:
        founder.create_group(names[0])
        for name in names[1:]:
            with home.create(homes[name], name) as store:
                devices.join(store, devices.enroll(founder, store.device, name))
    finally:
        founder.close()
    return homes


def observe(home_dir: Path, n: int = 1, tag: str = "") -> None:
    """Append `n` observations on this device from the test process (another process beside its daemon)."""
    with home.open_home(home_dir) as store:
        store.append_many([payloads.Observation(setting=f"test.{tag or 'x'}", value=f"{tag}{i}") for i in range(n)])


def snapshot(home_dir: Path) -> dict:
    """What a home holds now: event count, frontier (author -> seq), view digests, forks."""
    with home.open_home(home_dir) as store:
        return {"count": store.count(), "frontier": store.frontier(),
                "views": {name: v["digest"] for name, v in store.views().items()}, "forks": len(store.forks())}


def wait_until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE, interval: float = POLL):
    """Poll `predicate` until it returns something truthy (returned); fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


def converged(*homes: Path, count: int | None = None) -> dict | None:
    """The common snapshot when every home holds the same events and view digests (and `count` of them)."""
    snaps = [snapshot(h) for h in homes]
    first = snaps[0]
    if all(s["frontier"] == first["frontier"] and s["views"] == first["views"] for s in snaps) and \
            (count is None or first["count"] == count):
        return first
    return None


def wait_converged(*homes: Path, count: int | None = None, timeout: float = DEADLINE) -> dict:
    def check():
        return converged(*homes, count=count)
    try:
        return wait_until(check, "converge", timeout)
    except AssertionError:
        detail = {h.name: {k: v for k, v in snapshot(h).items() if k != "views"} for h in homes}
        raise AssertionError(f"homes did not converge within {timeout:g} s (count {count}): {detail}\n"
                             f"{log_tails(*homes)}") from None


def log_tails(*homes: Path, lines: int = 15) -> str:
    """The last lines of every `serve` log of these homes: what a daemon was doing when a wait ran out."""
    parts = []
    for h in homes:
        for path in sorted(h.parent.glob(f"{h.name}.serve.*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(parts)


class Daemon:
    """One `agentlog serve` process on a home: start, read its JSON log, stop (SIGTERM) or kill (-9)."""

    def __init__(self, home_dir: Path, *, listen: bool = True, peers: tuple[str, ...] = (), heartbeat: float = 1.0,
                 registry: list | None = None, preexec: Callable[[], None] | None = None,
                 options: tuple[str, ...] = (), discovery: bool = False):
        """`preexec` runs in the child before `agentlog serve` starts (e.g. to lower a resource limit); `options`
        are more `serve` options (`--carry readable`). Without `discovery` the daemon runs `--no-discovery`: a test's
        daemons meet only the peers it names, whatever else runs on this machine."""
        self.home, self.listen, self.peers, self.heartbeat = Path(home_dir), listen, list(peers), heartbeat
        self.options = list(options) + ([] if discovery else ["--no-discovery"])
        self.preexec = preexec
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.log_path: Path | None = None
        if registry is not None:
            registry.append(self)

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def address(self) -> str:
        assert self.port, f"{self.name}'s daemon does not listen"
        return f"127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.home.parent / f"{self.name}.serve.{self.starts}.log"
        args = [sys.executable, "-m", "agentlog", "--home", str(self.home), "serve", "--heartbeat", str(self.heartbeat)]
        if self.listen:
            args += ["--listen", "127.0.0.1:0"]
        for peer in self.peers:
            args += ["--peer", peer]
        args += self.options
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         env=_env(), preexec_fn=self.preexec)
        serving = self.wait_log(lambda e: e.get("event") == "serving", "the 'serving' log line")
        if self.listen:
            self.port = serving["port"]
            assert isinstance(self.port, int) and self.port > 0, serving
        return self

    def lines(self) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def logs(self) -> list[dict]:
        """The JSON log lines so far (every line the daemon writes is one JSON object)."""
        out = []
        for line in self.lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "<not json>", "line": line})
        return out

    def wait_log(self, match: Callable[[dict], bool], what: str, timeout: float = DEADLINE) -> dict:
        def found():
            hits = [e for e in self.logs() if match(e)]
            if hits:
                return hits[0]
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name}'s daemon exited {self.proc.returncode} before logging {what}:\n"
                                     + "\n".join(self.lines()))
            return None
        try:
            return wait_until(found, f"{self.name}'s daemon logs {what}", timeout)
        except AssertionError as exc:
            if "exited" in str(exc):
                raise
            raise AssertionError(f"{exc}; its log:\n" + "\n".join(self.lines()[-40:])) from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = DEADLINE) -> int:
        """SIGTERM and wait for the exit; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL (kill -9) and reap."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(DEADLINE)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        """Teardown: whatever state the test left it in, end this daemon (by its PID) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def stray_lines(self) -> list[str]:
        """Lines of every run's log that are not JSON log lines (a traceback, a stray print)."""
        out = []
        for path in sorted(self.home.parent.glob(f"{self.name}.serve.*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    json.loads(line)
                except ValueError:
                    out.append(f"{path.name}: {line}")
        return out


def end_all(registry: list[Daemon]) -> None:
    """Fixture teardown: kill every daemon still running, then fail if any wrote something not JSON."""
    for daemon in registry:
        daemon.cleanup()
    stray = [line for daemon in registry for line in daemon.stray_lines()]
    assert not stray, "daemons wrote lines that are not JSON log lines:\n" + "\n".join(stray[:40])
