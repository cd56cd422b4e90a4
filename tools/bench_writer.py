"""The paced writer of `make bench`: appends preference events to a home at a steady rate.

Started by tools/bench.py while it times preference lookups on the same store in
another process. Writes `--batch` events every batch/rate seconds through its own
`home.open_home`, prints "ready" once the first batch is stored, and on SIGTERM
finishes the batch in hand and prints one JSON line: events written, seconds, the
achieved rate and how late the batches ran. It also stops when its parent exits, so
a bench that dies leaves no writer behind. With `--memory-every N`, every Nth event is a
memory entry (a few words, no embedding: the searching process indexes it), as an agent
that records memories while another process searches them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time

from agentlog.log import payloads
from agentlog.store import home

VALUES = ("a", "b", "c", "d")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("home", help="the home to append to (it must have joined a group)")
    p.add_argument("--rate", type=float, default=1000, help="events per second")
    p.add_argument("--batch", type=int, default=50, help="events per append_many call")
    p.add_argument("--settings", type=int, default=200, help="settings s000.. to write about")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--memory-every", type=int, default=0, help="make every Nth event a memory entry (0: none)")
    return p.parse_args(argv)


def batch_of(rng: random.Random, n: int, settings: int, memory_every: int = 0, written: int = 0) -> list:
    """Mostly observations in day/night contexts, a few decisions: what a running agent records; and every
    `memory_every`th event (counting from `written`) a memory entry."""
    out = []
    for i in range(n):
        if memory_every and (written + i) % memory_every == memory_every - 1:
            words = " ".join(rng.choice(("tea", "bike", "rain", "desk", "lamp", "train", "code")) for _ in range(6))
            out.append(payloads.MemoryPut(entry=os.urandom(16), type="fact", content=f"noted {words}"))
            continue
        setting, value = f"s{rng.randrange(settings):03d}", rng.choice(VALUES)
        context = (("daypart", rng.choice(("day", "night"))), ("device_class", "laptop"))
        if rng.random() < 0.1:
            out.append(payloads.Decision(setting=setting, value=value, context=context,
                                         confidence_bp=rng.randrange(3000, 9500)))
        else:
            out.append(payloads.Observation(setting=setting, value=value, context=context))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(args.seed)
    interval = args.batch / args.rate
    store = home.open_home(args.home)
    parent = os.getppid()
    written = late = 0
    slowest = 0.0
    try:
        start = deadline = time.perf_counter()
        while not stop and os.getppid() == parent:
            items = batch_of(rng, args.batch, args.settings, args.memory_every, written)
            began = time.perf_counter()
            store.append_many(items)
            slowest = max(slowest, time.perf_counter() - began)
            if not written:
                print("ready", flush=True)
            written += len(items)
            deadline += interval
            pause = deadline - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                late += 1
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    print(json.dumps({"events": written, "seconds": round(elapsed, 3), "rate": written / elapsed,
                      "batches": written // args.batch, "late_batches": late,
                      "slowest_batch_ms": round(slowest * 1000, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
