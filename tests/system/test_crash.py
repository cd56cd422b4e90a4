"""Crash safety: a writer process appending in a loop is kill -9'd at random moments.

After each kill the store must verify, hold no half-written event (the chain is
dense and every event has its payload), keep every append the writer had seen
committed, and hold either all or none of the batch the writer was inside.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.verify import verify_store
from tests.helpers.paths import HELPERS, REPO
from tests.helpers.processes import pump

ROUNDS = 20
WRITER = HELPERS / "crash_writer.py"
READY_TIMEOUT = 30.0


def _pump(stream, lines: queue.Queue) -> None:
    """Move the child's stdout lines into a queue until EOF, so the pipe never fills."""
    try:
        for raw in stream:
            lines.put(raw.decode())
    finally:
        lines.put(None)


def _run_and_kill(home_path: Path, seed: int, delay: float, stderr_path: Path) -> list[str]:
    """Start the writer, let it append for `delay` seconds after it is ready, SIGKILL it.

    Returns every complete line it printed.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(WRITER), str(home_path), str(seed)],
                                stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    out: list[str] = []
    try:
        first = lines.get(timeout=READY_TIMEOUT)
        assert first is not None and first.startswith("ready "), \
            f"writer did not start: {first!r}\n{stderr_path.read_text()}"
        out.append(first)
        time.sleep(delay)
        assert proc.poll() is None, f"writer exited by itself ({proc.returncode}):\n{stderr_path.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
    while (line := lines.get_nowait()) is not None:
        out.append(line)
    return out


def _parse(lines: list[str]) -> tuple[int, list[tuple[int, list[bytes]]], int | None]:
    """(head seq at start, committed calls as (head seq after, ids), size of the call cut short or None)."""
    assert lines and all(line.endswith("\n") for line in lines), f"half a line in the writer's output: {lines[-1:]!r}"
    start = int(lines[0].split()[1])
    done: list[tuple[int, list[bytes]]] = []
    pending = None
    for line in lines[1:]:
        word, *rest = line.split()
        if word == "begin":
            assert pending is None, "two begins without a done"
            pending = int(rest[0])
        else:
            assert word == "done" and pending == len(rest) - 1, f"bad line {line!r} after begin {pending}"
            done.append((int(rest[0]), [bytes.fromhex(h) for h in rest[1:]]))
            pending = None
    return start, done, pending


def test_kill_9_writer_leaves_a_verifiable_store(tmp_path):
    home_path = tmp_path / "home"
    store = home.create(home_path, "writer")
    try:
        store.create_group("writer")
        me = store.device
        count = store.count()
    finally:
        store.close()
    assert count == 1

    rng = random.Random(20240917)
    cut_short = landed = committed = 0
    for round_no in range(ROUNDS):
        delay = rng.uniform(0.01, 0.15)
        lines = _run_and_kill(home_path, rng.randrange(2**32), delay, tmp_path / f"writer-{round_no}.err")
        start, done, pending = _parse(lines)
        where = (f"round {round_no} (killed {delay:.3f}s after ready, {len(done)} calls seen committed, "
                 f"in flight: {pending})")
        assert start == count, f"{where}: writer started at seq {start}, but the store held {count} events"

        store = home.open_home(home_path)
        try:
            report = verify_store(store)
            assert report.ok, f"{where}: verify found problems:\n" + "\n".join(
                p.line(store.roster()) for p in report.problems)
            assert not report.forks, f"{where}: forks after a crash: {report.forks}"

            heads = store.heads()
            assert set(heads) == {me}, f"{where}: unexpected authors {heads.keys()}"
            new_count = store.count()
            assert new_count == heads[me].seq == report.checked, \
                f"{where}: {new_count} events but head seq {heads[me].seq}, {report.checked} checked"

            # Every call the writer saw return is there, event by event, in order.
            seq = start
            for head_after, ids in done:
                for eid in ids:
                    seq += 1
                    event = store.get(eid)
                    assert event is not None, f"{where}: committed event {eid.hex()} (seq {seq}) is gone"
                    assert event.header.seq == seq and event.header.author == me, \
                        f"{where}: event {eid.hex()} sits at seq {event.header.seq}, expected {seq}"
                    assert event.payload is not None, f"{where}: event {eid.hex()} has no payload"
                    obs = payloads.decode(event.header.kind, event.payload)
                    assert isinstance(obs, payloads.Observation) and obs.setting == "crash.writer"
                assert head_after == seq, f"{where}: writer reported head {head_after}, expected {seq}"

            # The call cut short by the kill is all there or not there at all.
            allowed = {seq} if pending is None else {seq, seq + pending}
            assert new_count in allowed, \
                f"{where}: {new_count} events after the kill; expected one of {sorted(allowed)} (a batch half-written)"
            assert new_count >= count, f"{where}: event count went back from {count} to {new_count}"
            committed += len(done)
            cut_short += pending is not None
            landed += pending is not None and new_count != seq
            count = new_count
        finally:
            store.close()

    # The store still takes appends after all the crashes.
    store = home.open_home(home_path)
    try:
        eid = store.append(payloads.Observation(setting="crash.writer", value="after"))
        assert store.get(eid).header.seq == count + 1
        assert verify_store(store).ok
    finally:
        store.close()
    print(f"{ROUNDS} kills, {committed} calls seen committed, {cut_short} kills inside a call "
          f"({landed} of those calls had committed), {count} events")
