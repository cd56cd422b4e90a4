"""What tools/bench.py and its parts (tools/bench_*.py) share: run sizes, rates and percentiles, the
primitives' figures, the simulated preference history, the results table, and a part's main() when run alone."""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lmdb

from agentlog import crypto
from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.store import Store


@dataclass(frozen=True)
class Sizes:
    """How much work one run does."""
    signs: int = 20_000
    verifies: int = 10_000
    hashes: int = 200_000
    puts: int = 1_000
    bulk_puts: int = 100_000
    appends: int = 2_000
    events: int = 50_000
    batch: int = 100
    pref_events: int = 100_000
    settings: int = 200
    lookups: int = 100_000
    writer_rate: int = 1_000
    processes: int = 20
    mem_entries: int = 100_000
    mem_batch: int = 1_000
    mem_puts: int = 200
    mem_gets: int = 10_000
    mem_queries: int = 250
    mem_lexical: int = 60


QUICK = Sizes(signs=2_000, verifies=1_000, hashes=20_000, puts=100, bulk_puts=10_000, appends=200, events=5_000,
              pref_events=10_000, lookups=10_000, processes=5, mem_entries=10_000, mem_puts=50, mem_gets=2_000,
              mem_queries=100, mem_lexical=30)

PRIMITIVE_FIGURES = (
    ("sign", "Ed25519 sign, 1 thread", "ops/s"),
    ("verify", "Ed25519 verify, 1 thread", "ops/s"),
    ("blake2b", "BLAKE2b-256 of 200 B", "ops/s"),
    ("lmdb_put", "LMDB durable put txn", "txn/s"),
    ("lmdb_put_p50", "LMDB durable put txn p50", "ms"),
    ("lmdb_put_bulk", "LMDB put of 300 B, {bulk_puts} in one txn", "puts/s"),
)
"""The figures of the primitives every part measures beside its own: (key, label, unit)."""


def primitives(*keys: str) -> tuple:
    """The PRIMITIVE_FIGURES rows of these keys, in the order given."""
    rows = {row[0]: row for row in PRIMITIVE_FIGURES}
    return tuple(rows[key] for key in keys)
AEAD_PLAIN_BYTES = 112
"""The payload sealed by the AEAD primitive: about a small observation's encoded size."""
AEAD_FIGURES = (
    ("aead_seal", f"XChaCha20-Poly1305 seal of {AEAD_PLAIN_BYTES} B", "ops/s"),
    ("aead_open", f"XChaCha20-Poly1305 open of {AEAD_PLAIN_BYTES} B", "ops/s"),
)
"""The sealed payload's primitive (agentlog.crypto's AEAD), beside the figures of sealed scopes."""
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


def bench_aead(n: int) -> dict[str, float]:
    """Single-thread XChaCha20-Poly1305 seal and open of AEAD_PLAIN_BYTES under one content key, with
    associated data the size of a sealed event's (prefix, group, author, scope and kind)."""
    key, ad = crypto.content_key(), os.urandom(17 + 32 + 32 + len("health") + 1 + len("observation"))
    plains = [os.urandom(AEAD_PLAIN_BYTES) for _ in range(256)]
    sealed = [crypto.aead_encrypt(key, p, ad) for p in plains]
    if [crypto.aead_decrypt(key, s, ad) for s in sealed[:16]] != plains[:16]:
        raise RuntimeError("a sealed payload did not open")
    return {"aead_seal": per_second(crypto.aead_encrypt, [(key, plains[i & 255], ad) for i in range(n)]),
            "aead_open": per_second(crypto.aead_decrypt, [(key, sealed[i & 255], ad) for i in range(n)])}


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


def bench_lmdb_put_bulk(path: Path, n: int) -> float:
    """Puts of 300 bytes per second, all in one durable write transaction (what a rebuild does)."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=4 * 1024 * 1024 * 1024, sync=True)
    value = os.urandom(300)
    keys = sorted(os.urandom(32) for _ in range(n))
    try:
        start = time.perf_counter()
        with env.begin(write=True) as txn:
            for key in keys:
                txn.put(key, value)
        return rate(n, time.perf_counter() - start)
    finally:
        env.close()


# -- the preference history (issue 3) ------------------------------------------------

DAY_MS = 86_400_000
HISTORY_DAYS = 42
VALUES = ("a", "b", "c", "d")
STATED = 20
"""Settings s000..s019 also get explicit statements, overrides and configuration; the rest only evidence."""


def setting_name(i: int) -> str:
    return f"s{i:03d}"


class SimClock:
    """Simulated wall time for the history's devices; each reads it with its own skew."""

    def __init__(self, start_ms: int):
        self.now = start_ms

    def of(self, skew_ms: int):
        return lambda: self.now + skew_ms


def open_device(path: Path, name: str, clock) -> Store:
    """A new home whose store reads the simulated clock (home.create stamps no time)."""
    created = home.create(path, name)
    key = created.key
    created.close()
    return Store(path / home.STORE_DIR, key, clock=clock)


def sync(src: Store, dst: Store) -> None:
    """Copy every event `dst` lacks from `src`, in causal order, through the validated ingest."""
    dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


def end_round(laptop: Store, others: list[Store], history: History, fresh: list, send=sync) -> None:
    """A round's meeting: each other device sends the laptop what it lacks, then takes what it lacks;
    the round's decisions (`fresh`) are held everywhere now, so later rounds may correct them."""
    for store in others:
        send(store, laptop)
    for store in others:
        send(laptop, store)
    history.decisions.extend(fresh)


class History:
    """Draws a device's batches of preference events: learned evidence in day/night and device
    contexts with a few corrections, and on the first STATED settings explicit statements,
    overrides, configuration and a forget."""

    def __init__(self, rng: random.Random, settings: int):
        self.rng, self.settings = rng, settings
        self.weights = [1 / (i + 1) ** 0.8 for i in range(settings)]
        self.truth = {setting_name(i): (rng.choice(VALUES), rng.choice(VALUES)) for i in range(settings)}
        self.decisions: list[tuple[bytes, str]] = []     # (id, value) of decisions every device holds

    def config(self) -> list:
        """pref.config events for the stated settings: policies, half-lives and typed values."""
        out = []
        for i in range(STATED):
            out.append(payloads.PrefConfig(setting=setting_name(i), policy=("sticky", "vote", "reconfirm")[i % 3],
                                           half_life_ms=(7 * DAY_MS if i % 4 == 0 else 0),
                                           value_type=("choice" if i % 2 else "unchanged"),
                                           choices=(VALUES if i % 2 else ())))
        return out

    def batch(self, n: int, device_class: str, night: bool) -> tuple[list, list[int]]:
        """n payloads, and the positions of the decisions among them."""
        rng, out, decided = self.rng, [], []
        for _ in range(n):
            name = setting_name(rng.choices(range(self.settings), self.weights)[0])
            value = self.truth[name][night] if rng.random() < 0.75 else rng.choice(VALUES)
            context = rng.choice(((("daypart", "night" if night else "day"), ("device_class", device_class)),) * 3
                                 + ((("daypart", "night" if night else "day"),),) * 2 + ((),))
            stated = int(name[1:]) < STATED
            roll = rng.random()
            if roll < 0.86:
                out.append(payloads.Observation(setting=name, value=value, context=context,
                                                weight_milli=rng.choice((1000, 1000, 1000, 2000))))
            elif roll < 0.94:
                decided.append(len(out))
                out.append(payloads.Decision(setting=name, value=value, context=context,
                                             confidence_bp=rng.randrange(3000, 9500)))
            elif roll < 0.98 and self.decisions:
                eid, chosen = rng.choice(self.decisions)
                out.append(payloads.Correction(decision=eid, value=rng.choice([v for v in VALUES if v != chosen])))
            elif stated and roll < 0.99:
                out.append(payloads.PrefSet(setting=name, value=value, context=context[:1]))
            elif stated and roll < 0.995:
                out.append(payloads.OverrideSet(setting=name, value=rng.choice(VALUES), baseline=self.truth[name][0]))
            elif stated and roll < 0.9965:
                out.append(payloads.OverrideClear(setting=name))
            elif stated and roll < 0.9967:
                out.append(payloads.PrefForget(setting=name))
            else:
                out.append(payloads.Observation(setting=name, value=value, context=context))
        return out, decided


# -- the results table ----------------------------------------------------------------

def summarize(results: list[dict[str, float]], sizes: Sizes, table: tuple, ratios: dict, targets: dict,
              scaled_keys: tuple = (), extras: dict | None = None, failures: dict[str, str] | None = None,
              of_primitive: dict[str, tuple[str, float]] | None = None) -> dict:
    """Medians, extremes, ratios and target checks of all runs; a figure no run measured is left out.

    `table` lists the figures in order as (key, label, unit); `ratios` maps a figure to the primitives it is
    compared with, `targets` to its (op, target); targets of `scaled_keys` are also checked scaled to this
    machine's sign/s, and those of `of_primitive` (key -> (primitive, factor)) against factor times that
    primitive's median in the same results. `extras` fills labels beside the sizes; `failures` names figures
    whose command failed (status ERROR).
    """
    figures = {}
    for key, label, unit in table:
        values = [r[key] for r in results if key in r]
        if values:
            figures[key] = {"label": label.format(**asdict(sizes), **(extras or {})), "unit": unit, "runs": values,
                            "median": statistics.median(values), "min": min(values), "max": max(values)}
    for key, bases in ratios.items():
        if key in figures:
            figures[key]["ratio"] = [{"to": base, "value": figures[key]["median"] / figures[base]["median"]}
                                     for base in bases if base in figures]
    speed = figures["sign"]["median"] / REFERENCE_SIGN_PER_S if "sign" in figures else 1.0
    for key, (op, target) in targets.items():
        if key not in figures:
            continue
        median = figures[key]["median"]
        scaled = target * speed if key in scaled_keys else None
        base = (of_primitive or {}).get(key)
        if base is not None and base[0] in figures:
            scaled = base[1] * figures[base[0]]["median"]
        if failures and key in failures:
            status = "ERROR"
        elif (median <= target) if op == "<=" else (median >= target):
            status = "PASS"
        elif scaled is not None and median >= scaled:
            status = "PASS scaled"
        else:
            status = "MISS"
        figures[key]["target"] = {"op": op, "value": target, "scaled": scaled, "status": status}
    return figures


def fmt(value: float, unit: str) -> str:
    """A number formatted for its unit."""
    if unit == "ms":
        return f"{value:.3f}"
    if unit == "MB":
        return f"{value:,.1f}"
    if unit in ("%", "s", "x"):
        return f"{value:.2f}"
    return f"{value:.1f}" if unit == "µs" else f"{value:,.0f}"


def print_table(figures: dict) -> None:
    """The results table on stdout."""
    head = ("figure", "median", "min", "max", "unit", "ratio to primitive", "target", "scaled", "")
    rows = [head]
    for fig in figures.values():
        unit, ratio, target = fig["unit"], fig.get("ratio"), fig.get("target")
        rows.append((fig["label"], fmt(fig["median"], unit), fmt(fig["min"], unit), fmt(fig["max"], unit), unit,
                     "; ".join(f"{r['value']:.2f}x {figures[r['to']]['label']}" for r in ratio or ()),
                     f"{target['op']} {fmt(target['value'], unit)}" if target else "",
                     fmt(target["scaled"], unit) if target and target["scaled"] is not None else "",
                     target["status"] if target else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    align = ("<", ">", ">", ">", "<", "<", "<", ">", "<")
    for n, row in enumerate(rows):
        print("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def part_main(description: str, run, table: tuple, ratios: dict, targets: dict, notes, quick_runs: int = 1,
              skipped: tuple[type[Exception], ...] = ()) -> int:
    """The main() of a tools/bench_*.py part run alone: `--runs` (default 3, `quick_runs` with `--quick`),
    `run(sizes, runs, quick)`, the table of `table`'s figures, then `notes(info, figures, runs)`; exit 2 with
    the reason when `run` raises one of `skipped` (what the part needs is missing here)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sizes = QUICK if args.quick else Sizes()
    runs = args.runs or (quick_runs if args.quick else 3)
    try:
        results, info = run(sizes, runs, args.quick)
    except skipped as exc:
        print(f"{Path(sys.argv[0]).stem}: {exc}", file=sys.stderr)
        return 2
    figures = summarize(results, sizes, table, ratios, targets, extras=info.get("labels"))
    print_table(figures)
    notes(info, figures, runs)
    return 0
