"""Compaction subprocess for tests/system/test_compaction_crash.py: compacts a store until done or killed.

Usage: python tests/helpers/compaction_worker.py STORE SEED_HEX NOW_MS CHUNK PAUSE_MS

Opens the store with the device key SEED_HEX and a clock fixed at NOW_MS (so the snapshot event is
the same bytes in every run), sets compaction.CHUNK, and runs compaction.compact. Every write
transaction the compaction opens is numbered from 0 (0 writes the snapshot, then the truncation steps)
and reported on stdout, one line per os.write (under PIPE_BUF, so a SIGKILL never leaves half a line):
  ready                 the store is open
  begin K               write transaction K is about to start
  inside K              K's work is done, not committed; the worker sleeps PAUSE_MS here, inside it
  done K                K committed
  finished DROPPED      compact returned; the worker then waits for its stdin to close, so a kill
                        aimed at the last transaction never races its exit
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

try:
    from agentlog.store import compaction
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from agentlog.store import compaction
from agentlog.crypto import DeviceKey
from agentlog.store.store import Store


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main(argv: list[str]) -> None:
    path, seed, now_ms, chunk, pause_ms = (
        Path(argv[1]),
        bytes.fromhex(argv[2]),
        int(argv[3]),
        int(argv[4]),
        float(argv[5]),
    )
    compaction.CHUNK = chunk
    store = Store(path, DeviceKey(seed), clock=lambda: now_ms)
    write, numbers = store.write, iter(range(1 << 30))

    def announced(fn):
        k = next(numbers)

        def inside(txn):
            result = fn(txn)
            _say(f"inside {k}")
            time.sleep(pause_ms / 1000)
            return result
        _say(f"begin {k}")
        result = write(inside)
        _say(f"done {k}")
        return result

    store.write = announced
    _say("ready")
    report = compaction.compact(store, now_ms=now_ms)
    store.close()
    _say(f"finished {report.dropped}")
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv)
