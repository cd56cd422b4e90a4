"""Benchmark agentlog against the primitives it is built on: `make bench`.

Measures Ed25519, BLAKE2b-256 and durable LMDB puts, then single durable appends,
batched appends and a full `verify_store`, all on real LMDB stores in a temporary
directory. Every figure is measured in each run; the table shows the median, and
the JSON results file keeps every run.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lmdb

from agentlog import crypto, home, payloads
from agentlog.verify import verify_store

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """How much work one run does."""
    signs: int = 20_000
    verifies: int = 10_000
    hashes: int = 200_000
    puts: int = 1_000
    appends: int = 2_000
    events: int = 50_000
    batch: int = 100


QUICK = Sizes(signs=2_000, verifies=1_000, hashes=20_000, puts=100, appends=200, events=5_000)

FIGURES = (
    ("sign", "Ed25519 sign, 1 thread", "ops/s"),
    ("verify", "Ed25519 verify, 1 thread", "ops/s"),
    ("blake2b", "BLAKE2b-256 of 200 B", "ops/s"),
    ("lmdb_put", "LMDB durable put txn", "txn/s"),
    ("lmdb_put_p50", "LMDB durable put txn p50", "ms"),
    ("append_p50", "durable append p50", "ms"),
    ("append_p99", "durable append p99", "ms"),
    ("batched", "append_many, batches of {batch}", "events/s"),
    ("verify_store", "verify_store, {events} events", "events/s"),
)
RATIOS = {"append_p50": "lmdb_put_p50", "batched": "sign", "verify_store": "verify"}
TARGETS = {"append_p50": ("<=", 1.0), "batched": (">=", 30_000), "verify_store": (">=", 20_000)}
REFERENCE_SIGN_PER_S = 67_000
"""Ed25519 sign/s per core on the machine the throughput targets were set on (issue 2)."""


def rate(count: int, seconds: float) -> float:
    """Operations per second."""
    return count / seconds if seconds > 0 else math.inf


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def observation(i: int) -> payloads.Observation:
    """A typical small observation payload."""
    return payloads.Observation(setting=f"s{i % 200}", value=f"value-{i % 17}",
                                context=(("project", "bench"), ("host", f"h{i % 3}")))


def per_second(fn, calls: list[tuple]) -> float:
    """Calls of fn per second, one after another, over the argument tuples."""
    start = time.perf_counter()
    for args in calls:
        fn(*args)
    return rate(len(calls), time.perf_counter() - start)


def bench_crypto(sizes: Sizes) -> dict[str, float]:
    """Single-thread Ed25519 sign and verify over 32-byte ids, BLAKE2b-256 over 200 bytes."""
    key, inputs = crypto.DeviceKey.generate(), [os.urandom(200) for _ in range(256)]
    triples = [(key.public, eid, key.sign(eid)) for eid in (os.urandom(32) for _ in range(sizes.verifies))]
    if not all(crypto.verify(*t) for t in triples[:100]):
        raise RuntimeError("a valid signature did not verify")
    return {"sign": per_second(key.sign, [(os.urandom(32),) for _ in range(sizes.signs)]),
            "verify": per_second(crypto.verify, triples),
            "blake2b": per_second(crypto.blake2b256, [(inputs[i & 255],) for i in range(sizes.hashes)])}


def bench_lmdb_put(path: Path, n: int) -> tuple[float, float]:
    """Durable LMDB transactions of one 300-byte put: (txn/s, p50 ms)."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), sync=True)
    value, latencies = os.urandom(300), []
    try:
        for i in range(n):
            start = time.perf_counter_ns()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), value)
            latencies.append(time.perf_counter_ns() - start)
    finally:
        env.close()
    return rate(n, sum(latencies) / 1e9), percentile(latencies, 50) / 1e6


def bench_single(path: Path, n: int) -> tuple[float, float]:
    """Latency of one durable `store.append` each: (p50 ms, p99 ms)."""
    store = home.create(path, "bench")
    latencies = []
    try:
        store.create_group("bench")
        for i in range(n):
            payload = observation(i)
            start = time.perf_counter_ns()
            store.append(payload)
            latencies.append(time.perf_counter_ns() - start)
    finally:
        store.close()
    return percentile(latencies, 50) / 1e6, percentile(latencies, 99) / 1e6


def bench_batched(path: Path, total: int, batch: int) -> float:
    """Events per second through `store.append_many` in fixed-size batches."""
    store = home.create(path, "bench")
    try:
        store.create_group("bench")
        batches = [[observation(i) for i in range(s, min(s + batch, total))] for s in range(0, total, batch)]
        start = time.perf_counter()
        for items in batches:
            store.append_many(items)
        return rate(total, time.perf_counter() - start)
    finally:
        store.close()


def bench_verify_store(path: Path, expected: int) -> float:
    """Events per second through a full `verify_store` of a reopened home."""
    store = home.open_home(path)
    try:
        start = time.perf_counter()
        report = verify_store(store)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    if not report.ok or report.checked != expected:
        raise RuntimeError(f"verify failed: {report.checked} checked, problems {[p.what for p in report.problems[:3]]}")
    return rate(report.checked, elapsed)


def one_run(workdir: Path, sizes: Sizes) -> dict[str, float]:
    """Every figure once, on fresh stores under workdir."""
    out = bench_crypto(sizes)
    out["lmdb_put"], out["lmdb_put_p50"] = bench_lmdb_put(workdir / "lmdb", sizes.puts)
    out["append_p50"], out["append_p99"] = bench_single(workdir / "single", sizes.appends)
    out["batched"] = bench_batched(workdir / "batched", sizes.events, sizes.batch)
    out["verify_store"] = bench_verify_store(workdir / "batched", sizes.events + 1)
    return out


def run_all(sizes: Sizes, runs: int) -> list[dict[str, float]]:
    """All runs in one temporary directory, removed afterwards; a hung run dumps every stack and exits."""
    results, limit = [], 120 + (sizes.appends + 2 * sizes.events) / 200
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-") as tmp:
        for n in range(runs):
            start, workdir = time.perf_counter(), Path(tmp) / f"run{n}"
            faulthandler.dump_traceback_later(limit, exit=True)
            try:
                results.append(one_run(workdir, sizes))
            finally:
                faulthandler.cancel_dump_traceback_later()
            shutil.rmtree(workdir)
            print(f"run {n + 1}/{runs} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return results


def summarize(results: list[dict[str, float]], sizes: Sizes) -> dict:
    """Medians, extremes, ratios and target checks of all runs."""
    figures = {}
    for key, label, unit in FIGURES:
        values = [r[key] for r in results]
        figures[key] = {"label": label.format(**asdict(sizes)), "unit": unit, "runs": values,
                        "median": statistics.median(values), "min": min(values), "max": max(values)}
    for key, base in RATIOS.items():
        figures[key]["ratio"] = {"to": base, "value": figures[key]["median"] / figures[base]["median"]}
    speed = figures["sign"]["median"] / REFERENCE_SIGN_PER_S
    for key, (op, target) in TARGETS.items():
        median = figures[key]["median"]
        scaled = target * speed if op == ">=" else target
        if (median <= target) if op == "<=" else (median >= target):
            status = "PASS"
        elif op == ">=" and median >= scaled:
            status = "PASS scaled"
        else:
            status = "MISS"
        figures[key]["target"] = {"op": op, "value": target, "scaled": scaled, "status": status}
    return figures


def fmt(value: float, unit: str) -> str:
    """A number formatted for its unit."""
    return f"{value:.3f}" if unit == "ms" else f"{value:,.0f}"


def print_table(figures: dict) -> None:
    """The results table on stdout."""
    head = ("figure", "median", "min", "max", "unit", "ratio to primitive", "target", "scaled", "")
    rows = [head]
    for key, fig in figures.items():
        unit, ratio, target = fig["unit"], fig.get("ratio"), fig.get("target")
        rows.append((fig["label"], fmt(fig["median"], unit), fmt(fig["min"], unit), fmt(fig["max"], unit), unit,
                     f"{ratio['value']:.2f}x {figures[ratio['to']]['label']}" if ratio else "",
                     f"{target['op']} {fmt(target['value'], unit)}" if target else "",
                     fmt(target["scaled"], unit) if target else "",
                     target["status"] if target else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    align = ("<", ">", ">", ">", "<", "<", "<", ">", "<")
    for n, row in enumerate(rows):
        print("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, help="runs per figure; the median is reported (default 5, 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="a small smoke run with fewer events")
    p.add_argument("--appends", type=int, help="single appends timed per run")
    p.add_argument("--events", type=int, help="events appended in batches, then verified, per run")
    p.add_argument("--batch", type=int, help="events per append_many call")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results.json", help="JSON results file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON results."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    sizes = replace(sizes, **{k: v for k in ("appends", "events", "batch") if (v := getattr(args, k))})
    runs = args.runs or (2 if args.quick else 5)
    started = time.time()
    figures = summarize(run_all(sizes, runs), sizes)
    print(f"agentlog bench: {runs} runs, python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"median of runs (min, max)\n")
    print_table(figures)
    print(f"\nscaled: the throughput target times this machine's Ed25519 sign/s over the "
          f"{REFERENCE_SIGN_PER_S:,}/s of the machine the target was set on")
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "seconds": round(time.time() - started, 1), "python": sys.version, "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "lmdb": ".".join(map(str, lmdb.version())), "runs": runs,
               "sizes": asdict(sizes), "figures": figures}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
