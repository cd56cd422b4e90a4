"""Audit figures for `make bench` (issue 7): `agentlog audit export` and `audit verify` on one home.

The home holds `events` events written by its device through append_many: four in five are
observations (tools/benchlib.py's `observation`, whose payloads repeat as real ones do), one in five a
memory.put with unique content. Each run measures, beside the primitives (BLAKE2b-256, Ed25519
verify): the export of the whole log to a JSON Lines file in the temporary directory (events/s,
worker processes on every core as in `agentlog audit export`; the HTML report is rendered
afterwards and timed apart), the export's CPU time per event over every process (this one and its
workers: a figure that other work on a shared machine barely moves, unlike the rate), and `audit
verify` of that file (events/s, one process). Run alone:
`python tools/bench_audit.py [--events N] [--runs N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from agentlog.audit.export import export
from agentlog.audit.html import render
from agentlog.audit.verify import verify_file
from agentlog.log import payloads
from agentlog.store import home

EVENTS, QUICK_EVENTS = 100_000, 20_000
FIGURES = (("audit_export", "audit export of {audit_events} events, JSON Lines", "events/s"),
           ("audit_export_cpu", "its CPU time per event, every process", "µs"),
           ("audit_html", "its HTML report, rendered", "ms"),
           ("audit_verify", "audit verify of that file, 1 process", "events/s"))
RATIOS = {"audit_export": ("blake2b",), "audit_verify": ("verify",)}
TARGETS = {"audit_export": (">=", 50_000)}


def build(path: Path, events: int) -> None:
    """A home whose device wrote `events` events (plus its group's first), in batches of 1,000."""
    rng = random.Random(11)
    with home.create(path, "laptop") as store:
        store.create_group("laptop")
        for start in range(0, events, 1000):
            store.append_many([
                payloads.MemoryPut(entry=rng.randbytes(16), type="fact", content=f"note {i}: {rng.random()}")
                if i % 5 == 0 else benchlib.observation(i) for i in range(start, min(events, start + 1000))])


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the export's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(path: Path, out: Path, sizes) -> dict[str, float]:
    figures = benchlib.bench_crypto(sizes)
    with home.open_home(path) as store:
        start, cpu = time.perf_counter(), cpu_seconds()
        with open(out, "wb") as f:
            summary = export(store, f)
        figures["audit_export"] = benchlib.rate(summary.events, time.perf_counter() - start)
        figures["audit_export_cpu"] = (cpu_seconds() - cpu) * 1e6 / summary.events
    start = time.perf_counter()
    render(summary)
    figures["audit_html"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    report = verify_file(out)
    figures["audit_verify"] = benchlib.rate(report.events, time.perf_counter() - start)
    if not report.ok or report.events != summary.events:
        raise RuntimeError(f"audit verify failed on the benchmark's own export: {report.problems[:3]}")
    return figures


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """`runs` runs on one home built once; the figures, and labels and notes for bench.py."""
    events = QUICK_EVENTS if quick else EVENTS
    results, info = [], {"labels": {"audit_events": f"{events:,}"}, "load_average": [], "events": events}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-audit-") as tmp:
        path = Path(tmp) / "home"
        start = time.perf_counter()
        build(path, events)
        print(
            f"audit home: {events:,} events written in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True
        )
        for n in range(runs):
            info["load_average"].append(os.getloadavg()[0])
            results.append(one_run(path, Path(tmp) / "audit.jsonl", sizes))
            info["bytes_per_event"] = (Path(tmp) / "audit.jsonl").stat().st_size / (events + 1)
            print(f"audit run {n + 1}/{runs} done", file=sys.stderr, flush=True)
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    print(f"\naudit figures: {runs} run{'s' * (runs != 1)} on one home of {info['events']:,} events; the export "
          f"file is {info.get('bytes_per_event', 0):,.0f} B per event; 1-minute load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    results, info = run(benchlib.QUICK if args.quick else benchlib.Sizes(), args.runs, args.quick)
    for key, label, unit in FIGURES:
        values = [r[key] for r in results]
        med = statistics.median(values)
        ratios = "; ".join(f"{med / statistics.median([r[b] for r in results]):.2f}x {b}" for b in RATIOS.get(key, ()))
        target = TARGETS.get(key)
        verdict = "" if not target else f"target {target[0]} {target[1]:,}: " + \
            ("PASS" if (med >= target[1] if target[0] == ">=" else med <= target[1]) else "MISS")
        print(f"{label.format(**info['labels']):<48} median {benchlib.fmt(med, unit):>10} {unit:<9} "
              f"runs {', '.join(benchlib.fmt(v, unit) for v in values)}  {ratios}  {verdict}")
    print_notes(info, None, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
