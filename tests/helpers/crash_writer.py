"""Writer subprocess for tests/system/test_crash.py: appends observations until it is killed.

Usage: python tests/helpers/crash_writer.py HOME [SEED]

Protocol on stdout, one line per os.write (each line is under PIPE_BUF, so a
SIGKILL never leaves half a line in the pipe):
  ready SEQ             the store is open; this device's head is at SEQ
  begin N               about to call append_many (or append when N == 1) with N events
  done SEQ ID ID ...    that call returned (committed); the new head SEQ and the ids in order
The writer never exits on its own; anything on stderr means it failed.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

try:
    from agentlog.log import payloads
    from agentlog.store import home
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from agentlog.log import payloads
    from agentlog.store import home

MAX_BATCH = 50


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main(argv: list[str]) -> None:
    store = home.open_home(argv[1])
    rng = random.Random(int(argv[2]) if len(argv) > 2 else None)
    me = store.device
    head = store.heads()[me].seq
    _say(f"ready {head}")
    n = 0
    while True:
        # Single appends and batches of 1..50, log-uniform so small batches are common.
        size = 1 if rng.random() < 0.3 else max(1, min(MAX_BATCH, int(MAX_BATCH ** rng.random())))
        batch = []
        for _ in range(size):
            n += 1
            # Values from a few bytes to about 1 KB (a value's limit), so some transactions span many pages.
            value = f"{os.getpid()}:{n}:" + "x" * rng.choice((0, 10, 200, 990))
            batch.append(payloads.Observation(setting="crash.writer", value=value, weight_milli=n % 1000))
        _say(f"begin {size}")
        if size == 1 and rng.random() < 0.5:
            ids = [store.append(batch[0])]
        else:
            ids = store.append_many(batch)
        head += len(ids)
        _say(f"done {head} " + " ".join(i.hex() for i in ids))


if __name__ == "__main__":
    main(sys.argv)
