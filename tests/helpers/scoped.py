"""Three devices in one group, laptop (founder), phone and speaker, each store in its own directory, synced in
process; and the search of a directory's files for a canary's bytes."""

from __future__ import annotations

import os
from pathlib import Path

from agentlog.crypto import DeviceKey
from agentlog.store import devices
from agentlog.store.store import Store
from tests.helpers.sync import sync


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
