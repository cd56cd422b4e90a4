"""Benchmark agentlog against the primitives it is built on: `make bench`.

Measures Ed25519, BLAKE2b-256 and LMDB puts, then single durable appends, batched
appends and a full `verify_store`, all on real LMDB stores in a temporary
directory. Then the preference view (issue 3): two devices write six weeks of
preference events and sync twice a day; on the laptop's store, lookups are timed
alone and while tools/bench_writer.py appends from another process, the view is
rebuilt by replay, and `agentlog pref get` is timed as a whole process. Then
memory (issue 4, tools/bench_memory.py): a home bulk-loaded with 100,000 entries
with 384-dimensional embeddings, its index build, single puts, gets, top-10
searches and a cold start. Then replication (issue 5, tools/bench_replication.py):
`agentlog serve` processes over 127.0.0.1 for a 100,000-event catch-up, live push
latency, in-sync heartbeat bytes and a 3-device reconvergence. Then scopes (issue 16,
tools/bench_scopes.py): durable appends and a 100,000-event catch-up between `serve` processes,
all in `user` beside every other event in a sealed scope, in the same run. Then erasure (issue 17,
tools/bench_erasure.py): an erase request received on a home of 100,000 events, until its bytes are gone
from every file of the home. Then the relay (issue 18, tools/bench_relay.py): `serve` processes that meet only
through a real nats-server, beside the same figures over direct connections (skipped, with a note, when
nats-server is not installed). Then watching (issue 20, tools/bench_watch.py): an append on one `serve`
process's device until a watcher on the other's has the change, and durable appends with and without five
`agentlog watch` processes. Then Hypercore (issue 21, tools/bench_hypercore.py): our catch-up and Hypercore's
(its npm package, where node and npm are here) in the same runs, and their ratio. Then search quality (issue 23,
tools/bench_search.py): recall@3 of BM25, vectors and the two fused on the labelled set that ships with the
tests. Every figure is
measured in each run; the table shows the median, and the JSON results file keeps
every run.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import bench_audit
import bench_compaction
import bench_erasure
import bench_hypercore
import bench_relay
import bench_replay
import bench_replication
import bench_scopes
import bench_search
import bench_watch
import lmdb
import natslib
from benchlib import (
    AEAD_FIGURES,
    DAY_MS,
    HISTORY_DAYS,
    PRIMITIVE_FIGURES,
    QUICK,
    REFERENCE_SIGN_PER_S,
    History,
    SimClock,
    Sizes,
    bench_crypto,
    bench_lmdb_put,
    bench_lmdb_put_bulk,
    end_round,
    observation,
    open_device,
    percentile,
    print_table,
    rate,
    setting_name,
    summarize,
    sync,
)

from agentlog.store import devices, home
from agentlog.store.store import Store
from agentlog.store.verify import verify_store

ROOT = Path(__file__).resolve().parent.parent

FIGURES = (
    *PRIMITIVE_FIGURES,
    *AEAD_FIGURES,
    ("lmdb_get_p50", "LMDB read txn + get of {value_bytes} B p50", "µs"),
    ("lmdb_get_p99", "LMDB read txn + get of {value_bytes} B p99", "µs"),
    ("python_startup", "python -c pass, p50 of {processes}", "ms"),
    ("append_p50", "durable append p50", "ms"),
    ("append_p99", "durable append p99", "ms"),
    ("batched", "append_many, batches of {batch} over 200 settings", "events/s"),
    ("batched_cpu", "append_many CPU per event, every thread", "µs"),
    ("batched_written", "append_many bytes written to storage per event", "B"),
    ("batched_handed", "append_many bytes handed to write() per event", "B"),
    ("verify_store", "verify_store, {events} events", "events/s"),
    ("pref_get_quiet_p50", "prefs.get p50, {pref_events} events, no writer", "µs"),
    ("pref_get_quiet_p99", "prefs.get p99, {pref_events} events, no writer", "µs"),
    ("pref_get_p50", "prefs.get p50, {pref_events} events, writer on", "µs"),
    ("pref_get_p99", "prefs.get p99, {pref_events} events, writer on", "µs"),
    ("pref_get_best_p99", "prefs.get p99, each lookup's faster of the 2", "µs"),
    ("writer_rate", "paced writer in another process", "events/s"),
    ("rebuild", "rebuild_views, full replay", "events/s"),
    ("cli_pref_get", "agentlog pref get process, p50 of {processes}", "ms"),
    ("mem_put", "memory.put, durable, one txn each", "events/s"),
    ("mem_put_bulk", "MemoryPut with 384-d vector, append_many of {mem_batch}", "events/s"),
    ("mem_index_build", "index build of {mem_entries} entries, first search", "entries/s"),
    ("mem_lmdb_get_p50", "LMDB read txn + get of {entry_bytes} B p50", "µs"),
    ("mem_lmdb_get_p99", "LMDB read txn + get of {entry_bytes} B p99", "µs"),
    ("mem_get_p50", "memory.get p50, {mem_entries} entries", "µs"),
    ("mem_get_p99", "memory.get p99, {mem_entries} entries", "µs"),
    ("mem_get_best_p99", "memory.get p99, each get's faster of 2 passes", "µs"),
    ("mem_embed_p50", "embed one query (agentlog-hash-384) p50", "ms"),
    ("mem_matmul_p50", "scan {mem_entries}x384 float32 by query, @ p50", "ms"),
    ("mem_matmul_p99", "scan {mem_entries}x384 float32 by query, @ p99", "ms"),
    ("mem_einsum_p50", "the same scan with einsum p50", "ms"),
    ("mem_einsum_p99", "the same scan with einsum p99", "ms"),
    ("mem_search_p50", "memory.search top-10 p50, {mem_entries} entries, writer on", "ms"),
    ("mem_search_p99", "memory.search top-10 p99, {mem_entries} entries, writer on", "ms"),
    ("mem_search_type_p50", "memory.search top-10, type filter, p50, writer on", "ms"),
    ("mem_search_type_p99", "memory.search top-10, type filter, p99, writer on", "ms"),
    ("mem_search_lexical_p50", "memory.search top-10 lexical p50", "ms"),
    ("mem_search_lexical_p99", "memory.search top-10 lexical p99", "ms"),
    ("mem_cold", "cold start: open + first search, new process", "ms"),
    ("mem_cold_disk", "the same, store files evicted from page cache", "ms"),
    ("mem_vector_mb", "the index's float32 vectors", "MB"),
    ("mem_rss", "RSS growth of open + first search, new process", "MB"),
    ("repl_catchup", "catch-up of {repl_events} events, B's daemon started", "events/s"),
    ("repl_catchup_linked", "the same, from B's connection up (no startup)", "events/s"),
    ("repl_payload", "payload per event, mean", "B"),
    ("repl_wire", "catch-up wire bytes per event, both ways", "B"),
    ("repl_wire_over", "catch-up wire bytes per event over its payload", "B"),
    ("repl_live_p50", "live push p50, committed on A to held by B", "ms"),
    ("repl_live_p99", "live push p99, committed on A to held by B", "ms"),
    ("repl_live_call_p50", "live push p50, append called on A to held by B", "ms"),
    ("repl_live_call_p99", "live push p99, append called on A to held by B", "ms"),
    ("repl_live_append_p50", "A's durable append meanwhile, p50", "ms"),
    ("repl_heartbeat", "in-sync heartbeat round, 2 authors, both ways", "B"),
    ("repl_reconverge", "3 devices x {repl_partitioned} events reconverge", "ms"),
    ("repl_reconverge_serving", "the same, from the last daemon listening", "ms"),
    ("replay_full", "replay of {replay_events} events, read-only, scratch fold", "events/s"),
    ("replay_half", "replay --until half way", "events/s"),
    ("replay_setting", "replay --setting, the busiest setting", "events/s"),
    *bench_audit.FIGURES,
    *bench_compaction.FIGURES,
    *(f for f in bench_scopes.FIGURES if f not in PRIMITIVE_FIGURES + AEAD_FIGURES),
    *(f for f in bench_erasure.FIGURES if f not in PRIMITIVE_FIGURES),
    *(f for f in bench_relay.FIGURES if f not in PRIMITIVE_FIGURES + AEAD_FIGURES),
    *(f for f in bench_watch.FIGURES if f not in PRIMITIVE_FIGURES),
    *bench_hypercore.FIGURES,
)
RATIOS = {"append_p50": ("lmdb_put_p50",), "batched": ("sign",), "verify_store": ("verify",),
          "pref_get_quiet_p50": ("lmdb_get_p50",), "pref_get_quiet_p99": ("lmdb_get_p99",),
          "pref_get_p50": ("lmdb_get_p50",), "pref_get_p99": ("lmdb_get_p99",),
          "rebuild": ("lmdb_put_bulk", "blake2b"), "cli_pref_get": ("python_startup",),
          "mem_put": ("lmdb_put", "sign"), "mem_put_bulk": ("lmdb_put_bulk", "sign"),
          "mem_index_build": ("lmdb_put_bulk",), "mem_get_p50": ("mem_lmdb_get_p50",),
          "mem_get_p99": ("mem_lmdb_get_p99",), "mem_search_p50": ("mem_einsum_p50", "mem_matmul_p50"),
          "mem_search_p99": ("mem_einsum_p99", "mem_matmul_p99"),
          "mem_search_type_p50": ("mem_einsum_p50", "mem_matmul_p50"),
          "mem_search_type_p99": ("mem_einsum_p99", "mem_matmul_p99"), "mem_rss": ("mem_vector_mb",),
          "repl_catchup": ("verify",), "repl_catchup_linked": ("verify",),
          "repl_live_p50": ("lmdb_put_p50", "repl_live_append_p50"), "repl_live_p99": ("lmdb_put_p50",),
          "replay_full": ("lmdb_put_bulk", "blake2b"), "replay_half": ("lmdb_put_bulk", "blake2b"),
          "replay_setting": ("lmdb_put_bulk", "blake2b"), **bench_audit.RATIOS, **bench_compaction.RATIOS,
          **bench_scopes.RATIOS, **bench_erasure.RATIOS, **bench_relay.RATIOS, **bench_watch.RATIOS,
          **bench_hypercore.RATIOS}
TARGETS = {"append_p50": ("<=", 1.0), "batched": (">=", 30_000), "verify_store": (">=", 20_000),
           "pref_get_p99": ("<=", 100), "rebuild": (">=", 100_000), "cli_pref_get": ("<=", 150),
           "mem_get_p99": ("<=", 100), "mem_search_p99": ("<=", 20), "mem_search_type_p99": ("<=", 20),
           "repl_catchup": (">=", 20_000), "repl_wire_over": ("<=", 200), "repl_live_p50": ("<=", 2.0),
           "repl_live_p99": ("<=", 20.0), "repl_heartbeat": ("<=", 100 + 48 * 2), "repl_reconverge": ("<=", 5_000),
           "replay_full": (">=", 100_000), "replay_half": (">=", 100_000), "replay_setting": (">=", 100_000),
           "mem_cold": ("<=", 300),
           **bench_audit.TARGETS, **bench_compaction.TARGETS, **bench_scopes.TARGETS,
           **bench_erasure.TARGETS, **bench_relay.TARGETS, **bench_watch.TARGETS, **bench_hypercore.TARGETS}
SCALED = ("verify_store",)
"""Targets bound by Ed25519 throughput, also checked against the target scaled to this machine's sign/s."""
OF_PRIMITIVE = {"batched": ("sign", 0.5)}
"""Targets also checked as a share of a primitive measured in the same run (issue 21: batched appends at
half of Ed25519 sign)."""
PREF_RUNS = 3
"""Runs of the preference figures (writer, lookups, rebuild) on the one store built per bench."""
MEM_RUNS = 3
"""Runs of the memory figures (puts, gets, searches, cold start) on the one home loaded per bench."""
REPL_RUNS = 3
"""Runs of the replication figures (catch-up, live push, heartbeat, reconvergence; tools/bench_replication.py)."""
PARTS = {"replay": bench_replay, "audit": bench_audit, "compaction": bench_compaction, "scopes": bench_scopes,
         "erasure": bench_erasure, "relay": bench_relay, "watch": bench_watch, "hypercore": bench_hypercore,
         "search": bench_search}
"""The parts measured after replication, in order (3 runs each, 1 with --quick): each module has
run(sizes, runs, quick) -> (results, info) and print_notes(info, figures, runs)."""
MISSING = (natslib.NatsMissing, bench_hypercore.HypercoreMissing)
"""What a part raises when what it needs is not here (nats-server, node): the part is skipped with the reason."""




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


def bench_batched(path: Path, total: int, batch: int) -> tuple[float, float, float, float | None]:
    """Events per second through `store.append_many` in fixed-size batches; the CPU time per event (µs, every
    thread of the process: steadier than wall time on a shared machine); the bytes written to storage per event
    as the kernel charges them (ru_oublock: a kernel that caches files in large folios charges a whole folio,
    up to 2 MB, for each clean one a commit dirties, however few of its pages LMDB rewrote); and the bytes the
    process handed to write() and its kin per event (the pages each commit writes, exactly; None where
    /proc/self/io is missing)."""
    store = home.create(path, "bench")
    try:
        store.create_group("bench")
        batches = [[observation(i) for i in range(s, min(s + batch, total))] for s in range(0, total, batch)]
        blocks, handed = resource.getrusage(resource.RUSAGE_SELF).ru_oublock, _handed()
        cpu, start = time.process_time(), time.perf_counter()
        for items in batches:
            store.append_many(items)
        elapsed = time.perf_counter() - start
        cpu, blocks = time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_oublock - blocks
        handed = None if handed is None else (_handed() - handed) / total
        return rate(total, elapsed), cpu / total * 1e6, blocks * 512 / total, handed
    finally:
        store.close()


def _handed() -> int | None:
    """Bytes this process has passed to write(), pwrite() and writev() so far (wchar), or None off Linux."""
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))
    except (OSError, StopIteration):
        return None


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
    out["lmdb_put_bulk"] = bench_lmdb_put_bulk(workdir / "lmdb-bulk", sizes.bulk_puts)
    out["append_p50"], out["append_p99"] = bench_single(workdir / "single", sizes.appends)
    out["batched"], out["batched_cpu"], out["batched_written"], handed = bench_batched(workdir / "batched",
                                                                                       sizes.events, sizes.batch)
    if handed is not None:
        out["batched_handed"] = handed
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


# -- preferences (issue 3) ------------------------------------------------------------

PREF_DEVICES = (("laptop", 0.65, 0), ("phone", 0.35, 95_000))
"""The devices that write the history: name, share of the events, clock skew in ms. Every device
must ingest what the others wrote (causal delivery), so each one more doubles the build time."""




def build_history(path: Path, sizes: Sizes, seed: int = 7) -> dict:
    """PREF_DEVICES write sizes.pref_events events over HISTORY_DAYS simulated days ending now,
    syncing with the laptop twice a day; returns what was built. The laptop's home is path / "laptop"."""
    rng = random.Random(seed)
    started = time.perf_counter()
    clock = SimClock(time.time_ns() // 1_000_000 - HISTORY_DAYS * DAY_MS)
    stores: dict[str, Store] = {}
    try:
        for name, _, skew in PREF_DEVICES:
            stores[name] = open_device(path / name, name, clock.of(skew))
        laptop, others = stores["laptop"], [stores[name] for name, _, _ in PREF_DEVICES[1:]]
        laptop.create_group("laptop")
        for store in others:
            devices.join(store, devices.enroll(laptop, store.device, store.name))
            sync(laptop, store)
        history = History(rng, sizes.settings)
        quota = {name: round(sizes.pref_events * share) for name, share, _ in PREF_DEVICES[1:]}
        quota["laptop"] = sizes.pref_events - sum(quota.values())
        written = {name: 0 for name in stores}
        written["laptop"] = len(laptop.append_many(history.config()))
        rounds = HISTORY_DAYS * 2
        for r in range(rounds):
            round_start, fresh = clock.now, []
            for name, _, _ in PREF_DEVICES:
                n = round(quota[name] * (r + 1) / rounds) - written[name]
                for done in range(0, n, 1000):
                    hour = clock.now // 3_600_000 % 24
                    items, decided = history.batch(min(1000, n - done), name, hour < 7 or hour >= 19)
                    ids = stores[name].append_many(items)
                    fresh.extend((ids[i], items[i].value) for i in decided)
                    written[name] += len(items)
                clock.now += rng.randrange(10, 40) * 60_000
            end_round(laptop, others, history, fresh)
            clock.now = round_start + DAY_MS // 2
        count = laptop.count()
    finally:
        for store in stores.values():
            store.close()
    return {"events": count, "written": written, "seconds": time.perf_counter() - started}


def lookup_queries(rng: random.Random, n: int, settings: int) -> list[tuple[str, dict[str, str]]]:
    """(setting, context) pairs: any setting, a few never seen; contexts from none to two keys, some unseen."""
    contexts = ({}, {"daypart": "day"}, {"daypart": "night"}, {"device_class": "phone"},
                {"daypart": "night", "device_class": "laptop"}, {"daypart": "day", "device_class": "phone"},
                {"daypart": "night", "device_class": "tv"})
    return [(setting_name(rng.randrange(settings)) if rng.random() < 0.97 else f"unseen{rng.randrange(1000)}",
             rng.choice(contexts)) for _ in range(n)]


def timed_ns(fn, calls: list[tuple]) -> list[int]:
    """The wall time of each call fn(*args), in nanoseconds."""
    times = []
    for args in calls:
        start = time.perf_counter_ns()
        fn(*args)
        times.append(time.perf_counter_ns() - start)
    return times


def p50_p99_us(times: list[int]) -> tuple[float, float]:
    """p50 and p99 in microseconds of times in nanoseconds."""
    return percentile(times, 50) / 1000, percentile(times, 99) / 1000


def setting_bytes(store: Store) -> int:
    """The mean size of a setting's stored state in the preference view."""
    with store.raw_txn() as txn:
        sizes = [len(v) for k, v in txn.cursor(db=store.db("views.pref")) if not k.startswith(b"\0")]
    return round(statistics.mean(sizes)) if sizes else 0


def lmdb_get(store: Store, key: bytes) -> bytes | None:
    """The primitive under a lookup: one bare LMDB read transaction and one get from the preference view."""
    with store.env.begin() as txn:
        return txn.get(key, db=store.db("views.pref"))


def start_writer(path: Path, sizes: Sizes, *extra: str) -> subprocess.Popen:
    """tools/bench_writer.py appending sizes.writer_rate events/s to the home at path, once it has written
    (`extra`: more of its options)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "bench_writer.py"), str(path),
                             "--rate", str(sizes.writer_rate), "--settings", str(sizes.settings), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the paced writer did not start: {proc.communicate()[1].strip()[-500:]}")
    return proc


def stop_writer(proc: subprocess.Popen) -> dict:
    """Stop the writer by its PID; returns its report (events, seconds, rate, late batches)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("the paced writer did not stop within 30 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the paced writer failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return json.loads(out.strip().splitlines()[-1])


def pref_run(store: Store, path: Path, sizes: Sizes, rng: random.Random, info: dict) -> dict[str, float]:
    """Lookups with the store quiet, then gets and the same lookups while the writer runs, then a
    full rebuild once it has stopped. Adds the writer's report, the sources of the answers and any
    note to `info`."""
    queries = lookup_queries(rng, sizes.lookups, sizes.settings)
    keys = [(setting_name(rng.randrange(sizes.settings)).encode(),) for _ in range(sizes.lookups)]

    def get(setting: str, context: dict[str, str]):
        return store.prefs.get(setting, context)        # as an agent writes it

    sources = Counter(f"{a.source}{' uncertain' if a.uncertain else ''}" for a in (get(*q) for q in queries[:1000]))
    info["answers"].append(dict(sources.most_common()))
    out: dict[str, float] = {}
    quiet = timed_ns(get, queries)
    out["pref_get_quiet_p50"], out["pref_get_quiet_p99"] = p50_p99_us(quiet)
    writer = start_writer(path, sizes)
    try:
        out["lmdb_get_p50"], out["lmdb_get_p99"] = p50_p99_us(timed_ns(partial(lmdb_get, store), keys))
        busy = timed_ns(get, queries)
        out["pref_get_p50"], out["pref_get_p99"] = p50_p99_us(busy)
    finally:
        report = stop_writer(writer)
    out["pref_get_best_p99"] = percentile([min(a, b) for a, b in zip(quiet, busy)], 99) / 1000
    info["writer"].append(report)
    out["writer_rate"] = report["rate"]
    if report["rate"] < 0.95 * sizes.writer_rate:
        info["notes"].append(f"the writer reached {report['rate']:,.0f} events/s of {sizes.writer_rate:,} "
                             f"({report['late_batches']} late batches, slowest {report['slowest_batch_ms']} ms)")
    digest = store.views()["pref"]["digest"]
    start = time.perf_counter()
    replayed = store.rebuild_views()
    out["rebuild"] = rate(replayed, time.perf_counter() - start)
    if store.views()["pref"]["digest"] != digest:
        info["notes"].append(f"the rebuilt preference view differs from the incremental one ({replayed:,} events)")
    return out


def process_ms(commands: list[list[str]]) -> tuple[list[float], str | None]:
    """Wall time of each whole process, in ms, and the first failure (None if all exited 0)."""
    times, failure = [], None
    for argv in commands:
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0 and failure is None:
            failure = f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}"
    return times, failure


def agentlog_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m agentlog`."""
    script = Path(sys.executable).parent / "agentlog"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentlog"]


def run_pref(sizes: Sizes, runs: int) -> tuple[list[dict[str, float]], dict]:
    """Build the preference store once, then `runs` runs of the lookup and rebuild figures and
    sizes.processes whole processes of each kind; the store is removed afterwards."""
    results, rng = [], random.Random(11)
    limit = 300 + (sizes.pref_events + runs * sizes.lookups) / 500
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-pref-") as tmp:
        faulthandler.dump_traceback_later(limit, exit=True)
        try:
            info = build_history(Path(tmp), sizes)
            print(f"preference store: {info['events']:,} events by {len(info['written'])} devices over "
                  f"{HISTORY_DAYS} days, built in {info['seconds']:.1f} s", file=sys.stderr, flush=True)
            path = Path(tmp) / "laptop"
            store = home.open_home(path)
            try:
                info.update(value_bytes=setting_bytes(store), load_average=[], answers=[], writer=[], notes=[])
                for n in range(runs):
                    info["load_average"].append(os.getloadavg()[0])
                    start, workdir = time.perf_counter(), Path(tmp) / f"run{n}"
                    out = bench_crypto(sizes)          # the rebuild's primitives, in the same run
                    out["lmdb_put_bulk"] = bench_lmdb_put_bulk(workdir / "lmdb-bulk", sizes.bulk_puts)
                    shutil.rmtree(workdir)
                    out.update(pref_run(store, path, sizes, rng, info))
                    results.append(out)
                    print(f"preference run {n + 1}/{runs} done in {time.perf_counter() - start:.1f} s",
                          file=sys.stderr, flush=True)
                info["events_after"] = store.count()
            finally:
                store.close()
            cli, failure = process_ms([[*agentlog_command(), "--home", str(path), "pref", "get",
                                        setting_name(rng.randrange(sizes.settings))] for _ in range(sizes.processes)])
            if failure:
                info["notes"].append(f"agentlog pref get failed ({failure}); its times are of the failing process")
            bare, _ = process_ms([[sys.executable, "-c", "pass"]] * sizes.processes)
            results.extend({"cli_pref_get": c, "python_startup": b} for c, b in zip(cli, bare))
        finally:
            faulthandler.cancel_dump_traceback_later()
    info["failures"] = {"cli_pref_get": failure} if failure else {}
    return results, info


# -- memory (issue 4) -------------------------------------------------------------------

def run_memory(sizes: Sizes, runs: int) -> tuple[list[dict[str, float]], dict]:
    """Bulk-load one home with sizes.mem_entries memory entries and build its index (timed once), then
    `runs` runs of the primitives and the memory figures on it (tools/bench_memory.py); removed afterwards."""
    import bench_memory

    rng = random.Random(13)
    vocab = bench_memory.vocabulary(rng)
    limit = 300 + sizes.mem_entries / 250 + runs * (60 + sizes.mem_queries / 10)
    results = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-memory-") as tmp:
        faulthandler.dump_traceback_later(limit, exit=True)
        try:
            path = Path(tmp) / "home"
            ids, info = bench_memory.build(path, sizes.mem_entries, sizes.mem_batch, rng, vocab)
            results.append({"mem_put_bulk": rate(sizes.mem_entries, info["load_seconds"]),
                            "mem_index_build": rate(sizes.mem_entries, info["index_seconds"])})
            print(f"memory home: {sizes.mem_entries:,} entries loaded in {info['load_seconds']:.1f} s, "
                  f"indexed in {info['index_seconds']:.1f} s", file=sys.stderr, flush=True)
            info.update(load_average=[], put_sync_ms=[], lexical_warmup_ms=[], lexical_hits=[], cold=[], notes=[],
                        writer=[], synced={}, quiet_p99={})
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                start, workdir = time.perf_counter(), Path(tmp) / f"run{n}"
                out = bench_crypto(sizes)
                out["lmdb_put"], out["lmdb_put_p50"] = bench_lmdb_put(workdir / "lmdb", sizes.puts)
                out["lmdb_put_bulk"] = bench_lmdb_put_bulk(workdir / "lmdb-bulk", sizes.bulk_puts)
                shutil.rmtree(workdir)
                out.update(bench_memory.memory_run(path, ids, sizes, rng, vocab, percentile, info,
                                                   (start_writer, stop_writer)))
                results.append(out)
                print(f"memory run {n + 1}/{runs} done in {time.perf_counter() - start:.1f} s",
                      file=sys.stderr, flush=True)
            if bench_memory.evict(path):
                cold = bench_memory.run_cold(path, bench_memory.queries(rng, vocab, 1, (3, 3))[0])
                info["cold_disk"] = cold
                results.append({"mem_cold_disk": cold["open_ms"] + cold["search_ms"]})
            else:
                info["notes"].append("no posix_fadvise here: the cold start with the page cache evicted is left out")
        finally:
            faulthandler.cancel_dump_traceback_later()
    return results, info


def print_memory_notes(mem: dict, sizes: Sizes, runs: int) -> None:
    """What the memory figures measured, below the table."""
    import bench_memory

    med = statistics.median
    cold = mem["cold"]
    writer_rate = med([w["rate"] for w in mem["writer"]])
    print(f"\nmemory figures: one home of {mem['entries']:,} entries ({mem['store_mb']:,.0f} MB on disk), loaded "
          f"once through append_many and indexed by its first search ({mem['load_seconds']:.1f} s and "
          f"{mem['index_seconds']:.1f} s: one sample each), then {runs} run{'s' * (runs != 1)} with the primitives "
          f"beside them. Each run: {sizes.mem_puts} single puts (no embedding: the next search embeds them, "
          f"{med(mem['put_sync_ms']):.0f} ms); {sizes.mem_gets:,} gets of random ids, timed again in a second pass "
          f"(faster of 2: each get's faster time); {sizes.mem_queries} semantic queries of 2 to 5 words (the "
          f"query's embedding is part of each search) without and with type={bench_memory.FILTER_TYPE}, taking "
          f"turns query by query with embedding the query alone and the two scans of every vector by it (@: "
          f"numpy's matmul, BLAS on all cores; einsum: numpy's own loop, one thread), all while the paced writer "
          f"appends to the same home ({writer_rate:,.0f} events/s achieved, every "
          f"{bench_memory.WRITER_MEMORY_EVERY}th a memory entry the next search ranks in memory and a thread "
          f"indexes); {sizes.mem_lexical} lexical queries of 1 or 2 words ({med(mem['lexical_hits']):.1f} hits on "
          f"average; BM25's postings are stored with the index, the first lexical search took "
          f"{med(mem['lexical_warmup_ms']):,.0f} ms, untimed); cold start: a new process "
          f"opens the home and searches once, scanning the index's stored blocks in place, the files in the page "
          f"cache (importing "
          f"the store and memory modules {med([c['import_ms'] for c in cold]):.0f} ms before it, not counted; open "
          f"{med([c['open_ms'] for c in cold]):.0f} ms, first search {med([c['search_ms'] for c in cold]):,.0f} ms); "
          f"evicted: once after the runs, with the store's files dropped from the page cache (posix_fadvise) "
          f"first; RSS growth: anonymous memory after the first search less before the open. 1-minute load "
          f"average before each run: {', '.join(f'{x:.1f}' for x in mem['load_average'])} on {os.cpu_count()} cpus")
    for name, label in (("mem_search", "semantic searches"), ("mem_search_type", "type-filtered searches")):
        runs_of = mem["synced"].get(name, [])
        if runs_of:
            print(f"{label}: per run, {', '.join(f'{n} of {n + q}' for n, q in runs_of)} ranked writer's entries "
                  f"not yet indexed in memory (never waiting for the write lock); p99 of the others "
                  f"{', '.join(f'{x:.1f}' for x in mem['quiet_p99'][name])} ms")
    for note in mem["notes"]:
        print(f"note: {note}")




def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, help="runs per figure; the median is reported (default 5, 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="a small smoke run with fewer events")
    p.add_argument("--appends", type=int, help="single appends timed per run")
    p.add_argument("--events", type=int, help="events appended in batches, then verified, per run")
    p.add_argument("--batch", type=int, help="events per append_many call")
    p.add_argument("--pref-events", type=int, help="events in the preference store (default 100000)")
    p.add_argument("--lookups", type=int, help="preference lookups timed per run")
    p.add_argument("--pref-runs", type=int,
                   help=f"runs of the preference figures (default {PREF_RUNS}, 1 with --quick)")
    p.add_argument("--mem-entries", type=int, help="entries in the memory home (default 100000)")
    p.add_argument("--mem-runs", type=int, help=f"runs of the memory figures (default {MEM_RUNS}, 1 with --quick)")
    p.add_argument("--repl-runs", type=int,
                   help=f"runs of the replication figures (default {REPL_RUNS}, 1 with --quick)")
    for part in PARTS:
        p.add_argument(f"--{part}-runs", type=int, help=f"runs of the {part} figures (default 3, 1 with --quick)")
    p.add_argument("--only", choices=("core", "pref", "memory", "replication", *PARTS),
                   help="only the log figures, the preference, memory or replication ones, or one part's")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results.json", help="JSON results file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON results."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    sizes = replace(sizes, **{k: v for k in ("appends", "events", "batch", "pref_events", "lookups", "mem_entries")
                              if (v := getattr(args, k))})
    runs = args.runs or (2 if args.quick else 5)
    pref_runs = args.pref_runs or (1 if args.quick else PREF_RUNS)
    mem_runs = args.mem_runs or (1 if args.quick else MEM_RUNS)
    repl_runs = args.repl_runs or (1 if args.quick else REPL_RUNS)
    started = time.time()
    results, pref, mem, repl = [], {}, {}, {}
    if args.only in (None, "core"):
        results += run_all(sizes, runs)
    if args.only in (None, "pref"):
        pref_results, pref = run_pref(sizes, pref_runs)
        results += pref_results
    if args.only in (None, "memory"):
        mem_results, mem = run_memory(sizes, mem_runs)
        results += mem_results
    if args.only in (None, "replication"):
        repl_results, repl = bench_replication.run(sizes, repl_runs, args.quick)
        results += repl_results
    parts, skipped = {}, {}
    for name, module in PARTS.items():
        parts[name] = (getattr(args, f"{name}_runs") or (1 if args.quick else 3), {})
        if args.only in (None, name):
            try:
                part_results, info = module.run(sizes, parts[name][0], args.quick)
            except MISSING as exc:
                skipped[name] = str(exc)
                continue
            results += part_results
            parts[name] = (parts[name][0], info)
    labels = {"value_bytes": pref.get("value_bytes", 0), "entry_bytes": mem.get("entry_bytes", 0),
              **repl.get("labels", {})}
    for _, info in parts.values():
        labels.update(info.get("labels", {}))
    figures = summarize(results, sizes, FIGURES, RATIOS, TARGETS, SCALED, labels, pref.get("failures"), OF_PRIMITIVE)
    counts = {"core": runs, "preference": pref_runs, "memory": mem_runs, "replication": repl_runs,
              **{name: 0 if name in skipped else n for name, (n, _) in parts.items()}}
    done = ", ".join(f"{n} {part} run{'s' * (n != 1)}" for part, n in counts.items()
                     if args.only in (None, "pref" if part == "preference" else part))
    print(f"agentlog bench: {done}, python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"median of runs (min, max)\n")
    print_table(figures)
    if args.only in (None, "pref"):
        print(f"\npreference figures: {pref_runs} run{'s' * (pref_runs != 1)} on one store of "
              f"{pref['events']:,} events "
              f"({', '.join(f'{n:,} by the {d}' for d, n in pref['written'].items())}, over {HISTORY_DAYS} days); "
              f"writer on: while tools/bench_writer.py appends {sizes.writer_rate:,} events/s from another "
              f"process (LMDB gets too); faster of the 2: each lookup timed in both passes, the faster time kept, "
              f"so a stall that hits it only once (another process, the host) drops out; "
              f"processes: each of {sizes.processes} is one run; 1-minute load average "
              f"before each run: {', '.join(f'{x:.1f}' for x in pref['load_average'])} on {os.cpu_count()} cpus")
        for note in pref["notes"]:
            print(f"note: {note}")
    if args.only in (None, "memory"):
        print_memory_notes(mem, sizes, mem_runs)
    if args.only in (None, "replication"):
        bench_replication.print_notes(repl, figures, repl_runs)
    for name, module in PARTS.items():
        if name in skipped:
            print(f"\n{name} figures skipped: {skipped[name]}")
        elif args.only in (None, name):
            module.print_notes(parts[name][1], figures, parts[name][0])
    if args.only in (None, "core"):
        print(f"\nscaled: the throughput target times this machine's Ed25519 sign/s over the "
              f"{REFERENCE_SIGN_PER_S:,}/s of the machine the target was set on; for append_many, "
              f"{OF_PRIMITIVE['batched'][1]}x the Ed25519 sign/s measured in the same runs")
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "seconds": round(time.time() - started, 1), "python": sys.version, "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "lmdb": ".".join(map(str, lmdb.version())), "runs": runs,
               "pref_runs": pref_runs, "mem_runs": mem_runs, "sizes": asdict(sizes), "pref_store": pref,
               "memory_home": mem, "repl_runs": repl_runs, "replication": repl,
               **{f"{name}_runs": n for name, (n, _) in parts.items()},
               **{name: {k: v for k, v in info.items() if k != "labels"} for name, (n, info) in parts.items()},
               "figures": figures}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
