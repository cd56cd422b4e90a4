"""Replication figures for `make bench` (issue 5): real `agentlog serve` processes over 127.0.0.1.

Each run measures, beside the primitives (Ed25519, BLAKE2b, durable LMDB put):
- catch-up: device A's home holds `events` observations; a device B that holds only the
  group's first events starts its daemon, which dials A's running daemon; timed until B holds
  every event (B's frontier polled read-only from this process). Wire bytes are the kernel's
  TCP counters of that connection (`ss -ti`: tcp_info bytes_sent / bytes_received, i.e. what
  the daemons' Channels wrote, frames and handshake included, TCP/IP headers not);
- live push: a new pair of devices that both wrote, daemons connected and in sync; this
  process appends on A's home one event at a time and polls B's frontier until it holds it;
- in-sync heartbeat round: the same pair with `--heartbeat 0.2`, idle, TCP counters over
  `heartbeats` intervals;
- reconvergence: 3 devices each write `partitioned` events with no daemon running, then 3
  daemons start in a full mesh (each listens and dials the other two); timed until the
  three frontiers are equal.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib
import lmdb

from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.store.store import Store

HEARTBEAT_S = 0.2
"""Heartbeat interval of the daemons in the live and heartbeat figures."""
POLL_S = 0.00005
"""Sleep between two reads of a frontier while waiting (about 0.13 ms with the timer's slack)."""
AUTHORS_IN_HEARTBEAT = 2
"""Authors in the frontier of the heartbeat pair: both devices wrote."""


@dataclass(frozen=True)
class ReplSizes:
    events: int = 100_000           # caught up by B
    batch: int = 1_000              # append_many batch when building homes
    live: int = 1_000               # events pushed one at a time
    partitioned: int = 10_000       # events each of 3 devices writes while partitioned
    heartbeats: int = 25            # heartbeat intervals counted


QUICK = ReplSizes(events=20_000, live=200, partitioned=2_000, heartbeats=10)

AREAS = ("editor", "terminal", "browser", "shell", "review")
NAMES = ("theme", "font", "layout", "density", "language", "tabs", "wrap", "sort", "notify", "keys")
SETTINGS = tuple(f"{a}.{n}" for a in AREAS for n in NAMES)                     # 50 settings
SETTING_WEIGHTS = tuple(1 / (i + 1) ** 0.8 for i in range(len(SETTINGS)))
VALUES = ("dark", "light", "auto", "compact")


def observation(rng: random.Random) -> payloads.Observation:
    """A realistic observation: one of ~50 settings (skewed), a few values, one context key."""
    return payloads.Observation(setting=rng.choices(SETTINGS, SETTING_WEIGHTS)[0],
                                value=rng.choice(VALUES[:3] if rng.random() < 0.9 else VALUES),
                                context=(("daypart", rng.choice(("day", "night"))),))


def compile_package() -> int:
    """Byte-compile agentlog's modules, as an installed package has them (pip compiles at install), so that each
    daemon's startup is agentlog's and not the compiler's: in a source tree under PYTHONDONTWRITEBYTECODE (set in
    some environments) every `agentlog serve` compiled about 100 modules again, some 150 ms of CPU. Returns how
    many modules were stale (compiled now)."""
    import compileall

    import agentlog
    package = Path(agentlog.__file__).parent
    stale = sum(1 for source in package.rglob("*.py") if not _fresh(source))
    compileall.compile_dir(str(package), quiet=1)
    return stale


def _fresh(source: Path) -> bool:
    import importlib.util
    cached = Path(importlib.util.cache_from_source(str(source)))
    return cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime


def agentlog_command() -> list[str]:
    script = Path(sys.executable).parent / "agentlog"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentlog"]


# -- processes, frontiers, TCP counters -------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """In the child: SIGTERM it when the bench dies (a hang's faulthandler exit skips `finally`)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Daemon:
    """One `agentlog serve` process; its JSON log lines are read by a thread and stamped on arrival."""

    def __init__(self, path: Path, *args: str):
        self.path = path
        self.lines: list[tuple[float, dict]] = []
        self.cond = threading.Condition()
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen([*agentlog_command(), "--home", str(path), "serve", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, bufsize=1,
                                     preexec_fn=_die_with_parent)  # noqa: PLW1509 (only a prctl call)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            stamp = time.perf_counter()
            try:
                doc = json.loads(line)
            except ValueError:
                doc = {"event": "text", "text": line.rstrip()}
            with self.cond:
                self.lines.append((stamp, doc if isinstance(doc, dict) else {"event": "text", "text": line}))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def first(self, event: str) -> tuple[float, dict] | None:
        with self.cond:
            return next(((t, d) for t, d in self.lines if d.get("event") == event), None)

    def count(self, event: str, **fields) -> int:
        with self.cond:
            return sum(d.get("event") == event and all(d.get(k) == v for k, v in fields.items())
                       for _, d in self.lines)

    def wait_for(self, event: str, timeout: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = next(((t, d) for t, d in self.lines if d.get("event") == event), None)
                if found:
                    return found
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise RuntimeError(f"agentlog serve on {self.path.name} exited ({self.proc.returncode}):\n"
                                       + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"agentlog serve on {self.path.name}: no {event!r} within {timeout:g} s:\n"
                                       + self.tail())
                self.cond.wait(min(left, 0.1))

    def check(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.1)
            raise RuntimeError(f"agentlog serve on {self.path.name} exited ({self.proc.returncode}):\n" + self.tail())

    def tail(self, n: int = 8) -> str:
        with self.cond:
            return "\n".join(json.dumps(d) for _, d in self.lines[-n:])

    def closes(self) -> list[str]:
        """Reasons of the connections this daemon saw closed (duplicates left out)."""
        with self.cond:
            return [d.get("reason", "") for _, d in self.lines if d.get("event") == "connection closed"]

    def cpu_s(self) -> float:
        """CPU seconds the process has used so far, all threads, user and system (/proc; NaN elsewhere): unlike
        its rates, nearly independent of what else runs on the machine."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always reaps the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(2)


def stop_all(daemons: list[Daemon]) -> None:
    for d in daemons:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
    for d in daemons:
        d.stop()


_POS = struct.Struct(">IQ")


class Heads:
    """A home's `heads` database opened read-only (another process writes the store)."""

    def __init__(self, path: Path):
        self.env = lmdb.open(str(path / home.STORE_DIR), readonly=True, lock=True, max_dbs=32, subdir=True,
                             readahead=False)
        self.db = self.env.open_db(b"heads", create=False)

    def _begin(self):
        for _ in range(4):
            try:
                return self.env.begin(db=self.db)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
        return self.env.begin(db=self.db)

    def seq(self, author: bytes) -> int:
        with self._begin() as txn:
            raw = txn.get(author)
            return _POS.unpack_from(raw)[1] if raw else 0

    def frontier(self) -> dict[bytes, int]:
        with self._begin() as txn:
            return {bytes(a): _POS.unpack_from(v)[1] for a, v in txn.cursor()}

    def close(self) -> None:
        self.env.close()


def tcp_counters(ports: set[int]) -> dict[str, int]:
    """Kernel byte and data-segment counters (tcp_info via `ss -ti`) summed over the established
    loopback sockets whose local port is one of `ports`, i.e. the accepting end of each connection."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True, text=True, check=True).stdout
    total = {"sockets": 0, "bytes_sent": 0, "bytes_received": 0, "data_segs_out": 0, "data_segs_in": 0}
    mine = False
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            parts = line.split()
            local = parts[2] if len(parts) >= 4 else ""
            mine = local.rpartition(":")[2].isdigit() and int(local.rpartition(":")[2]) in ports
            total["sockets"] += mine
            continue
        if mine:
            for field in line.split():
                name, _, value = field.partition(":")
                if name in total and value.isdigit():
                    total[name] += int(value)
    return total


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout: float, daemons: list[Daemon], what: str, poll: float = POLL_S) -> float:
    """Poll until predicate() holds; its perf_counter time. Raises if a daemon exits or time runs out."""
    deadline = time.perf_counter() + timeout
    n = 0
    while not predicate():
        n += 1
        now = time.perf_counter()
        if now > deadline:
            raise RuntimeError(f"{what}: not done within {timeout:g} s\n" + "\n".join(d.tail(4) for d in daemons))
        if n % 1000 == 0:
            for d in daemons:
                d.check()
        time.sleep(poll)
    return time.perf_counter()


# -- homes ------------------------------------------------------------------------------------

def sync(src: Store, dst: Store) -> None:
    """Copy every event `dst` lacks from `src` through the validated ingest (tests/helpers/sync.py)."""
    dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


def group_of(tmp: Path, founder: str, others: list[str]) -> tuple[Path, list[Path]]:
    """A founder's home and homes enrolled by it, each holding the group's first events."""
    first = home.create(tmp / founder, founder)
    joined = []
    try:
        first.create_group("bench")
        for name in others:
            store = home.create(tmp / name, name)
            devices.join(store, devices.enroll(first, store.device, name))
            joined.append(store)
        for store in joined:
            sync(first, store)
    finally:
        first.close()
        for store in joined:
            store.close()
    return tmp / founder, [tmp / name for name in others]


def write(path: Path, n: int, batch: int, rng: random.Random) -> tuple[bytes, int]:
    """Append n observations in batches; (author, its last seq)."""
    with home.open_home(path) as store:
        for start in range(0, n, batch):
            store.append_many([observation(rng) for _ in range(min(batch, n - start))])
        return store.device, store.heads()[store.device].seq


def sizes_of(path: Path, author: bytes, after_seq: int) -> tuple[float, float]:
    """Mean payload and record (header + signature) bytes of author's events after after_seq."""
    env = lmdb.open(str(path / home.STORE_DIR), readonly=True, lock=True, max_dbs=32, subdir=True)
    try:
        payload = record = n = 0
        with env.begin() as txn:
            for name in ("payloads", "events"):
                cur = txn.cursor(db=env.open_db(name.encode(), txn=txn, create=False))
                found = cur.set_range(author + _POS.pack(0, after_seq + 1))
                while found and cur.key()[:32] == author:
                    if name == "payloads":
                        payload += len(cur.value())
                        n += 1
                    else:
                        record += len(cur.value())
                    found = cur.next()
        return payload / max(n, 1), record / max(n, 1)
    finally:
        env.close()


# -- the figures ------------------------------------------------------------------------------

def catch_up(a_path: Path, b_path: Path, info: dict) -> dict[str, float]:
    """B's daemon dials A's running daemon; events/s until B's frontier is A's, and wire bytes."""
    source = Heads(a_path)
    goal = source.frontier()
    source.close()
    daemons = []
    heads = Heads(b_path)
    events = sum(goal.values()) - sum(heads.frontier().values())
    try:
        a = Daemon(a_path, "--listen", "127.0.0.1:0")
        daemons.append(a)
        port = a.wait_for("serving", 30)[1]["port"]
        before = tcp_counters({port})
        start = time.perf_counter()
        b = Daemon(b_path, "--peer", f"127.0.0.1:{port}")
        daemons.append(b)
        done = wait_until(lambda: heads.frontier() == goal, 60 + events / 1000, daemons, "catch-up")
        b_cpu = b.cpu_s()
        connected = b.wait_for("connected", 5)[0]
        time.sleep(0.2)                         # the last acks
        after = tcp_counters({port})
        closes = a.closes() + b.closes()
    finally:
        stop_all(daemons)
        heads.close()
    wire = after["bytes_sent"] + after["bytes_received"] - before["bytes_sent"] - before["bytes_received"]
    info["catch_up"].append({"events": events, "seconds": done - start, "startup_s": connected - start,
                             "b_cpu_s": b_cpu,
                             "wire_bytes": wire,
                             "a_to_b": after["bytes_sent"] - before["bytes_sent"],
                             "b_to_a": after["bytes_received"] - before["bytes_received"],
                             "sockets": after["sockets"], "closes": closes})
    return {"repl_catchup": events / (done - start), "repl_catchup_linked": events / (done - connected),
            "repl_wire": wire / events}


def live_and_heartbeat(tmp: Path, sizes: ReplSizes, rng: random.Random, percentile, info: dict) -> dict[str, float]:
    """A new pair of devices that both wrote (two authors), daemons with --heartbeat 0.2: idle TCP
    counters over sizes.heartbeats intervals, then sizes.live events appended on A one at a time,
    each timed until B's frontier holds it."""
    a_path, (b_path,) = group_of(tmp, "a", ["b"])
    write(a_path, sizes.batch, sizes.batch, rng)
    write(b_path, 10, 10, rng)
    daemons = []
    a_heads, b_heads = Heads(a_path), Heads(b_path)
    store = None
    try:
        a = Daemon(a_path, "--listen", "127.0.0.1:0", "--heartbeat", str(HEARTBEAT_S))
        daemons.append(a)
        port = a.wait_for("serving", 30)[1]["port"]
        daemons.append(Daemon(b_path, "--peer", f"127.0.0.1:{port}", "--heartbeat", str(HEARTBEAT_S)))
        wait_until(lambda: len(f := a_heads.frontier()) == AUTHORS_IN_HEARTBEAT and f == b_heads.frontier(),
                   30, daemons, "live pair in sync", poll=0.001)
        a_heads.close()                       # one process may not open an LMDB environment twice
        a_heads = None
        time.sleep(3 * HEARTBEAT_S)           # acks and frontier answers settle
        before, start = tcp_counters({port}), time.perf_counter()
        time.sleep(sizes.heartbeats * HEARTBEAT_S)
        after, seconds = tcp_counters({port}), time.perf_counter() - start
        wire = after["bytes_sent"] + after["bytes_received"] - before["bytes_sent"] - before["bytes_received"]
        frames = after["data_segs_out"] + after["data_segs_in"] - before["data_segs_out"] - before["data_segs_in"]
        rounds = seconds / HEARTBEAT_S
        info["heartbeat"].append({"seconds": seconds, "wire_bytes": wire, "data_segments": frames,
                                  "intervals": rounds, "sockets": after["sockets"]})

        store = home.open_home(a_path)
        author = store.device
        seq = store.heads()[author].seq
        call_ns, commit_ns, append_ns = [], [], []
        for _ in range(sizes.live):
            time.sleep(rng.uniform(0.005, 0.010))
            payload = observation(rng)
            seq += 1
            t_call = time.perf_counter_ns()
            store.append(payload)
            t_commit = time.perf_counter_ns()
            while b_heads.seq(author) < seq:
                if time.perf_counter_ns() - t_commit > 10e9:
                    raise RuntimeError(f"live push: event {seq} not at B within 10 s\n"
                                       + "\n".join(d.tail(4) for d in daemons))
                time.sleep(POLL_S)
            seen = time.perf_counter_ns()
            call_ns.append(seen - t_call)
            commit_ns.append(seen - t_commit)
            append_ns.append(t_commit - t_call)
        info["live"].append({"append_p50_ms": percentile(append_ns, 50) / 1e6,
                             "append_p99_ms": percentile(append_ns, 99) / 1e6,
                             "max_ms": max(commit_ns) / 1e6,
                             "closes": [r for d in daemons for r in d.closes()]})
    finally:
        if store is not None:
            store.close()
        stop_all(daemons)
        if a_heads is not None:
            a_heads.close()
        b_heads.close()
    shutil.rmtree(tmp)
    return {"repl_live_p50": percentile(commit_ns, 50) / 1e6, "repl_live_p99": percentile(commit_ns, 99) / 1e6,
            "repl_live_call_p50": percentile(call_ns, 50) / 1e6, "repl_live_call_p99": percentile(call_ns, 99) / 1e6,
            "repl_live_append_p50": percentile(append_ns, 50) / 1e6,
            "repl_heartbeat": wire / (frames / 2) if frames else float("nan")}


def reconverge(tmp: Path, sizes: ReplSizes, rng: random.Random, info: dict) -> dict[str, float]:
    """Three devices write while partitioned, then three daemons start in a full mesh."""
    names = ["x", "y", "z"]
    first, rest = group_of(tmp, names[0], names[1:])
    paths = [first, *rest]
    final = dict(write(p, sizes.partitioned, sizes.batch, rng) for p in paths)
    ports = free_ports(3)
    daemons, heads = [], [Heads(p) for p in paths]
    try:
        start = time.perf_counter()
        for i, path in enumerate(paths):
            peers = [a for j, p in enumerate(ports) if j != i for a in ("--peer", f"127.0.0.1:{p}")]
            daemons.append(Daemon(path, "--listen", f"127.0.0.1:{ports[i]}", *peers))
        done = wait_until(lambda: all(h.frontier() == final for h in heads), 60 + sizes.partitioned / 500,
                          daemons, "reconvergence", poll=0.0005)
        serving = max(d.wait_for("serving", 5)[0] for d in daemons)
        time.sleep(0.2)                         # the last acks
        counters = tcp_counters(set(ports))
        info["reconverge"].append({"seconds": done - start, "startup_s": serving - start,
                                   "wire_per_needed": (counters["bytes_sent"] + counters["bytes_received"])
                                   / (6 * sizes.partitioned), "connections": counters["sockets"],
                                   "duplicates": sum(d.count("duplicate connection closed") for d in daemons),
                                   "connect_failed": sum(d.count("connect failed") for d in daemons),
                                   "closes": [r for d in daemons for r in d.closes()]})
    finally:
        stop_all(daemons)
        for h in heads:
            h.close()
    for p in paths:
        shutil.rmtree(p)
    return {"repl_reconverge": (done - start) * 1e3, "repl_reconverge_serving": (done - serving) * 1e3}


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build A's home (sizes.events observations) with `runs` enrolled B homes, then `runs` runs of
    the primitives and the replication figures. Everything is removed afterwards; every daemon is
    stopped by its pid."""
    repl = QUICK if quick else ReplSizes()
    if shutil.which("ss") is None:
        raise RuntimeError("the replication bench reads TCP byte counters with `ss` (iproute2), not found")
    rng = random.Random(17)
    limit = 240 + runs * (120 + repl.events / 2_000 + repl.live / 50 + repl.partitioned / 500)
    results = []
    info = {"sizes": repl.__dict__ | {"heartbeat_s": HEARTBEAT_S}, "catch_up": [], "live": [], "heartbeat": [],
            "reconverge": [], "load_average": [], "labels": {"repl_events": f"{repl.events:,}",
                                                             "repl_live": f"{repl.live:,}",
                                                             "repl_partitioned": f"{repl.partitioned:,}"}}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-repl-") as tmp_name:
        tmp = Path(tmp_name)
        faulthandler.dump_traceback_later(limit, exit=True)
        try:
            info["compiled_modules"] = compile_package()
            start = time.perf_counter()
            a_path, b_paths = group_of(tmp, "a", [f"b{n}" for n in range(runs)])
            with home.open_home(a_path) as a_store:
                first_seq = a_store.heads()[a_store.device].seq
            author, _ = write(a_path, repl.events, repl.batch, rng)
            info["build_seconds"] = time.perf_counter() - start
            info["payload_bytes"], info["record_bytes"] = sizes_of(a_path, author, first_seq)
            print(f"replication home: {repl.events:,} events built in {info['build_seconds']:.1f} s "
                  f"(payload {info['payload_bytes']:.0f} B, record {info['record_bytes']:.0f} B per event)",
                  file=sys.stderr, flush=True)
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                began, workdir = time.perf_counter(), tmp / f"run{n}"
                out = benchlib.bench_crypto(sizes)
                out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(workdir / "lmdb", sizes.puts)
                shutil.rmtree(workdir)
                out.update(catch_up(a_path, b_paths[n], info))
                out["repl_payload"] = info["payload_bytes"]
                out["repl_wire_over"] = out["repl_wire"] - info["payload_bytes"]
                out.update(live_and_heartbeat(tmp / f"pair{n}", repl, rng, benchlib.percentile, info))
                out.update(reconverge(tmp / f"mesh{n}", repl, rng, info))
                results.append(out)
                print(f"replication run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            faulthandler.cancel_dump_traceback_later()
    return results, info


AIMS = (("repl_catchup", ">=", 50_000, "catch-up ≥ 50,000 events/s"),
        ("repl_live_p50", "<=", 1.5, "live p50 ≤ 1.5 ms"),
        ("repl_live_p99", "<=", 4.0, "live p99 ≤ 4 ms"),
        ("repl_reconverge", "<=", 2_000, "3-device reconvergence ≤ 2 s"))
"""Issue 21's aims beyond the floors in bench.py's TARGETS (issue 5's), reported below the table."""


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the replication figures measured, below the table."""
    med = statistics.median
    s = info["sizes"]
    cu, lv, hb, rc = info["catch_up"], info["live"], info["heartbeat"], info["reconverge"]
    aims = []
    for key, op, value, text in AIMS:
        if key in figures:
            m = figures[key]["median"]
            aims.append(f"{text}: {'PASS' if (m >= value if op == '>=' else m <= value) else 'MISS'}")
    print(f"\nreplication figures: `agentlog serve` processes over 127.0.0.1, {runs} run{'s' * (runs != 1)}, the "
          f"primitives measured in each; 1-minute load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")
    print(f"- daemons: each `agentlog serve` runs from byte-compiled modules, as an installed package does "
          f"({info.get('compiled_modules', 0)} stale modules of the source tree compiled before the runs)")
    print(f"- catch-up: A's home holds {s['events']:,} observations (50 settings, 4 values, 1 context key; payload "
          f"{info['payload_bytes']:.0f} B, signed record {info['record_bytes']:.0f} B per event; built in "
          f"{info['build_seconds']:.1f} s through append_many); B holds only the group's first events and its daemon "
          f"dials A's running one; timed from spawning B's daemon (startup to its `connected` log line: "
          f"{med([c['startup_s'] for c in cu]) * 1e3:.0f} ms) until B's frontier, polled read-only here, equals A's; "
          f"B's daemon used {med([c['b_cpu_s'] / c['events'] for c in cu]) * 1e6:.0f} µs of CPU per event (all "
          f"threads, startup included: a figure the machine's load moves little)")
    print(f"- wire bytes: the kernel's TCP counters of the connection (ss -ti; they equal the Channel's counters: "
          f"handshake and frames both ways, no TCP/IP headers): "
          f"{med([c['a_to_b'] / c['events'] for c in cu]):.0f} B/event A to B, "
          f"{med([c['b_to_a'] / c['events'] for c in cu]):.1f} B/event back")
    print(f"- live: a new pair of devices (A wrote {s['batch']:,} events, B 10), both daemons with --heartbeat "
          f"{HEARTBEAT_S:g}; {s['live']:,} events appended on A by this process one at a time, 5-10 ms apart; B's "
          f"frontier polled every ~0.13 ms; committed = when store.append returned (the durable append itself: p50 "
          f"{med([x['append_p50_ms'] for x in lv]):.3f} ms, p99 {med([x['append_p99_ms'] for x in lv]):.3f} ms); "
          f"slowest event {max(x['max_ms'] for x in lv):.1f} ms")
    print(f"- heartbeat: the same pair idle and in sync, {s['heartbeats']} intervals of {HEARTBEAT_S:g} s; bytes both "
          f"ways over half the data segments (a heartbeat is one frame, one segment: "
          f"{med([h['data_segments'] for h in hb])} segments in {med([h['intervals'] for h in hb]):.1f} intervals); "
          f"bar 100 B + 48 per author = {100 + 48 * AUTHORS_IN_HEARTBEAT} B")
    print(f"- reconvergence: 3 homes each wrote {s['partitioned']:,} events with no daemon running, then 3 daemons "
          f"each listening and dialing the other two; timed from spawning them (startup to the last `serving`: "
          f"{med([r['startup_s'] for r in rc]) * 1e3:.0f} ms) until the three frontiers are equal; in all runs "
          f"{sum(r['duplicates'] for r in rc)} duplicate connections closed and {sum(r['connect_failed'] for r in rc)} "
          f"dials refused before the peer listened; wire bytes over the mesh per event a device lacked: "
          f"{med([r['wire_per_needed'] for r in rc]):.0f} B (catch-up: "
          f"{med([c['wire_bytes'] / c['events'] for c in cu]):.0f} B)")
    print("aims: " + "; ".join(aims))
    closes = [r for part in (cu, lv, rc) for x in part for r in x["closes"]
              if not r.startswith(("connection ended", "peer said goodbye"))]
    if closes:
        print(f"note: connections closed during the figures: {'; '.join(sorted(set(closes)))}")
