"""The LMDB environment wrapper under threads of one process (agentlog.store.env)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import lmdb
import pytest

from agentlog.errors import StoreError
from agentlog.store.env import Env

SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from agentlog.store import home
    store = home.create(sys.argv[1], "laptop")
    env = store.environment
    begun, done = threading.Event(), threading.Event()

    def writer():
        with env.env.begin(write=True):
            begun.set()
            time.sleep(0.3)          # needs the GIL back before it can commit
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    begun.wait()
    env.open_dbs(["test.opened"])    # waits for the writer lock meanwhile
    thread.join()
    print("opened" if done.is_set() else "not committed")
""")


def test_opening_a_database_while_another_thread_commits_does_not_deadlock(tmp_path):
    """A daemon's ingest thread scrubbing (it opens the filler database) while its ledger thread commits hung
    both for good: py-lmdb's open_db without a transaction holds the GIL while it waits for the writer lock."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["opened"]


def test_opening_while_another_process_grows_the_map_opens_at_the_grown_size(tmp_path, monkeypatch):
    """lmdb.open reads the map size, then begins a transaction: a process growing the map in between makes
    that fail with MDB_MAP_RESIZED (seen under load: three processes opening a home that grew). The open is
    tried again; a map that keeps growing ends in one StoreError, not a traceback."""
    real_open, calls = lmdb.open, []

    def resized_once(*args, **kwargs):
        calls.append(kwargs["map_size"])
        if len(calls) == 1:
            raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(lmdb, "open", resized_once)
    env = Env(tmp_path / "db", "the test store", map_size=1 << 20, max_dbs=2)
    try:
        env.write(lambda txn: txn.put(b"k", b"v"))
        assert env.read(lambda txn: txn.get(b"k")) == b"v" and len(calls) == 2
    finally:
        env.close()

    def always_resized(*args, **kwargs):
        raise lmdb.MapResizedError("mdb_txn_begin: MDB_MAP_RESIZED")

    monkeypatch.setattr(lmdb, "open", always_resized)
    with pytest.raises(StoreError, match="keeps being resized while it is opened"):
        Env(tmp_path / "db", "the test store", map_size=1 << 20, max_dbs=2)
