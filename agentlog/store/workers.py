"""Worker processes of `verify` and `audit export` on large stores: how they are started, and for `audit
export` the ranges of the events database they take.

The parent cuts the key space into ranges of about equal count and reads each worker's pickled results on a
thread of its own, so a worker that dies early is reported instead of hanging the parent.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
from pathlib import Path

import agentlog
from agentlog.store.store import Store


def spawn(module: str, *args: str, stdin: int = subprocess.PIPE) -> subprocess.Popen:
    """`python -m module args` with pipes to its output streams and to its input (or `stdin`, a file descriptor),
    importing the agentlog this process runs (`-P`: not a package of that name in the current directory, which
    `-m` would otherwise put first)."""
    root = str(Path(agentlog.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    return subprocess.Popen([sys.executable, "-P", "-m", module, *args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def drain(proc: subprocess.Popen, results: queue.Queue) -> None:
    """Forward each result a worker writes; an error text if it dies early."""
    try:
        while True:
            results.put(pickle.load(proc.stdout))
    except EOFError:
        pass
    except Exception as exc:  # noqa: BLE001 - any failure here is reported to the caller
        results.put(f"{type(exc).__name__}: {exc}")
        return
    if proc.wait() != 0:
        err = proc.stderr.read().decode(errors="replace").strip()
        results.put(err.splitlines()[-1] if err else f"exit status {proc.returncode}")


def split_keys(store: Store, total: int, parts: int) -> list[bytes | None]:
    """Start keys cutting the events database into `parts` ranges of about equal count."""
    step, starts = max(1, total // parts), [None]
    with store.raw_txn() as txn:
        for i, key in enumerate(txn.cursor(db=store.db("events")).iternext(values=False)):
            if i and i % step == 0 and len(starts) < parts:
                starts.append(bytes(key))
    return starts
