"""The LMDB environment wrapper under threads of one process (agentlog.store.env)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
