"""The store under stress and damage: map growth with many threads and processes at once,
files cut short or overwritten, a store that vanished, a full disk."""

from __future__ import annotations

import json
import random
import resource
import shutil
import signal
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

from .daemons import Daemon, agentlog, end_all, provision, snapshot, wait_converged, wait_until

WORKER = Path(__file__).with_name("store_worker.py")
TINY_MAP = 256 * 1024


ENTRY = b"e" * 16


def _big(i: int, size: int) -> payloads.MemoryPut:
    return payloads.MemoryPut(entry=i.to_bytes(16, "big"), type="fact", content=f"{i}:" + "x" * size)


def _bulk(i: int, fields: int = 16) -> list:
    """A memory.update of ENTRY changing its content `fields` times (16 KB each: 256 KB at most, the largest
    event the limits allow), after the memory.put it needs when i is 0."""
    update = payloads.MemoryUpdate(entry=ENTRY, fields=tuple(payloads.MemoryField(content=f"{i}.{k}:" + "x" * 16_000)
                                                             for k in range(fields)))
    return [payloads.MemoryPut(entry=ENTRY, type="fact", content="bulk"), update] if i == 0 else [update]


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
            store.append_many([e for j in range(i, i + 5) for e in _bulk(j, fields=3)])

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
            ("observe", "s.1", "v"), ("serve", "--listen", "127.0.0.1:0"))


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
        assert b'"v295"' in state
        txn.put(b"s.1", state.replace(b'"v295"', b'"v296"'), db=store.db("views.pref"))
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


# -- a full disk -----------------------------------------------------------------------------------

def file_size_limit(limit: int):
    """A full disk without root: in the child, RLIMIT_FSIZE caps every file it writes at `limit` bytes, so a
    write past that fails with EFBIG as one past a full disk fails with ENOSPC (SIGXFSZ, which would kill
    the process instead, is ignored, and stays ignored across exec). Pipes are not files: stderr sent to a
    pipe still works."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_serve_on_a_full_disk_says_what_it_could_not_write(tmp_path):
    """No byte can be written: serve stays up and logs which file it could not write (it used to exit
    with "cannot listen on None", without --listen, blaming a socket; then to log a bare "File too
    large"). Its log goes to a pipe, which the limit does not touch."""
    homes = provision(tmp_path, "laptop", "phone")
    proc = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(homes["laptop"]), "serve",
                             "--peer", "127.0.0.1:9"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=file_size_limit(1))
    try:
        lines = [proc.stderr.readline() for _ in range(3)]
        failed = [json.loads(line) for line in lines if '"level": "error"' in line]
        assert failed and failed[0]["error"].startswith("StoreError: cannot write "), lines
        assert "replicator.tmp: File too large" in failed[0]["error"], failed
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_with_little_space_left_stays_up_and_loses_nothing(tmp_path):
    """The phone's daemon may grow its files by 256 KiB only, and the laptop sends it 3 MB: the write fails,
    the batch is refused to the peer as `internal` and the reason is in the daemon's log (LMDB reports the
    short write as an I/O error), the daemon stays up and its store is exactly as before (it used to die
    with a traceback)."""
    homes = provision(tmp_path, "laptop", "phone")
    with home.open_home(homes["laptop"]) as laptop:
        laptop.append_many([e for j in range(12) for e in _bulk(j)])
    before = snapshot(homes["phone"])
    limit = (homes["phone"] / "store" / "data.mdb").stat().st_size + 256 * 1024
    registry: list[Daemon] = []
    try:
        phone = Daemon(homes["phone"], registry=registry, preexec=file_size_limit(limit)).start()
        agentlog(homes["laptop"], "sync", phone.address, "--timeout", "20", check=False)
        failed = phone.wait_log(lambda e: e.get("event") == "ingest failed", "the failed write")
        assert "cannot write to the store at" in failed["error"], failed
        assert phone.running()
        assert phone.stop() == 0
    finally:
        end_all(registry)
    assert snapshot(homes["phone"]) == before
    assert agentlog(homes["phone"], "verify").returncode == 0


# -- the bar: a large catch-up under a live daemon ---------------------------------------------------

CATCH_UP_BYTES = 500 * 1000 * 1000
EVENT_BYTES = 16 * 16_000


@pytest.mark.slow
def test_a_daemon_stays_up_while_a_catch_up_grows_its_store_to_500_mb(tmp_path):
    """The laptop holds 500 MB of large events (256 KB memory updates); the phone starts empty and its `serve`
    receives them all from the laptop's `serve`, while other processes run `status`, `pref get`, `log` and `observe`
    on the phone's home in a loop: every one of those commands succeeds, the phone's daemon stays up,
    and both end with the same events. (Before, the receiving daemon died with `mdb_put: Invalid
    argument` as its map grew past 64 MiB, and other processes failed with MDB_MAP_RESIZED.)"""
    homes = provision(tmp_path, "laptop", "phone")
    with home.open_home(homes["laptop"]) as laptop:
        n = CATCH_UP_BYTES // EVENT_BYTES
        for i in range(0, n, 40):
            laptop.append_many([e for j in range(i, min(n, i + 40)) for e in _bulk(j)])
        head = laptop.heads()[laptop.device].seq
    registry: list[Daemon] = []
    failures, commands, done = [], [], threading.Event()

    def other_processes():
        while not done.is_set():
            for args in (("status", "--json"), ("pref", "get", "test.during"), ("log", "--author", "phone"),
                         ("observe", "test.during", str(len(commands)))):
                proc = agentlog(homes["phone"], *args, check=False, timeout=120)
                commands.append(args[0])
                if proc.returncode != 0:
                    failures.append(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr[-500:]}")

    try:
        laptop_daemon = Daemon(homes["laptop"], registry=registry).start()
        phone_daemon = Daemon(homes["phone"], peers=(laptop_daemon.address,), registry=registry).start()
        loop = threading.Thread(target=other_processes)
        loop.start()
        try:
            wait_until(lambda: snapshot(homes["phone"])["frontier"].get(laptop.device, 0) >= head
                       or not phone_daemon.running(), "the phone holds every laptop event", timeout=600)
        finally:
            done.set()
            loop.join()
        assert phone_daemon.running(), "\n".join(phone_daemon.lines()[-20:])
        assert not failures, failures[:5]
        assert len(commands) >= 8
        data = homes["phone"] / "store" / "data.mdb"
        assert data.stat().st_size >= CATCH_UP_BYTES
        wait_converged(homes["laptop"], homes["phone"], timeout=120)
        assert phone_daemon.stop() == 0 and laptop_daemon.stop() == 0
    finally:
        end_all(registry)
        for path in homes.values():
            shutil.rmtree(path / "store", ignore_errors=True)        # a gigabyte pytest would keep
