"""The store under a live daemon: `agentlog serve` on a full disk or with little space left, and a 500 MB
catch-up while other processes use the same home (the store's own stress and damage tests:
tests/store/test_safety.py)."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from agentlog.store import home
from tests.helpers.bulk import bulk
from tests.helpers.daemons import Daemon, agentlog, end_all, provision, snapshot, wait_converged, wait_until

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
                             "--peer", "127.0.0.1:9", "--no-discovery"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=file_size_limit(1))
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
        laptop.append_many([e for j in range(12) for e in bulk(j)])
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
            laptop.append_many([e for j in range(i, min(n, i + 40)) for e in bulk(j)])
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
