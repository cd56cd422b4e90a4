"""Replay figures for `make bench` (issue 7): `agentlog replay` on a laptop's home of 100,000 events.

Three devices (laptop, phone, hub; the phone's clock 95 s ahead) write six weeks of preference
events over 50 settings (observations, decisions, corrections, statements, overrides; tools/benchlib.py
History) and memory puts and updates, syncing with the laptop twice a day through ingest with the
peer as `source`, so the laptop's replication ledger says when each event arrived. Each run times,
on that home opened read-only, a full replay (read the log, fold every view in a scratch LMDB,
digests), a replay --until half way, and --setting of the busiest setting.
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

import benchlib

from agentlog.log import payloads
from agentlog.replay.history import setting_history
from agentlog.store import devices, home
from agentlog.store.scratch import LiveLog, Point, replay

DEVICES = (("laptop", 0.5, 0), ("phone", 0.3, 95_000), ("hub", 0.2, -30_000))
SETTINGS = 50
MEMORY_SHARE = 0.03
"""Of each batch: memory puts (two thirds) and updates of the device's own entries (one third)."""


def sync(src, dst) -> None:
    """What the replicator does: send what dst lacks, ingested with src as the ledger's source."""
    dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())], source=src.device)


def memory_items(rng: random.Random, n: int, own: list[bytes]) -> list:
    out = []
    for _ in range(n):
        if own and rng.random() < 1 / 3:
            out.append(payloads.MemoryUpdate(entry=rng.choice(own), fields=(payloads.MemoryField(
                content=f"note {rng.randrange(10**6)} revised"),)))
        else:
            entry = os.urandom(16)
            own.append(entry)
            out.append(payloads.MemoryPut(entry=entry, type="fact", content=f"note {rng.randrange(10**6)}",
                                          tags=(rng.choice(("home", "work", "travel")),)))
    return out


def build(path: Path, events: int, seed: int = 23) -> dict:
    """DEVICES write `events` events over benchlib.HISTORY_DAYS simulated days; the laptop's home is path/laptop."""
    rng = random.Random(seed)
    started = time.perf_counter()
    clock = benchlib.SimClock(time.time_ns() // 1_000_000 - benchlib.HISTORY_DAYS * benchlib.DAY_MS)
    stores = {name: benchlib.open_device(path / name, name, clock.of(skew)) for name, _, skew in DEVICES}
    try:
        laptop, others = stores["laptop"], [stores[name] for name, _, _ in DEVICES[1:]]
        laptop.create_group("laptop")
        for store in others:
            devices.join(store, devices.enroll(laptop, store.device, store.name))
            sync(laptop, store)
        history = benchlib.History(rng, SETTINGS)
        laptop.append_many(history.config())
        own: dict[str, list[bytes]] = {name: [] for name in stores}
        rounds = benchlib.HISTORY_DAYS * 2
        written = {name: 0 for name in stores}
        for r in range(rounds):
            round_start, fresh = clock.now, []
            for name, share, _ in DEVICES:
                n = round(events * share * (r + 1) / rounds) - written[name]
                mem = round(n * MEMORY_SHARE)
                hour = clock.now // 3_600_000 % 24
                items, decided = history.batch(n - mem, name, hour < 7 or hour >= 19)
                ids = stores[name].append_many(items + memory_items(rng, mem, own[name]))
                fresh.extend((ids[i], items[i].value) for i in decided)
                written[name] += n
                clock.now += rng.randrange(10, 40) * 60_000
            benchlib.end_round(laptop, others, history, fresh, sync)
            clock.now = round_start + benchlib.DAY_MS // 2
        count = laptop.count()
    finally:
        for store in stores.values():
            store.close()
    return {"events": count, "written": written, "seconds": time.perf_counter() - started}


def busiest_setting(log) -> str:
    counts: dict[str, int] = {}
    for f in log.events:
        name = getattr(f.payload, "setting", None)
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return max(sorted(counts), key=counts.__getitem__)


def replay_run(store_path: Path, info: dict) -> dict[str, float]:
    """One timing of each replay, each from opening the home read-only to its answer; beside each rate by the
    clock, its rate by this process's CPU time (in info["cpu"]), steadier on a shared machine."""
    out = {}
    with LiveLog(store_path) as live:
        log = live.read()
        middle = log.arrival[log.order[len(log.order) // 2]]
        setting = busiest_setting(log)

    def timed(name: str, fn) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        count = fn()
        out[name] = count / (time.perf_counter() - start)
        info.setdefault("cpu", {}).setdefault(name, []).append(count / (time.process_time() - cpu))

    def full() -> int:
        with LiveLog(store_path) as live:
            done, _ = replay(live, Point(), live.read())
        info["full_events"] = done.events
        return done.events

    def half() -> int:
        with LiveLog(store_path) as live:
            log = live.read()
            info["half_events"] = replay(live, Point(until=middle), log)[0].events
        return len(log.events)

    def history() -> int:
        with LiveLog(store_path) as live:
            log = live.read()
            steps = setting_history(log, Point(), setting, live.device)
        info["setting"], info["setting_steps"] = setting, len(steps)
        info["setting_changes"] = sum(s.changed for s in steps)
        return len(log.events)

    timed("replay_full", full)
    timed("replay_half", half)
    timed("replay_setting", history)
    return out


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build the laptop's home once, then `runs` runs of the primitives and the replay figures."""
    events = 10_000 if quick else 100_000
    results, info = [], {"load_average": [], "labels": {"replay_events": f"{events:,}"}}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        faulthandler.dump_traceback_later(300 + events / 500 + runs * 120, exit=True)
        try:
            info.update(build(tmp, events))
            print(f"replay home: {info['events']:,} events by {len(DEVICES)} devices built in "
                  f"{info['seconds']:.1f} s", file=sys.stderr, flush=True)
            store_path = tmp / "laptop" / home.STORE_DIR
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                began, workdir = time.perf_counter(), tmp / f"run{n}"
                out = benchlib.bench_crypto(sizes)
                out["lmdb_put_bulk"] = benchlib.bench_lmdb_put_bulk(workdir / "lmdb-bulk", sizes.bulk_puts)
                shutil.rmtree(workdir)
                out.update(replay_run(store_path, info))
                results.append(out)
                print(f"replay run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            faulthandler.cancel_dump_traceback_later()
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the replay figures measured, below the table."""
    written = ", ".join(f"{n:,} by the {d}" for d, n in info["written"].items())
    print(
        f"\nreplay figures: {runs} run{'s' * (runs != 1)} on one laptop home of {info['events']:,} events "
        f"({written}; {SETTINGS} settings, {MEMORY_SHARE:.0%} memory puts and updates; synced twice a "
        f"simulated day through ingest with the ledger's source), the primitives measured in each run. Each "
        f"figure is timed from opening the home read-only to the answer: reading and decoding the whole log "
        f"and its ledger, arrivals and the held order, folding in a scratch LMDB (removed after), digests. "
        f"full: every event; half way: --until the arrival of the middle event of the held order "
        f"({info['half_events']:,} events folded, all {info['events']:,} read and ordered; the rate counts every event "
        f"of the log, as --setting does); "
        f"--setting {info['setting']} (the busiest: {info['setting_steps']:,} events touch it, "
        f"{info['setting_changes']:,} change its value or source; the rate counts every event of the log). "
        f"By CPU time (this process's, steadier than the clock on a shared machine), medians: "
        + ", ".join(f"{name.removeprefix('replay_')} {statistics.median(rates):,.0f} events/s"
                    for name, rates in info["cpu"].items()) + ". "
        f"1-minute load average before each run: {', '.join(f'{x:.1f}' for x in info['load_average'])} "
        f"on {os.cpu_count()} cpus; median {statistics.median(info['load_average']):.1f}"
    )
