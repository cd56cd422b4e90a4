"""Crash safety of compaction: a compacting process is kill -9'd at random points, 20 times.

One laptop store (three devices' observations, decisions and memory puts over 36 simulated days,
synced daily) is compacted once in this process with a small CHUNK, recording the store after every
write transaction: the states a compaction may pass through (0: before; 1: the snapshot written;
then one per truncation step). Each round copies the uncompacted store, runs
tests/helpers/compaction_worker.py on the copy and SIGKILLs it at a seeded point: inside a chosen write
transaction before it commits, right after one commits, or a random few ms after one begins. Then:

- the store's log is one of the recorded states: the one after the last transaction the worker
  reported committed, or the next one (the transaction in flight committed before the kill), never a
  third (events counted, truncation points, base snapshot);
- the views' digests are that state's: the digests before compaction in state 0, the digests with
  the snapshot event folded in every later state (truncation never changes a view);
- `verify_store` passes, and each author's retained chain starts right after its truncation point;
- a refold of what the crashed store holds gives the same digests;
- compaction re-run to completion ends in the same log and digests as the run that never crashed.

Once, on the reference: the compacted digests equal a full replay of the log taken before
truncation (snapshot written, base dropped, every view folded from the first event), and a device
that returns after the horizon bootstraps from the snapshot to the same digests.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentlog import crypto
from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.store import compaction, devices
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.family import DAY, HOUR, Family
from tests.helpers.paths import HELPERS, REPO
from tests.helpers.processes import pump

ROUNDS = 20
DAYS = 36                  # past the 30-day horizon, so the tablet enrolled on day 0 is silent
PER_DAY = 30               # events per device per day: about 3,300 in all
CHUNK = 100                # events per truncation step: about 30 steps
PAUSE_MS = 5.0             # the worker's sleep inside each write transaction, before it commits
WORKER = HELPERS / "compaction_worker.py"
LINE_TIMEOUT = 30.0


def _history(tmp: Path) -> tuple[Path, bytes, int, Store]:
    """The laptop's closed store, its key seed and the compaction's clock; and the tablet, enrolled on day
    0 and silent since (open; it bootstraps later)."""
    f = Family(tmp)
    hub = f.hub()
    tablet = f._device("tablet", 0)
    devices.join(tablet, devices.enroll(f.laptop, tablet.device, "tablet"))
    f.sync(f.laptop, tablet)
    rng = random.Random(6)
    stores = (f.laptop, f.phone, hub)
    for day in range(DAYS):
        for store in stores:
            items = []
            for i in range(PER_DAY):
                setting, night = f"s{rng.randrange(8)}", rng.random() < 0.4
                context = (("daypart", "night" if night else "day"),) if rng.random() < 0.7 else ()
                value = rng.choice("aab" if night else "bbc")
                if i % 10 == 9:
                    items.append(payloads.Decision(setting=setting, value=value, context=context, confidence_bp=6000))
                elif i % 15 == 14:
                    note = f"day {day} note {i}"
                    items.append(payloads.MemoryPut(entry=rng.randbytes(16), type="fact", content=note))
                else:
                    items.append(payloads.Observation(setting=setting, value=value, context=context))
            store.append_many(items)
            f.later(3 * HOUR)
        f.meet()
        f.later(DAY - 9 * HOUR)
    for store in stores:                # each device acknowledges the last meeting by writing once more
        store.append(payloads.Observation(setting="s0", value="b"))
    f.meet()
    path, seed, now = f.laptop.path, f.laptop.key.seed, f.now
    f.close()
    return path, seed, now, tablet


def _state(store: Store) -> tuple:
    """What a compaction changes in the log: events held, truncation points, the base snapshot."""
    return store.count(), tuple(sorted(store.truncated().items())), store.meta("base")


def _digests(store: Store) -> dict[str, bytes]:
    return {name: view["digest"] for name, view in store.views().items()}


def _chain_problems(store: Store) -> list[str]:
    """Each author's retained events: dense seqs linked by prev, starting right after its truncation
    point (or at seq 1 with a zero prev); an author with nothing retained has its head at the point."""
    cuts, heads, problems = store.truncated(), store.heads(), []
    last: dict[bytes, tuple[int, bytes]] = {a: (c.seq, c.id) for a, c in cuts.items()}
    for event in store.events():
        h = event.header
        seq, prev = last.get(h.author, (0, crypto.ZERO_ID))
        if (h.seq, h.prev) != (seq + 1, prev):
            problems.append(f"{h.author.hex()[:8]} seq {h.seq}: expected seq {seq + 1} linking to {prev.hex()[:8]}")
        last[h.author] = (h.seq, event.id)
    for author, head in heads.items():
        if last.get(author) != (head.seq, head.id):
            ends = last.get(author, (0,))[0]
            problems.append(f"{author.hex()[:8]}: head seq {head.seq} but the chain ends at {ends}")
    return problems


def _check_store(store: Store, where: str) -> None:
    report = verify_store(store, jobs=1)
    assert report.ok, f"{where}: verify found problems:\n" + "\n".join(p.line(store.roster()) for p in report.problems)
    problems = _chain_problems(store)
    assert not problems, f"{where}: chains broken:\n" + "\n".join(problems)


def _reference(path: Path, seed: bytes, now: int, work: Path, monkeypatch) -> tuple[list, list, Path]:
    """Compact a copy without crashing; the state and digests after each write transaction (index 0 is
    before any), and a copy of the store taken right after the snapshot's transaction."""
    shutil.copytree(path, work / "reference")
    store = Store(work / "reference", DeviceKey(seed), clock=lambda: now)
    states, digests, write = [_state(store)], [_digests(store)], store.write
    before_truncation = work / "before-truncation"

    def recorded(fn):
        result = write(fn)
        states.append(_state(store))
        digests.append(_digests(store))
        if len(states) == 2:
            before_truncation.mkdir()
            store.env.copy(str(before_truncation))
        return result
    monkeypatch.setattr(compaction, "CHUNK", CHUNK)
    store.write = recorded
    try:
        report = compaction.compact(store, now_ms=now)
        assert report.snapshot is not None and report.dropped > 20 * CHUNK, f"too little to truncate: {report}"
        assert not report.silent or len(report.silent) == 1
        _check_store(store, "reference")
    finally:
        store.close()
    return states, digests, before_truncation


def _full_replay(path: Path, seed: bytes, now: int) -> dict[str, bytes]:
    """Every view folded from the first event of the log holding the snapshot event, without the base."""
    store = Store(path, DeviceKey(seed), clock=lambda: now)
    try:
        store.write(lambda txn: (txn.delete(b"base", db=store.db("meta")),      # write grows a full map
                                  txn.drop(store.db("snapshots"), delete=False)))
        assert not store.truncated(), "the copy before truncation has truncation points"
        store.rebuild_views()
        return _digests(store)
    finally:
        store.close()


def _run_and_kill(path: Path, seed: bytes, now: int, target: int, mode: str, delay: float,
                  stderr_path: Path) -> list[str]:
    """Run the worker on `path`; SIGKILL it at the point (target transaction, mode) names. Returns its lines."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    trigger = {"inside": f"inside {target}", "done": f"done {target}", "timed": f"begin {target}"}[mode]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(path), seed.hex(), str(now), str(CHUNK), str(PAUSE_MS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=REPO,
        )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    out: list[str] = []
    try:
        while True:
            line = lines.get(timeout=LINE_TIMEOUT)
            assert line is not None, f"worker ended before {trigger!r}:\n{stderr_path.read_text()}"
            out.append(line)
            if line.strip() == trigger:
                break
        if delay:
            time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL, f"worker exited by itself:\n{stderr_path.read_text()}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stdin.close()
    while (line := lines.get_nowait()) is not None:
        out.append(line)
    return out


def test_kill_9_during_compaction_leaves_a_state_before_or_after_each_step(tmp_path, monkeypatch):
    started = time.monotonic()
    (tmp_path / "history").mkdir()
    path, seed, now, tablet = _history(tmp_path / "history")
    states, digests, before_truncation = _reference(path, seed, now, tmp_path, monkeypatch)
    txns = len(states) - 1
    assert digests[0] != digests[1], "the snapshot folded no day summary: nothing distinguishes state 0 from 1"
    assert all(d == digests[1] for d in digests[1:]), "a truncation step changed a view"

    # The bars: a full replay taken before truncation and a bootstrapped device give the compacted digests.
    assert _full_replay(before_truncation, seed, now) == digests[-1], "full replay before truncation differs"
    reference = Store(tmp_path / "reference", DeviceKey(seed), clock=lambda: now)
    try:
        compaction.bootstrap(tablet, compaction.base_bundle(reference))
        tablet.ingest([(e.record, e.payload) for e in reference.events_after(tablet.frontier())])
        assert _digests(tablet) == digests[-1], "the bootstrapped tablet's views differ"
        assert (
            tablet.prefs.get("s1", {"daypart": "night"}).answer
            == reference.prefs.get("s1", {"daypart": "night"}).answer
        )
    finally:
        reference.close()
        tablet.close()

    rng = random.Random(20261121)
    modes = ("inside", "done", "timed")
    seen_states = set()
    # The snapshot's transaction in each mode; inside the first truncation step (the snapshot committed,
    # nothing dropped yet); then distinct later steps, the modes in turn.
    plan = [(0, mode) for mode in modes] + [(1, "inside")]
    plan += [(t, modes[i % 3]) for i, t in enumerate(rng.sample(range(2, txns), ROUNDS - len(plan)))]
    rng.shuffle(plan)
    for round_no, (target, mode) in enumerate(plan):
        delay = 0.0
        if mode == "timed":
            delay = rng.uniform(0, 1.5 * PAUSE_MS / 1000)
        copy = tmp_path / f"round{round_no}"
        shutil.copytree(path, copy)
        lines = _run_and_kill(copy, seed, now, target, mode, delay, tmp_path / f"worker-{round_no}.err")
        done = [int(line.split()[1]) for line in lines if line.startswith("done ")]
        begun = [int(line.split()[1]) for line in lines if line.startswith("begin ")]
        assert done == list(range(len(done))), f"round {round_no}: transactions reported out of order: {lines}"
        allowed = {len(done)} | ({len(done) + 1} if len(begun) > len(done) else set())
        where = (f"round {round_no} (killed {mode} transaction {target} of {txns}, +{delay * 1000:.1f} ms; "
                 f"{len(done)} reported committed)")

        store = Store(copy, DeviceKey(seed), clock=lambda: now)
        try:
            state = _state(store)
            assert state in states, f"{where}: the log is in a state no uninterrupted compaction passes through"
            # A step that finds nothing left of its author commits no change, so states can repeat.
            matching = {i for i, s in enumerate(states) if s == state}
            assert matching & allowed, f"{where}: the log is at state {sorted(matching)}, expected {sorted(allowed)}"
            at = min(matching & allowed)
            seen_states.add(at)
            assert _digests(store) == digests[at], f"{where}: views at state {at} differ from the uncrashed run's"
            _check_store(store, where)
            store.rebuild_views()
            assert _digests(store) == digests[at], f"{where}: a refold after the crash gives other digests"

            report = compaction.compact(store, now_ms=now)
            assert (report.snapshot is None) == (at > 0), f"{where}: the re-run wrote a snapshot again: {report}"
            assert _state(store) == states[-1], f"{where}: the re-run ends in another log than the uncrashed run"
            assert _digests(store) == digests[-1], f"{where}: the re-run ends with other digests"
            _check_store(store, f"{where}, re-run")
        finally:
            store.close()
        shutil.rmtree(copy)

    assert {0, 1} <= seen_states and len(seen_states) >= 10, f"kills landed in too few states: {sorted(seen_states)}"
    print(f"{ROUNDS} kills over {txns} write transactions, {states[0][0]:,} events, {states[-1][0]:,} kept; "
          f"states found after a kill: {sorted(seen_states)}; {time.monotonic() - started:.1f} s")
