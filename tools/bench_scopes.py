"""Scope figures for `make bench` (issue 16): what sealing half the events costs, plain and half-sealed in one run.

Two cases, measured side by side in every run (their order alternating from run to run):
- plain: every event in scope `user`;
- sealed: every other event in the sealed scope `health`, which both devices read (the founder A
  created it and granted every B before writing).

Each run measures, beside the primitives (Ed25519 sign and verify, durable LMDB put, and
XChaCha20-Poly1305 seal and open of a 112-byte payload):
- durable append: `appends` single `store.append` calls on a new home (one device), each timed;
  in the sealed case every other one goes to `health`;
- catch-up: A's home holds `events` observations; a B that holds only the group's first events (and,
  sealed, the scope's key events) starts its daemon, which dials A's running daemon; timed from
  spawning B's daemon until B holds every event, exactly as tools/bench_replication.py measures it.
  B reads `health`, so its ingest opens every sealed payload and folds it.
The bar: the sealed case at most 15 % slower than the plain one, in append p50 (time per append) and
in catch-up (time per event); each run's ratio is paired, the table shows their median. Run alone:
`python tools/bench_scopes.py [--quick] [--runs N]`.
"""

from __future__ import annotations

import faulthandler
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bench_replication
import benchlib

from agentlog.store import home

SCOPE = "health"
CASES = ("plain", "sealed")
EVENTS, QUICK_EVENTS = 100_000, 20_000
BATCH = 1_000
BAR_PERCENT = 15.0
FIGURES = (
    *benchlib.primitives("sign", "verify"),
    *benchlib.AEAD_FIGURES,
    *benchlib.primitives("lmdb_put", "lmdb_put_p50"),
    ("scp_append_p50_plain", "durable append p50, all in `user`", "ms"),
    ("scp_append_p50_sealed", "durable append p50, every other in `health`", "ms"),
    ("scp_append_p99_plain", "durable append p99, all in `user`", "ms"),
    ("scp_append_p99_sealed", "durable append p99, every other in `health`", "ms"),
    ("scp_append_slower", "append p50: sealed slower than plain by", "%"),
    ("scp_catchup_plain", "catch-up of {scp_events} events, all in `user`", "events/s"),
    ("scp_catchup_sealed", "the same, every other in `health`", "events/s"),
    ("scp_catchup_slower", "catch-up: sealed slower than plain by", "%"),
    ("scp_catchup_linked_plain", "catch-up from B's connection up, plain", "events/s"),
    ("scp_catchup_linked_sealed", "the same, every other in `health`", "events/s"),
    ("scp_wire_plain", "catch-up wire bytes per event, plain", "B"),
    ("scp_wire_sealed", "catch-up wire bytes per event, half sealed", "B"),
)
RATIOS = {"scp_append_p50_plain": ("lmdb_put_p50",), "scp_append_p50_sealed": ("lmdb_put_p50",),
          "scp_catchup_plain": ("verify",), "scp_catchup_sealed": ("verify", "aead_open")}
TARGETS = {"scp_append_slower": ("<=", BAR_PERCENT), "scp_catchup_slower": ("<=", BAR_PERCENT)}


def scoped(rng: random.Random, n: int, sealed: bool, start: int = 0) -> list[tuple]:
    """n (observation, scope) pairs; when sealed, every other one (counting from `start`) in SCOPE."""
    return [(bench_replication.observation(rng), SCOPE if sealed and (start + i) % 2 else "user") for i in range(n)]


def build(tmp: Path, case: str, runs: int, events: int, rng: random.Random) -> tuple[Path, list[Path], dict]:
    """A founder's home holding `events` observations and `runs` enrolled B homes holding only the group's
    first events (sealed: the scope created, every B granted and holding those key events too)."""
    started = time.perf_counter()
    a_path, b_paths = bench_replication.group_of(tmp / case, "a", [f"b{n}" for n in range(runs)])
    sealed = case == "sealed"
    if sealed:
        with home.open_home(a_path) as a:
            a.scopes.create(SCOPE)
            a.scopes.grant(SCOPE, [f"b{n}" for n in range(runs)])
            for b_path in b_paths:
                with home.open_home(b_path) as b:
                    bench_replication.sync(a, b)
                    if not b.scopes.readable(SCOPE):
                        raise RuntimeError(f"{b_path.name} does not read {SCOPE!r} after the grant")
    with home.open_home(a_path) as a:
        for start in range(0, events, BATCH):
            a.append_many(scoped(rng, min(BATCH, events - start), sealed, start))
    return a_path, b_paths, {"seconds": time.perf_counter() - started}


def appends(path: Path, n: int, sealed: bool, rng: random.Random) -> tuple[float, float]:
    """Latency of n single durable appends on a new home: (p50 ms, p99 ms); sealed: every other in SCOPE."""
    latencies = []
    with home.create(path, "bench") as store:
        store.create_group("bench")
        if sealed:
            store.scopes.create(SCOPE)
        for payload, scope in scoped(rng, n, sealed):
            start = time.perf_counter_ns()
            store.append(payload, scope=scope)
            latencies.append(time.perf_counter_ns() - start)
    return benchlib.percentile(latencies, 50) / 1e6, benchlib.percentile(latencies, 99) / 1e6


def slower(plain_per_s: float, sealed_per_s: float) -> float:
    """How much longer the sealed case takes than the plain one, in percent (of the plain one's time)."""
    return (plain_per_s / sealed_per_s - 1) * 100


def case_run(case: str, a_path: Path, b_path: Path, work: Path, sizes, rng: random.Random,
             info: dict) -> dict[str, float]:
    """One case's appends and catch-up."""
    out = {}
    out[f"scp_append_p50_{case}"], out[f"scp_append_p99_{case}"] = appends(work / f"append-{case}", sizes.appends,
                                                                          case == "sealed", rng)
    caught = {"catch_up": []}
    figures = bench_replication.catch_up(a_path, b_path, caught)
    info["catch_up"][case].extend(caught["catch_up"])
    with home.open_home(b_path) as b:
        unread = b.scopes.unread_counts()
    if any(unread.values()):
        raise RuntimeError(f"{case}: B caught up but holds sealed events it did not open: {unread}")
    out[f"scp_catchup_{case}"] = figures["repl_catchup"]
    out[f"scp_catchup_linked_{case}"] = figures["repl_catchup_linked"]
    out[f"scp_wire_{case}"] = figures["repl_wire"]
    return out


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build the plain and the sealed A homes with `runs` B homes each, then `runs` runs of the primitives
    and both cases' figures. Everything is removed afterwards; every daemon is stopped by its pid."""
    events = QUICK_EVENTS if quick else EVENTS
    rng = random.Random(23)
    limit = 240 + runs * (120 + events / 1_000)
    results = []
    info = {"events": events, "appends": sizes.appends, "load_average": [], "build": {},
            "catch_up": {case: [] for case in CASES}, "order": [], "labels": {"scp_events": f"{events:,}"}}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-scopes-") as tmp_name:
        tmp = Path(tmp_name)
        faulthandler.dump_traceback_later(limit, exit=True)
        try:
            homes = {}
            for case in CASES:
                a_path, b_paths, built = build(tmp, case, runs, events, rng)
                homes[case] = (a_path, b_paths)
                info["build"][case] = built
                print(f"scopes home ({case}): {events:,} events built in {built['seconds']:.1f} s",
                      file=sys.stderr, flush=True)
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                began, work = time.perf_counter(), tmp / f"run{n}"
                out = benchlib.bench_crypto(sizes)
                out.update(benchlib.bench_aead(sizes.signs))
                out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(work / "lmdb", sizes.puts)
                order = CASES if n % 2 == 0 else CASES[::-1]
                info["order"].append(list(order))
                for case in order:
                    a_path, b_paths = homes[case]
                    out.update(case_run(case, a_path, b_paths[n], work, sizes, rng, info))
                shutil.rmtree(work)
                out["scp_append_slower"] = (out["scp_append_p50_sealed"] / out["scp_append_p50_plain"] - 1) * 100
                out["scp_catchup_slower"] = slower(out["scp_catchup_plain"], out["scp_catchup_sealed"])
                results.append(out)
                print(f"scopes run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            faulthandler.cancel_dump_traceback_later()
    return results, info


def bar_line(figures: dict) -> str:
    """PASS or MISS for the issue's bar: the sealed case within 15 % of the plain one, in both figures."""
    parts = []
    for key, what in (("scp_append_slower", "append p50"), ("scp_catchup_slower", "catch-up")):
        if key in figures:
            value = figures[key]["median"]
            parts.append(f"{what} {'PASS' if value <= BAR_PERCENT else 'MISS'} ({value:+.1f} %)")
    return f"scopes bar, sealed within {BAR_PERCENT:g} % of plain: " + "; ".join(parts)


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the scope figures measured, below the table, and the bar's line."""
    med = statistics.median
    cu = info["catch_up"]
    print(f"\nscope figures: {runs} run{'s' * (runs != 1)}, the primitives measured in each, then both cases in "
          f"alternating order (plain first in odd runs); 1-minute load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")
    print(f"- cases: plain, every event in `user`; sealed, every other event in `{SCOPE}`, read by both devices "
          f"(its payload sealed: key id, nonce and tag add {32 + 24 + 16} B). Slower by: the sealed case's time "
          f"per append (p50) or per caught-up event over the plain one's in the same run, less 1; the median of "
          f"the runs' ratios")
    print(f"- append: {info['appends']:,} single durable appends per case on a new home of one device "
          f"(XChaCha20-Poly1305 seal of a {benchlib.AEAD_PLAIN_BYTES} B payload is the `aead_seal` primitive)")
    print(f"- catch-up: A's home holds {info['events']:,} observations (built through append_many in "
          f"{info['build']['plain']['seconds']:.1f} s plain, {info['build']['sealed']['seconds']:.1f} s sealed); a "
          f"B holding only the group's first events starts its daemon, which dials A's running one; timed from "
          f"spawning B's daemon (startup to `connected`: plain "
          f"{med([c['startup_s'] for c in cu['plain']]) * 1e3:.0f} ms, sealed "
          f"{med([c['startup_s'] for c in cu['sealed']]) * 1e3:.0f} ms) until B's frontier, polled read-only "
          f"here, equals A's; B reads `{SCOPE}`, so its ingest opens and folds every sealed payload")
    closes = [r for case in CASES for c in cu[case] for r in c["closes"]
              if not r.startswith(("connection ended", "peer said goodbye"))]
    if closes:
        print(f"note: connections closed during the catch-ups: {'; '.join(sorted(set(closes)))}")
    print(bar_line(figures))


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, FIGURES, RATIOS, TARGETS, print_notes)


if __name__ == "__main__":
    sys.exit(main())
