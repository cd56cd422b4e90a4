"""The store under stress and damage: map growth with many threads and processes at once,
files cut short or overwritten, a store that vanished (a full disk and a 500 MB catch-up under a live
daemon: tests/system/test_store_safety_daemons.py)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.store import Store
from tests.helpers.bulk import bulk
from tests.helpers.daemons import agentlog
from tests.helpers.paths import HELPERS

WORKER = HELPERS / "store_worker.py"
TINY_MAP = 256 * 1024


def _big(i: int, size: int) -> payloads.MemoryPut:
    return payloads.MemoryPut(entry=i.to_bytes(16, "big"), type="fact", content=f"{i}:" + "x" * size)


def test_map_grows_safely_under_threads_and_processes(tmp_path, laptop):
    """From a 256 KiB map the store grows about eight times while three reader threads keep
    transactions open, two writer threads append large events and three other processes (with
    tiny maps of their own) open, read and append to the same home; nothing fails and nothing is
    lost. Before the gate, growing the map under open transactions failed within a few growths."""
    laptop.close()
    path = tmp_path / "laptop"
    store = Store(path / "store", DeviceKey(home.read_key(path)[1]), map_size=TINY_MAP, create=False)
    stop, errors = threading.Event(), []
    stop_file = tmp_path / "stop"
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(path), str(stop_file), str(TINY_MAP)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]

    def guarded(fn):
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
        return run

    def read():
        while not stop.is_set():
            store.count()
            store.prefs.get("worker.seen")
            with store.raw_txn() as txn:          # a transaction held while others write and grow
                txn.stat(store.db("events"))
                time.sleep(0.001)
                txn.get(b"group", db=store.db("meta"))

    def write(first):
        for i in range(first, first + 400, 5):
            if stop.is_set():
                return
            store.append_many([e for j in range(i, i + 5) for e in bulk(j, fields=3)])

    assert [w.stdout.readline().strip() for w in workers] == ["ready"] * 3
    readers = [threading.Thread(target=guarded(read)) for _ in range(3)]
    writers = [threading.Thread(target=guarded(lambda first=first: write(first))) for first in (0, 1000)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    stop_file.touch()
    results = [(w.wait(timeout=120), w.stdout.read(), w.stderr.read()) for w in workers]
    try:
        assert not errors, errors
        assert all(code == 0 for code, _, _ in results), results
        assert store.map_size() >= 64 * TINY_MAP
        written = sum(int(out.split()[1]) for _, out, _ in results)
        assert store.count() == 1 + 1 + 800 + written
        from agentlog.store.verify import verify_store
        assert verify_store(store).ok
    finally:
        store.close()


# -- damaged files -------------------------------------------------------------------------------

COMMANDS = (("status",), ("log",), ("pref", "get", "s.1"), ("memory", "list"), ("verify",), ("replay",),
            ("observe", "s.1", "v"), ("serve", "--listen", "127.0.0.1:0", "--no-discovery"))


@pytest.fixture
def filled(tmp_path) -> Path:
    """A closed home holding about 3 MB: observations and large memory entries."""
    path = tmp_path / "laptop"
    with home.create(path, "laptop") as store:
        store.create_group("laptop")
        store.append_many([payloads.Observation(setting=f"s.{i % 7}", value=f"v{i}") for i in range(300)])
        for i in range(0, 60, 10):
            store.append_many([_big(j, 5000 + 40 * j) for j in range(i, i + 10)])
    return path


def _run_all(path: Path) -> dict[str, subprocess.CompletedProcess]:
    return {" ".join(c): agentlog(path, *c, check=False, timeout=60) for c in COMMANDS}


def _one_line_errors(results: dict[str, subprocess.CompletedProcess]) -> list[str]:
    """What is wrong with how each command failed: it must exit 2 with one line on stderr, no traceback."""
    bad = []
    for command, proc in results.items():
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or len(lines) != 1 or not lines[0].startswith("agentlog: error: "):
            bad.append(f"{command}: exit {proc.returncode}: {proc.stderr[-400:]}")
    return bad


def test_a_data_file_cut_short_is_refused_by_every_command(filled):
    """Half of data.mdb is gone: every command refuses it in one line naming the file, where reading
    a page past the end used to kill the process with SIGBUS."""
    data = filled / "store" / "data.mdb"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    results = _run_all(filled)
    assert not _one_line_errors(results)
    assert all(str(data) in p.stderr and "cut short" in p.stderr for p in results.values())


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_pages_overwritten_with_random_bytes_give_one_line_errors(filled, seed):
    """Twelve whole pages of data.mdb overwritten with random bytes: every command either works (it
    did not touch them) or fails in one line, never with a traceback; verify reports the damage."""
    data = filled / "store" / "data.mdb"
    rng = random.Random(seed)
    pages = data.stat().st_size // 4096
    with open(data, "r+b") as f:
        for page in rng.sample(range(2, pages), 12):
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
    results = _run_all(filled)
    for command, proc in results.items():
        assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, (command, proc.stderr[-2000:])
        if proc.returncode == 2:
            assert len(proc.stderr.strip().splitlines()) == 1, (command, proc.stderr)
    assert results["verify"].returncode != 0, results["verify"].stdout


def test_verify_finds_a_view_that_differs_from_its_log(filled):
    """A stored preference view's state altered in place: verify folds the views again from the log
    and reports the one that differs (it used to check only the events, and said all was well)."""
    with home.open_home(filled) as store, store.raw_txn(write=True) as txn:
        state = bytes(txn.get(b"s.1", db=store.db("views.pref")))
        assert b"v295" in state
        txn.put(b"s.1", state.replace(b"v295", b"v296", 1), db=store.db("views.pref"))
    proc = agentlog(filled, "verify", check=False)
    assert proc.returncode == 1 and "view pref" in proc.stdout, proc.stdout + proc.stderr
    assert json.loads(agentlog(filled, "verify", "--json", check=False).stdout)["damage"]


@pytest.mark.parametrize("damage", ["data file emptied", "data file deleted", "store deleted"])
def test_a_home_whose_store_is_gone_is_refused_not_recreated(filled, damage):
    """The key file says a device lives here but its store is empty or gone: every command refuses in
    one line and leaves the home as it found it (an empty store used to be created and verified ok)."""
    store = filled / "store"
    if damage == "data file emptied":
        (store / "data.mdb").write_bytes(b"")
    elif damage == "data file deleted":
        (store / "data.mdb").unlink()
    else:
        shutil.rmtree(store)
    before = sorted(p.name for p in filled.rglob("*"))
    results = _run_all(filled)
    assert not _one_line_errors(results)
    assert all("missing" in p.stderr or "empty" in p.stderr for p in results.values()), results
    assert sorted(p.name for p in filled.rglob("*")) == before


def test_init_on_a_regular_file_says_so_in_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a directory\n")
    proc = agentlog(target, "init", "--name", "laptop", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"agentlog: error: {target} is a file, not a directory: give --home a directory"], proc.stderr
    assert target.read_text() == "not a directory\n"
