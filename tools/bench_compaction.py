"""Compaction figures for `make bench` (issue 6): a million observations compacted, and a device bootstrapped.

Three devices (laptop, phone, hub; the phone's clock 95 s ahead, the hub's 30 s behind) write
`events` observations over 50 settings (four values, a day/night truth each, contexts from none to
daypart and device class) during six simulated weeks, in append_many batches of up to 5,000, and
meet twice a simulated day (each sends the laptop what it lacks, then takes what it lacks, through
the validated ingest), so each device's next batch acknowledges what it had seen and the evidence
behind it becomes causally stable. A fourth device, the tablet, joins on day 0 and is silent since:
past the 30-day horizon it is left out of stability and, as docs/compaction.md says of a returning
device, starts again from the snapshot exactly like a new one.

The laptop's home is built once. Each run, on a copy of it: the store's size (the data.mdb file, and
the pages its B-trees use: branch, leaf and overflow pages of every database, from txn.stat),
the snapshot (compaction.write_snapshot), a consistent copy of the store at that moment (untimed),
the truncation (compaction.truncate), the sizes again and of a compacting copy
(env.copy(compact=True)); the full replay: the copy taken before truncation, its base snapshot
dropped, every view folded again from the first event by rebuild_views; the bootstrap of the tablet
(a copy of its home): the laptop reads its base bundle, the tablet checks and installs it, ingests the
events after the snapshot's frontier, and answers its first lookup. The digests of the full replay,
the compacted laptop and the bootstrapped tablet must be equal. Run alone:
`python tools/bench_compaction.py [--quick] [--runs N]`.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.store import compaction, devices, home
from agentlog.store.layout import DBS
from agentlog.store.store import Store

EVENTS, QUICK_EVENTS = 1_000_000, 50_000
SETTINGS = 50
VALUES = ("a", "b", "c", "d")
DAYS = 42
BATCH = 5_000
DEVICES = (("laptop", 0.4, 0), ("phone", 0.35, 95_000), ("hub", 0.25, -30_000))
FIGURES = (
    ("cmp_size_before", "store of {cmp_events} observations: data.mdb", "MB"),
    ("cmp_used_before", "its B-tree pages in use", "MB"),
    ("cmp_snapshot", "compaction: write the snapshot", "ms"),
    ("cmp_truncate", "compaction: truncate, {cmp_chunk} events a txn", "events/s"),
    ("cmp_compact", "compaction, snapshot + truncation, whole log", "events/s"),
    ("cmp_size_after", "data.mdb after compaction (LMDB keeps its file)", "MB"),
    ("cmp_used_after", "B-tree pages in use after compaction", "MB"),
    ("cmp_copy_after", "compacting copy of it (env.copy compact=True)", "MB"),
    ("cmp_ratio", "compacting copy after / data.mdb before", "%"),
    ("cmp_replay", "full replay before truncation (rebuild_views)", "events/s"),
    ("cmp_replay_plain", "the same log before the snapshot event, replay", "events/s"),
    ("cmp_bundle", "bootstrap bundle: snapshot event + view states", "MB"),
    ("cmp_bootstrap", "new device: bundle, install, ingest rest, 1st get", "ms"),
    ("cmp_first_get", "its first prefs.get", "µs"),
    ("cmp_lmdb_get", "LMDB read txn + get on it, p50 of 1,000", "µs"),
    ("cmp_rss", "peak RSS of the bench process", "MB"),
)
RATIOS = {"cmp_compact": ("lmdb_put_bulk", "blake2b"), "cmp_truncate": ("lmdb_put_bulk",),
          "cmp_snapshot": ("lmdb_put_p50",), "cmp_replay": ("lmdb_put_bulk", "blake2b", "verify"),
          "cmp_replay_plain": ("lmdb_put_bulk", "blake2b", "verify"),
          "cmp_bootstrap": ("lmdb_put_p50",), "cmp_first_get": ("cmp_lmdb_get",)}
TARGETS = {"cmp_ratio": ("<=", 5.0), "cmp_bootstrap": ("<=", 2000.0)}


def observations(rng: random.Random, n: int, device: str, night: bool, truth: dict) -> list:
    """n observations: settings weighted towards the first, the daypart's true value three times in four."""
    daypart = "night" if night else "day"
    contexts = ((), (("daypart", daypart),), (("daypart", daypart), ("device_class", device)))
    weights = [1 / (i + 1) ** 0.8 for i in range(SETTINGS)]
    out = []
    for i in rng.choices(range(SETTINGS), weights, k=n):
        value = truth[i][night] if rng.random() < 0.75 else rng.choice(VALUES)
        out.append(payloads.Observation(setting=f"s{i:02d}", value=value, context=rng.choice(contexts),
                                        weight_milli=rng.choice((1000, 1000, 2000))))
    return out


def send(src: Store, dst: Store) -> None:
    """What dst lacks from src through the validated ingest (the last signature of each author's run
    checked, the hash links prove the rest: what a replicated batch does)."""
    dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())], every_signature=False)


def build(path: Path, events: int, seed: int = 31) -> dict:
    """DEVICES write `events` observations over DAYS simulated days; homes path/laptop and path/tablet."""
    rng = random.Random(seed)
    started = time.perf_counter()
    clock = benchlib.SimClock(time.time_ns() // 1_000_000 - DAYS * benchlib.DAY_MS)
    stores = {name: benchlib.open_device(path / name, name, clock.of(skew)) for name, _, skew in DEVICES}
    tablet = benchlib.open_device(path / "tablet", "tablet", clock.of(0))
    truth = [(rng.choice(VALUES), rng.choice(VALUES)) for _ in range(SETTINGS)]
    written = {name: 0 for name in stores}
    try:
        laptop, others = stores["laptop"], [stores[name] for name, _, _ in DEVICES[1:]]
        laptop.create_group("laptop")
        for store in [*others, tablet]:
            devices.join(store, devices.enroll(laptop, store.device, store.name))
            send(laptop, store)
        rounds = DAYS * 2
        for r in range(rounds):
            round_start = clock.now
            for name, share, _ in DEVICES:
                n = round(events * share * (r + 1) / rounds) - written[name]
                for done in range(0, n, BATCH):
                    hour = clock.now // 3_600_000 % 24
                    night = hour < 7 or hour >= 19
                    stores[name].append_many(observations(rng, min(BATCH, n - done), name, night, truth))
                    clock.now += rng.randrange(5, 20) * 60_000
                written[name] += n
            for store in others:
                send(store, laptop)
            for store in others:
                send(laptop, store)
            clock.now = round_start + benchlib.DAY_MS // 2
        count = laptop.count()
    finally:
        tablet.close()
        for store in stores.values():
            store.close()
    return {"events": count, "written": written, "seconds": time.perf_counter() - started, "now_ms": clock.now}


def used_by_db(store: Store) -> dict[str, float]:
    """Database name -> the MB its B-tree's branch, leaf and overflow pages take ("" the main one naming them)."""
    with store.raw_txn() as txn:
        stats = {name: txn.stat(store.db(name)) for name in DBS}
    stats[""] = store.env.stat()
    return {n: (s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s["psize"] / 1e6 for n, s in stats.items()}


def used_mb(store: Store) -> float:
    """What `agentlog serve --compact-mb` compares: the pages every named database uses (compaction.used_bytes)."""
    return compaction.used_bytes(store) / 1e6


def file_mb(store_dir: Path) -> float:
    return (store_dir / "data.mdb").stat().st_size / 1e6


def digests(store: Store) -> dict[str, bytes]:
    return {name: view["digest"] for name, view in store.views().items()}


def open_store(home_dir: Path, now_ms: int) -> Store:
    """A home's store with its key and the simulated clock stopped at the end of the history."""
    _, seed = home.read_key(home_dir)
    return Store(home_dir / home.STORE_DIR, DeviceKey(seed), clock=lambda: now_ms)


def compaction_run(built: Path, work: Path, now_ms: int, info: dict) -> dict[str, float]:
    """One run on copies of the built homes: sizes, compaction, full replay, bootstrap; digests compared."""
    shutil.copytree(built / "laptop", work / "laptop")
    shutil.copytree(built / "tablet", work / "tablet")
    store_dir = work / "laptop" / home.STORE_DIR
    out: dict[str, float] = {}
    laptop = open_store(work / "laptop", now_ms)
    try:
        events = laptop.count()
        out["cmp_size_before"], out["cmp_used_before"] = file_mb(store_dir), used_mb(laptop)
        start = time.perf_counter()
        out["cmp_replay_plain"] = laptop.rebuild_views() / (time.perf_counter() - start)
        start = time.perf_counter()
        sid, stable, silent = compaction.write_snapshot(laptop, now_ms=now_ms)
        snapshot_s = time.perf_counter() - start
        (work / "before-truncation").mkdir()
        laptop.env.copy(str(work / "before-truncation"))
        start = time.perf_counter()
        dropped = compaction.truncate(laptop)
        truncate_s = time.perf_counter() - start
        out["cmp_snapshot"] = snapshot_s * 1000
        out["cmp_truncate"] = dropped / truncate_s
        out["cmp_compact"] = events / (snapshot_s + truncate_s)
        compacted = digests(laptop)
        out["cmp_size_after"], out["cmp_used_after"] = file_mb(store_dir), used_mb(laptop)
        info["largest_after"] = sorted(used_by_db(laptop).items(), key=lambda x: -x[1])[:5]
        (work / "compact-copy").mkdir()
        laptop.env.copy(str(work / "compact-copy"), compact=True)
        out["cmp_copy_after"] = file_mb(work / "compact-copy")
        out["cmp_ratio"] = 100 * out["cmp_copy_after"] / out["cmp_size_before"]
        info["runs"].append({"events": events, "dropped": dropped, "kept": laptop.count(), "silent": len(silent),
                             "snapshot_s": snapshot_s, "truncate_s": truncate_s, "snapshot": sid is not None})

        before = Store(work / "before-truncation", None)
        try:
            before.write(lambda txn: (txn.delete(b"base", db=before.db("meta")),   # no base: every view
                                       txn.drop(before.db("snapshots"), delete=False)))  # folds from the first event
            start = time.perf_counter()
            replayed = before.rebuild_views()
            out["cmp_replay"] = replayed / (time.perf_counter() - start)
            full = digests(before)
        finally:
            before.close()
        shutil.rmtree(work / "before-truncation")

        tablet = open_store(work / "tablet", now_ms)
        try:
            setting, context = "s00", {"daypart": "night", "device_class": "phone"}
            start = time.perf_counter()
            bundle = compaction.base_bundle(laptop)
            read = time.perf_counter()
            compaction.bootstrap(tablet, bundle)
            installed = time.perf_counter()
            rest = laptop.events_after(tablet.frontier())
            tablet.ingest([(e.record, e.payload) for e in rest], every_signature=False)
            got = time.perf_counter()
            answer = tablet.prefs.get(setting, context).answer
            done = time.perf_counter()
            info["runs"][-1].update(bundle_s=read - start, install_s=installed - read, ingest_s=got - installed,
                                    rest=len(rest))
            out["cmp_bootstrap"], out["cmp_first_get"] = (done - start) * 1000, (done - got) * 1e6
            out["cmp_bundle"] = (len(bundle.record) + len(bundle.payload) + sum(map(len, bundle.states.values()))) / 1e6
            key = setting.encode()
            gets = []
            for _ in range(1000):
                began = time.perf_counter_ns()
                with tablet.raw_txn() as txn:
                    txn.get(key, db=tablet.db("views.pref"))
                gets.append(time.perf_counter_ns() - began)
            out["cmp_lmdb_get"] = statistics.median(gets) / 1000
            booted = digests(tablet)
            expected = laptop.prefs.get(setting, context).answer
        finally:
            tablet.close()
    finally:
        laptop.close()
    info["digests"].append({"equal": full == compacted == booted, "answers_equal": answer == expected,
                            "differ": sorted(n for n in full if not full[n] == compacted[n] == booted[n])})
    out["cmp_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build the homes once, then `runs` runs of the primitives and the compaction figures on copies."""
    events = QUICK_EVENTS if quick else EVENTS
    info = {"labels": {"cmp_events": f"{events:,}", "cmp_chunk": f"{compaction.CHUNK:,}"}, "load_average": [],
            "runs": [], "digests": []}
    results = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-compaction-") as tmp_name:
        tmp = Path(tmp_name)
        info.update(build(tmp / "built", events))
        info["build_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"compaction home: {info['events']:,} events by {len(DEVICES)} devices built in "
              f"{info['seconds']:.1f} s", file=sys.stderr, flush=True)
        for n in range(runs):
            info["load_average"].append(os.getloadavg()[0])
            began, work = time.perf_counter(), tmp / f"run{n}"
            work.mkdir()
            out = benchlib.bench_crypto(sizes)
            out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(work / "lmdb", sizes.puts)
            out["lmdb_put_bulk"] = benchlib.bench_lmdb_put_bulk(work / "lmdb-bulk", sizes.bulk_puts)
            out.update(compaction_run(tmp / "built", work, info["now_ms"], info))
            shutil.rmtree(work)
            results.append(out)
            print(f"compaction run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                  file=sys.stderr, flush=True)
    return results, info


def digest_line(info: dict) -> str:
    """PASS when in every run the full replay before truncation, the compacted store and the bootstrapped
    device hold the same digests of every view (and the two devices give the same first answer)."""
    ok = all(d["equal"] and d["answers_equal"] for d in info["digests"])
    differ = sorted({n for d in info["digests"] for n in d["differ"]})
    return (f"compaction digests: {'PASS' if ok else 'FAIL'}: full replay before truncation == compacted == "
            f"bootstrapped for roster, pref and memory in {sum(d['equal'] for d in info['digests'])} of "
            f"{len(info['digests'])} runs" + (f"; differing views: {', '.join(differ)}" if differ else ""))


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the compaction figures measured, below the table."""
    med = statistics.median
    r = info["runs"]
    written = ", ".join(f"{n:,} by the {d}" for d, n in info["written"].items())
    print(
        f"\ncompaction figures: {runs} run{'s' * (runs != 1)}, each on a copy of one laptop home of "
        f"{info['events']:,} events ({written}; {SETTINGS} settings; {DAYS} simulated days, the devices meeting "
        f"twice a day; built once in {info['seconds']:.0f} s, peak RSS {info['build_rss_mb']:,.0f} MB by then). "
        f"Compaction dropped {med([x['dropped'] for x in r]):,.0f} events and kept {med([x['kept'] for x in r]):,.0f} "
        f"(the last meeting's are not yet acknowledged; {med([x['silent'] for x in r]):.0f} silent device left out): "
        f"snapshot {med([x['snapshot_s'] for x in r]):.2f} s, truncation {med([x['truncate_s'] for x in r]):.1f} s. "
        f"Sizes: data.mdb is the file a user sees (LMDB never shrinks it: the freed pages are reused by later "
        f"writes); pages in use: branch, leaf and overflow pages of every database (txn.stat; compaction.used_bytes, "
        f"what serve's --compact-mb compares); the compacting "
        f"copy (env.copy compact=True, what a backup or a `cp` of a copy gives) is the size the data now needs, "
        f"and the 5 % bar is checked on it. Bootstrap: the tablet (joined on day 0, silent since, so past the "
        f"horizon) takes the laptop's base bundle in process (no network, no chunking), checks and installs it, "
        f"ingests the {med([x['rest'] for x in r]):,.0f} event(s) after its frontier as the replicator does (one "
        f"signature per author's run, hash links for the rest) and answers prefs.get: read the bundle "
        f"{med([x['bundle_s'] for x in r]):.2f} s, check and install {med([x['install_s'] for x in r]):.2f} s, "
        f"ingest {med([x['ingest_s'] for x in r]):.2f} s. Full replay: rebuild_views of the copy taken between "
        f"the snapshot and the truncation, its base dropped (the batch rebuild, whose summary step for the "
        f"snapshot event covers the whole log); the same log before the snapshot event: rebuild_views of "
        f"the run's copy before compaction. Largest databases after compaction (MB in use): "
        f"{', '.join(f'{n} {mb:,.1f}' for n, mb in info['largest_after'])}. 1-minute load average before each run: "
        f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus"
    )
    print(digest_line(info))


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, (*benchlib.PRIMITIVE_FIGURES, *FIGURES), RATIOS, TARGETS,
                              print_notes, quick_runs=3)


if __name__ == "__main__":
    sys.exit(main())
