"""Three devices in one group, laptop (founder), phone and speaker, each store in its own directory, synced in
process; the search of a directory's files for a canary's bytes; and what the daemon tests of sealed scopes ask
of homes their `agentlog serve` daemons run on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentlog.crypto import DeviceKey
from agentlog.store import devices
from agentlog.store.store import Store
from tests.helpers.daemons import agentlog, snapshot, status, wait_until
from tests.helpers.sync import sync


@contextmanager
def health_home(tmp: Path) -> Iterator[Home]:
    """A Home whose scope `health` the laptop and the phone read and the speaker does not; closed after."""
    h = Home(tmp)
    h.laptop.scopes.create("health")
    h.laptop.scopes.grant("health", ["phone"])
    h.meet()
    try:
        yield h
    finally:
        for s in (h.laptop, h.phone, h.speaker):
            s.close()


class Home:
    """laptop (founder), phone and speaker in one group, every store in its own directory."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.laptop = self._device("laptop")
        self.laptop.create_group("laptop")
        self.phone = self.join("phone")
        self.speaker = self.join("speaker")
        self.meet()

    def _device(self, name: str) -> Store:
        store = Store(self.tmp / name, DeviceKey.generate())
        store.set_meta({"device": store.key.public, "name": name.encode()})
        return store

    def join(self, name: str) -> Store:
        store = self._device(name)
        devices.join(store, devices.enroll(self.laptop, store.device, name))
        sync(self.laptop, store)
        return store

    def meet(self, *stores: Store) -> None:
        stores = stores or (self.laptop, self.phone, self.speaker)
        for _ in range(2):
            for a in stores:
                for b in stores:
                    if a is not b:
                        sync(a, b)


def files_holding(directory: Path, needle: str | bytes) -> list[str]:
    """Every file under `directory` whose bytes hold `needle` (text as UTF-8)."""
    raw = needle.encode() if isinstance(needle, str) else needle
    found = []
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            if raw in path.read_bytes():
                found.append(str(path.relative_to(directory)))
    return found


def homes_holding(needle: str | bytes, *home_dirs: Path) -> dict[str, list[str]]:
    """For each home, its files whose bytes hold `needle`: every file under the home (data.mdb, its lock file,
    keys, whatever else is there) and its daemon's log (written beside the home, tests.helpers.daemons)."""
    raw = needle.encode() if isinstance(needle, str) else needle
    found = {}
    for home_dir in home_dirs:
        files = [p for p in sorted(home_dir.rglob("*")) if p.is_file()]
        assert any(p.name == "data.mdb" for p in files), f"no data.mdb under {home_dir}"
        logs = sorted(home_dir.parent.glob(f"{home_dir.name}.serve.*.log"))
        assert logs, f"no daemon log for {home_dir.name}"
        found[home_dir.name] = [p.name for p in files + logs if raw in p.read_bytes()]
    return found


def same_events(*home_dirs: Path) -> dict | None:
    """The common frontier (author -> seq) when every home holds the same events, else None. (View digests
    differ on purpose: a device folds only what it reads.)"""
    snaps = [snapshot(h) for h in home_dirs]
    first = snaps[0]
    if all(s["frontier"] == first["frontier"] and s["count"] == first["count"] for s in snaps):
        return first
    return None


def wait_holding(home_dirs: tuple[Path, ...], author: Path, seq: int, what: str) -> dict:
    """Wait until every home holds the same events, `author`'s chain up to at least `seq` among them."""
    author_id = bytes.fromhex(status(author)["device"])

    def done():
        common = same_events(*home_dirs)
        return common if common and common["frontier"].get(author_id, 0) >= seq else None
    return wait_until(done, what, timeout=45)


def head_seq(home_dir: Path) -> int:
    doc = status(home_dir)
    return doc["heads"][doc["name"]]["seq"]


def reads(home_dir: Path, scope: str) -> bool:
    rows = json.loads(agentlog(home_dir, "scopes", "list", "--json").stdout)
    return any(r["scope"] == scope and r["can_read"] for r in rows)


def verified(home_dirs: tuple[Path, ...]) -> dict[str, int]:
    """Run `agentlog verify` on each home while its daemon runs: it must pass, having compared every view with
    the log (no note that the store kept changing); returns each home's count of sealed events it carries unread."""
    unread = {}
    for home_dir in home_dirs:
        proc = agentlog(home_dir, "verify", "--json", check=False)
        assert proc.returncode == 0, (home_dir.name, proc.stdout, proc.stderr)
        doc = json.loads(proc.stdout)
        assert doc["ok"] and not doc["problems"] and not doc["damage"], (home_dir.name, doc)
        assert not [n for n in doc["notes"] if "views not checked" in n], (home_dir.name, doc["notes"])
        counts = [int(n.split()[0]) for n in doc["notes"] if "carried as ciphertext" in n]
        unread[home_dir.name] = counts[0] if counts else 0
    return unread
