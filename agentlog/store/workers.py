"""Worker processes over ranges of the events database, shared by `verify` and `audit export` on large stores.

The parent cuts the key space into ranges of about equal count and reads each worker's pickled results on a
thread of its own, so a worker that dies early is reported instead of hanging the parent.
"""

from __future__ import annotations

import pickle
import queue
import subprocess

from agentlog.store.store import Store


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
