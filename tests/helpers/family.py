"""A user's devices in one group on a shared simulated clock, and days of their observations."""

from __future__ import annotations

import random

from agentlog.crypto import DeviceKey
from agentlog.log import payloads
from agentlog.store import devices
from agentlog.store.store import Store

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY

SETTINGS = [f"s{i}" for i in range(6)]


class Family:
    """A user's devices in one group; `now` is the true time, each device's clock adds its skew."""

    def __init__(self, tmp_path, **skews: int):
        self.now = 1_750_000_000_000
        self.tmp = tmp_path
        self.laptop = self._device("laptop", skews.get("laptop", 0))
        self.laptop.create_group("laptop")
        self.phone = self._join("phone", skews.get("phone", 0))

    def _device(self, name: str, skew: int) -> Store:
        store = Store(self.tmp / name, DeviceKey.generate(), clock=lambda: self.now + skew)
        store.set_meta({"device": store.key.public, "name": name.encode()})
        return store

    def _join(self, name: str, skew: int) -> Store:
        store = self._device(name, skew)
        devices.join(store, devices.enroll(self.laptop, store.device, name))
        self.sync(self.laptop, store)
        return store

    def hub(self, skew: int = 0) -> Store:
        self._hub = self._join("hub", skew)
        return self._hub

    def later(self, ms: int) -> None:
        self.now += ms

    @staticmethod
    def sync(src: Store, dst: Store) -> None:
        dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])

    def meet(self) -> None:
        """Every device exchanges with every other until all hold the same events."""
        stores = [self.laptop, self.phone] + ([self._hub] if hasattr(self, "_hub") else [])
        for _ in range(2):
            for a in stores:
                for b in stores:
                    if a is not b:
                        self.sync(a, b)
        assert len({s.views()["pref"]["digest"] for s in stores}) == 1

    def close(self) -> None:
        for store in (self.laptop, self.phone, getattr(self, "_hub", None)):
            if store is not None:
                store.close()


def observe_days(f: Family, days: int, per_day: int = 12, seed: int = 1, devices_=None) -> None:
    """Observations spread over `days`, from the given devices in turn, meeting at the end of each day."""
    rnd = random.Random(seed)
    writers = devices_ or [f.laptop, f.phone]
    for _ in range(days):
        for i in range(per_day):
            store = writers[i % len(writers)]
            store.append(payloads.Observation(setting=rnd.choice(SETTINGS), value=rnd.choice("abc"),
                                              context=(("daypart", rnd.choice(["day", "night"])),), weight_milli=1000))
            f.later(DAY // per_day)
        meet(f, writers if devices_ else None)


def meet(f: Family, stores=None) -> None:
    """Every device (or only `stores`) exchanges with every other until all hold the same events."""
    if stores is None:
        f.meet()
        return
    for _ in range(2):
        for a in stores:
            for b in stores:
                if a is not b:
                    f.sync(a, b)


def new_device(f: Family, name: str) -> Store:
    """A device enrolled by the laptop and joined by token, holding nothing yet."""
    store = f._device(name, 0)
    devices.join(store, devices.enroll(f.laptop, store.device, name))
    return store
