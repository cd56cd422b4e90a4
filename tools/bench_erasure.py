"""Erasure figures for `make bench` (issue 17): an erase request carried out on a home of 100,000 events,
from the request received to its bytes gone from the disk.

The laptop writes `events` events (observations over 200 settings, one in ten a memory entry of about
200 bytes, some updated), in append_many batches; the phone takes them all through the validated ingest.
The laptop then makes two requests: `memory.forget` of one entry (its put and updates) and
`prefs.forget(erase=True)` of one setting (every value-bearing event about it, about 1 in 200 events),
whose texts hold canary strings. Each run, on a copy of the phone's home: the phone ingests each request
(one `store.ingest` call: validation, carrying out, the views folded again, then the scrub, which ends with
the search of every file under the home), timed from the call to its return; of that, the scrub's own
time; then the canaries are searched for in every file under the home again (they must be gone, or the
bench fails). Beside them, in the same run: a durable LMDB put and BLAKE2b-256 of 200 B. Run alone:
`python tools/bench_erasure.py [--quick] [--runs N]`.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchlib

from agentlog.log import payloads
from agentlog.store import devices, home, scrub
from agentlog.store.store import Store

EVENTS, QUICK_EVENTS = 100_000, 10_000
BATCH = 5_000
SETTINGS = 200
ERASED_SETTING = "s007"
FIGURES = (
    ("blake2b", "BLAKE2b-256 of 200 B", "ops/s"),
    ("lmdb_put", "LMDB durable put txn", "txn/s"),
    ("lmdb_put_p50", "LMDB durable put txn p50", "ms"),
    ("era_memory", "memory forget received: carried out + scrubbed ({era_events} events)", "ms"),
    ("era_memory_scrub", "of which the scrub (fill, find, rewrite)", "ms"),
    ("era_setting", "pref forget --erase received ({era_setting_events} events erased)", "ms"),
    ("era_setting_scrub", "of which the scrub", "ms"),
    ("era_find", "find of the canaries in every file of the home", "ms"),
    ("era_pages", "free pages overwritten by the memory scrub", "pages"),
    ("era_store_mb", "data.mdb of the home", "MB"),
)
RATIOS = {"era_memory": ("lmdb_put_p50",), "era_setting": ("lmdb_put_p50",), "era_memory_scrub": ("lmdb_put_p50",),
          "era_setting_scrub": ("lmdb_put_p50",)}
TARGETS: dict = {}


def canary(rng: random.Random) -> str:
    return f"canary-{rng.getrandbits(96):024x}"


def history(rng: random.Random, n: int, entry_canary: str, setting_canary: str) -> list:
    """n payloads: observations over SETTINGS settings, one in ten a memory put; the erased setting's values
    and the first memory entry's content hold the canaries."""
    out = []
    for i in range(n):
        if i % 10 == 0:
            text = f"note 0: {entry_canary} " if i == 0 else f"note {i} "
            out.append(payloads.MemoryPut(entry=os.urandom(16), type="fact",
                                          content=(text + "about the build and the deploy steps " * 5)[:200],
                                          tags=("bench",)))
        else:
            setting = f"s{rng.randrange(SETTINGS):03d}"
            value = f"{setting_canary} {i}" if setting == ERASED_SETTING else f"value-{rng.randrange(17)}"
            out.append(payloads.Observation(setting=setting, value=value, context=(("project", "bench"),)))
    return out


def build(path: Path, events: int, rng: random.Random) -> dict:
    """Homes path/laptop (writer) and path/phone (holding everything); the requests' (record, payload)s."""
    started = time.perf_counter()
    entry_canary, setting_canary = canary(rng), canary(rng)
    laptop = home.create(path / "laptop", "laptop")
    phone = home.create(path / "phone", "phone")
    try:
        laptop.create_group("laptop")
        devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
        items = history(rng, events, entry_canary, setting_canary)
        for at in range(0, len(items), BATCH):
            laptop.append_many(items[at: at + BATCH])
        entry = items[0].entry
        laptop.memory.update(entry, content=f"updated note: {entry_canary} and more text about it")
        send(laptop, phone)
        held = phone.count()
        memory_request = laptop.memory.forget(entry, reason="bench")
        _, [setting_request] = laptop.prefs.forget(ERASED_SETTING, erase=True, reason="bench")
        requests = {e.id: (e.record, e.payload) for e in laptop.events_after(phone.frontier())}
        erased = sum(1 for i in items if getattr(i, "setting", None) == ERASED_SETTING)
    finally:
        laptop.close()
        phone.close()
    return {"seconds": time.perf_counter() - started, "events": held, "setting_events": erased,
            "canaries": [entry_canary.encode(), setting_canary.encode()], "requests": requests,
            "memory_request": memory_request, "setting_request": setting_request}


def send(src: Store, dst: Store) -> None:
    dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())], every_signature=False)


def receive(store: Store, built: dict, request: bytes) -> tuple[float, float]:
    """The phone ingests the events up to and including `request` it lacks; (ms to return, ms of the scrub)."""
    pending = [(eid, pair) for eid, pair in built["requests"].items() if store.get(eid) is None]
    batch = []
    for eid, pair in pending:
        batch.append(pair)
        if eid == request:
            break
    start = time.perf_counter()
    store.ingest(batch)
    elapsed = time.perf_counter() - start
    report = store.scrubber.last
    if report is None or report.pending:
        raise RuntimeError(f"the scrub did not finish: {report}")
    return elapsed * 1e3, report.seconds * 1e3


def erasure_run(built_dir: Path, work: Path, built: dict) -> dict[str, float]:
    """One run on a copy of the phone's home: both requests received, then the canaries searched for."""
    shutil.copytree(built_dir / "phone", work / "phone")
    out: dict[str, float] = {}
    store = home.open_home(work / "phone")
    try:
        out["era_store_mb"] = (work / "phone" / home.STORE_DIR / "data.mdb").stat().st_size / 1e6
        out["era_memory"], out["era_memory_scrub"] = receive(store, built, built["memory_request"])
        out["era_pages"] = store.scrubber.last.pages
        out["era_setting"], out["era_setting_scrub"] = receive(store, built, built["setting_request"])
        start = time.perf_counter()
        found = scrub.find(work / "phone", built["canaries"])
        out["era_find"] = (time.perf_counter() - start) * 1e3
        if found:
            raise RuntimeError(f"erased canaries still found under the home: {found[:5]}")
    finally:
        store.close()
    shutil.rmtree(work)
    return out


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build the homes once, then `runs` runs of the primitives and the erasure figures."""
    events = QUICK_EVENTS if quick else EVENTS
    rng = random.Random(17)
    results = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-erasure-") as tmp_name:
        tmp = Path(tmp_name)
        built = build(tmp / "built", events, rng)
        print(f"erasure home: {built['events']:,} events built in {built['seconds']:.1f} s", file=sys.stderr,
              flush=True)
        for n in range(runs):
            work = tmp / f"run{n}"
            out = {"blake2b": benchlib.bench_crypto(sizes)["blake2b"]}
            out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(work / "lmdb", sizes.puts)
            out.update(erasure_run(tmp / "built", work, built))
            results.append(out)
            print(f"erasure run {n + 1}/{runs} done", file=sys.stderr, flush=True)
    info = {"events": built["events"], "build_s": built["seconds"],
            "labels": {"era_events": f"{built['events']:,}", "era_setting_events": f"{built['setting_events']:,}"}}
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    print(f"\nerasure figures: {runs} run{'s' * (runs != 1)} on copies of one home of {info['events']:,} events "
          f"(built in {info['build_s']:.1f} s); a request received: one store.ingest call, from the call to its "
          f"return (validated, carried out, views folded again, the scrub with its search of every file under "
          f"the home come back empty); the canaries are searched for again afterwards and must be gone")


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, FIGURES, RATIOS, TARGETS, print_notes)


if __name__ == "__main__":
    sys.exit(main())
