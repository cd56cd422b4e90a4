"""Devices on a simulated clock writing a bit of everything, synced as the replicator does, and their digests."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

from agentlog.store import home
from agentlog.store.store import Store

START = 1_750_000_000_000
SETTINGS = ("ui.theme", "ui.font", "audio.volume")
VALUES = ("dark", "light", "sepia")


class Clock:
    def __init__(self):
        self.now = START

    def of(self, skew: int):
        return lambda: self.now + skew


def device(tmp: Path, name: str, clock) -> Store:
    """A home (key file and store) whose store reads the simulated clock."""
    created = home.create(tmp / name, name)
    key = created.key
    created.close()
    return Store(tmp / name / home.STORE_DIR, key, clock=clock)


def sync(src: Store, dst: Store) -> None:
    """What the replicator does: send what dst lacks and will accept, ingested with the ledger's source."""
    limits = dst.revoked_limits()
    batch = [(e.record, e.payload) for e in src.events_after(dst.frontier())
             if e.header.seq <= limits.get(e.header.author, e.header.seq)]
    if batch:
        dst.ingest(batch, source=src.device)


def digests(store: Store) -> dict[str, bytes]:
    return {name: v["digest"] for name, v in store.views().items()}


def write_something(store: Store, rng: random.Random, mine: dict) -> None:
    roll = rng.random()
    setting, value = rng.choice(SETTINGS), rng.choice(VALUES)
    if roll < 0.45:
        store.prefs.observe(setting, value, {"daypart": rng.choice(("day", "night"))} if rng.random() < 0.5 else None)
    elif roll < 0.6:
        mine.setdefault("decisions", []).append(store.prefs.decide(setting, value, confidence=0.7))
    elif roll < 0.7 and mine.get("decisions"):
        store.prefs.correct(rng.choice(mine["decisions"]), value)
    elif roll < 0.75:
        store.prefs.set(setting, value)
    elif roll < 0.8:
        store.prefs.override(setting, value)
    elif roll < 0.9 or not store.memory.list():
        vector = [rng.uniform(-1, 1) for _ in range(8)] if rng.random() < 0.5 else None
        store.memory.put(f"note {rng.randrange(1000)}", type="fact", tags=[rng.choice(("a", "b"))],
                         embedding=vector, model="test-8d" if vector else None)
    elif roll < 0.97:
        entry = rng.choice(store.memory.list())
        if rng.random() < 0.5:
            store.memory.update(entry.id, content=f"edited {rng.randrange(1000)}")
        else:
            store.memory.update(entry.id, embedding=[rng.uniform(-1, 1) for _ in range(8)], model="test-8d")
    else:
        store.memory.delete(rng.choice(store.memory.list()).id)


def files_digest(path: Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


def agentlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentlog", *args], capture_output=True, text=True, timeout=60)
