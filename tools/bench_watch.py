"""Watch figures for `make bench` (issue 20): from an append on device A to the change delivered to a watcher
on device B, and what watchers cost the writer.

Each run, beside the primitives (Ed25519 sign and verify, BLAKE2b, durable LMDB put):
- latency: A and B both run `agentlog serve` (B dials A); a `store.watch(settings=["bench."])` on B's home,
  in a thread of this process, takes each change as it is delivered; A appends `live` observations one at a
  time (5 to 10 ms apart), each timed from the call of `append` on A until B's watcher returned the change
  naming that event's setting (B's daemon ingests it, and passes its wake-up on to the watcher);
- writer cost: 400 single durable appends on A, 5 to 10 ms apart (its daemon running), with no watcher, and
  with five `agentlog watch --json` processes on A's home, in alternating order from run to run.
The bars: latency p50 <= 10 ms and p99 <= 30 ms; append p50 with five watchers within 10 % of without (the
runs' paired ratios, median). Run alone: `python tools/bench_watch.py [--quick] [--runs N]`.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_replication
import benchlib

from agentlog.log import payloads
from agentlog.store import home

WATCHERS = 5
LIVE, QUICK_LIVE = 300, 60
APPENDS, QUICK_APPENDS = 400, 100
COST_PERCENT = 10.0
FIGURES = (
    *benchlib.PRIMITIVE_FIGURES,
    ("wat_latency_p50", "append on A to change at B's watcher, p50", "ms"),
    ("wat_latency_p99", "append on A to change at B's watcher, p99", "ms"),
    ("wat_commit_p50", "the same from append's return (committed on A), p50", "ms"),
    ("wat_commit_p99", "the same from append's return (committed on A), p99", "ms"),
    ("wat_held_p50", "committed on A to held by B (replication alone), p50", "ms"),
    ("wat_append_p50_none", "durable append p50 on A, no watcher", "ms"),
    ("wat_append_p50_five", "durable append p50 on A, 5 watcher processes", "ms"),
    ("wat_append_cost", "append p50: 5 watchers slower than none by", "%"),
)
RATIOS = {"wat_latency_p50": ("lmdb_put_p50",), "wat_commit_p50": ("lmdb_put_p50",),
          "wat_append_p50_none": ("lmdb_put_p50",), "wat_append_p50_five": ("lmdb_put_p50",)}
TARGETS = {"wat_latency_p50": ("<=", 10.0), "wat_latency_p99": ("<=", 30.0), "wat_append_cost": ("<=", COST_PERCENT)}


def observed(i: int, rng: random.Random) -> payloads.Observation:
    return payloads.Observation(setting=f"bench.s{i}", value=rng.choice(("dark", "light", "auto")))


def spaced_appends(a_path: Path, n: int, rng: random.Random, after=None) -> list[int]:
    """n single durable appends on A, 5 to 10 ms apart (as an agent writes, not a bulk load): each one's
    nanoseconds; `after(a, payload, called_ns, returned_ns)` runs after each."""
    times = []
    with home.open_home(a_path) as a:
        for i in range(n):
            time.sleep(rng.uniform(0.005, 0.010))
            payload = observed(i, rng)
            start = time.perf_counter_ns()
            a.append(payload)
            done = time.perf_counter_ns()
            times.append(done - start)
            if after is not None:
                after(a, payload, start, done)
    return times


def latency(a_path: Path, b_path: Path, n: int, rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    """Nanoseconds from each append's call on A, and from its return (committed), to B's watcher returning its
    change; and from the return until B's heads (polled) hold the event: the replication's part."""
    arrived: queue.Queue = queue.Queue()
    called, committed, held = [], [], []
    with home.open_home(b_path) as b, b.watch(settings=["bench."]) as watcher:
        stop = threading.Event()

        def take():
            while not stop.is_set():
                change = watcher.wait(timeout=0.2)
                if change is not None:
                    arrived.put((time.perf_counter_ns(), change.setting))

        def delivered(a, payload, start: int, done: int) -> None:
            seq = a.heads()[a.device].seq
            while (h := b.heads().get(a.device)) is None or h.seq < seq:
                time.sleep(bench_replication.POLL_S)
            held.append(time.perf_counter_ns() - done)
            while True:
                seen, setting = arrived.get(timeout=10)
                if setting == payload.setting:
                    break
            called.append(seen - start)
            committed.append(seen - done)
        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        try:
            spaced_appends(a_path, n, rng, delivered)
        finally:
            stop.set()
            taker.join(2)
    return called, committed, held


def watchers(a_path: Path) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([*bench_replication.agentlog_command(), "--home", str(a_path), "watch", "--json"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(WATCHERS)]
    registered = a_path / home.STORE_DIR / "watchers"
    bench_replication.wait_until(lambda: registered.is_dir() and len(list(registered.iterdir())) >= WATCHERS, 30,
                                 [], f"{WATCHERS} watchers registered")
    return procs


def one_run(tmp: Path, n: int, sizes, live: int, rng: random.Random, info: dict) -> dict[str, float]:
    a_path, (b_path,) = bench_replication.group_of(tmp / f"run{n}", "a", ["b"])
    out = benchlib.bench_crypto(sizes)
    out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(tmp / f"run{n}" / "lmdb", sizes.puts)
    daemons = []
    try:
        a = bench_replication.Daemon(a_path, "--listen", "127.0.0.1:0")
        daemons.append(a)
        port = a.wait_for("serving", 30)[1]["port"]
        daemons.append(bench_replication.Daemon(b_path, "--peer", f"127.0.0.1:{port}"))
        daemons[1].wait_for("connected", 30)
        called, committed, held = latency(a_path, b_path, live, rng)
        out["wat_held_p50"] = benchlib.percentile(held, 50) / 1e6
        out["wat_latency_p50"] = benchlib.percentile(called, 50) / 1e6
        out["wat_latency_p99"] = benchlib.percentile(called, 99) / 1e6
        out["wat_commit_p50"] = benchlib.percentile(committed, 50) / 1e6
        out["wat_commit_p99"] = benchlib.percentile(committed, 99) / 1e6
        info["latency_max_ms"].append(max(called) / 1e6)
        order = ("none", "five") if n % 2 == 0 else ("five", "none")
        info["order"].append(list(order))
        for case in order:
            procs = watchers(a_path) if case == "five" else []
            try:
                out[f"wat_append_p50_{case}"] = benchlib.percentile(spaced_appends(a_path, info["appends"], rng),
                                                                    50) / 1e6
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(10)
        out["wat_append_cost"] = (out["wat_append_p50_five"] / out["wat_append_p50_none"] - 1) * 100
    finally:
        bench_replication.stop_all(daemons)
    shutil.rmtree(tmp / f"run{n}")
    return out


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    live = QUICK_LIVE if quick else LIVE
    rng = random.Random(20)
    info = {"live": live, "appends": QUICK_APPENDS if quick else APPENDS, "load_average": [], "order": [],
            "latency_max_ms": []}
    results = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-watch-") as tmp_name:
        for n in range(runs):
            info["load_average"].append(os.getloadavg()[0])
            began = time.perf_counter()
            results.append(one_run(Path(tmp_name), n, sizes, live, rng, info))
            print(f"watch run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s", file=sys.stderr,
                  flush=True)
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    print(f"\nwatch figures: {runs} run{'s' * (runs != 1)}, the primitives measured in each; 1-minute load average "
          f"before each run: {', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")
    print(f"- latency: {info['live']} appends on A, 5-10 ms apart, each from the call of append until B's watcher "
          f"(a thread of this process, store.watch on B's home) returned its change; A and B run `serve`; "
          f"slowest per run: {', '.join(f'{x:.1f} ms' for x in info['latency_max_ms'])}")
    print(f"- writer cost: {info['appends']:,} single durable appends on A, 5-10 ms apart (its daemon running, "
          f"pushing to B, passing each wake-up on to the watchers), "
          f"with no watcher and with {WATCHERS} `agentlog watch --json` processes on A's home, alternating which "
          f"goes first: {', '.join('/'.join(o) for o in info['order'])}")
    parts = []
    for key, what in (("wat_latency_p50", "latency p50"), ("wat_latency_p99", "latency p99"),
                      ("wat_append_cost", "writer cost")):
        if key in figures and "target" in figures[key]:
            t = figures[key]["target"]
            parts.append(f"{what} {t['status']} ({figures[key]['median']:.2f} {figures[key]['unit']}, "
                         f"bar {t['op']} {t['value']:g})")
    print("watch bars: " + "; ".join(parts))


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, FIGURES, RATIOS, TARGETS, print_notes, quick_runs=3)


if __name__ == "__main__":
    sys.exit(main())
