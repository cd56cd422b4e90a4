"""A family that compacts: writing over days, the laptop's compaction, and a newcomer that holds nothing yet, for
the tests that bootstrap from a snapshot (over a socket, or through the relay); one sync round over a socket."""

from __future__ import annotations

import trio

from agentlog.errors import PeerError
from agentlog.log import payloads
from agentlog.store import compaction, devices
from agentlog.sync.replicator import Replicator, sync_once
from tests.helpers.family import DAY, HOUR, Family, new_device

CANARY = "canary-lentils-9c41e7"


def write(f: Family, store, n: int, tag: str) -> None:
    """`n` observations and a memory put, half an hour apart on the family's clock."""
    for i in range(n):
        store.append(payloads.Observation(setting=f"s{i % 4}", value=f"{tag}{i % 3}", weight_milli=1000))
        f.later(HOUR // 2)
    store.memory.put(f"a note from {tag} at {f.now}", tags=(tag,))


def digests(store) -> dict[str, str]:
    return {name: v["digest"] for name, v in store.views().items()}


def newcomer(f: Family, name: str = "hub"):
    """A device enrolled by the laptop and joined by its token, holding nothing yet."""
    store = f._device(name, 0)
    devices.join(store, devices.enroll(f.laptop, store.device, name))
    f._hub = store                          # closed with the family
    return store


def compacted(f: Family) -> int:
    """Laptop and phone write and meet; the laptop compacts. Returns the events the laptop held before."""
    for _day in range(3):
        write(f, f.laptop, 40, "l")
        write(f, f.phone, 40, "p")
        f.meet()
        f.later(DAY)
    write(f, f.laptop, 2, "l")          # the phone's newest clock then names everything the laptop wrote before
    f.sync(f.laptop, f.phone)
    write(f, f.phone, 2, "p")
    f.sync(f.phone, f.laptop)
    held = f.laptop.count()
    report = compaction.compact(f.laptop, now_ms=f.now)
    assert report.snapshot is not None and report.dropped > held // 2
    return held


def over_socket(server, client, timeout: float = 20, **options):
    """`client` runs one `agentlog sync` round against `server` listening on 127.0.0.1; the sync's result."""
    async def main():
        async with trio.open_nursery() as nursery:
            replicator = await nursery.start(Replicator(server, listen=("127.0.0.1", 0)).run)
            try:
                return await sync_once(client, f"127.0.0.1:{replicator.port}", timeout=timeout, **options)
            except PeerError as exc:
                return exc
            finally:
                nursery.cancel_scope.cancel()
    outcome = trio.run(main)
    if isinstance(outcome, PeerError):
        raise outcome
    return outcome


def health_family(tmp_path) -> Family:
    """laptop and phone read `health`; hub (granted), radio and speaker (not) are enrolled at the start and stay
    away (the caller closes them). The phone's clock runs two days ahead: its evidence counts at most a day past
    what it had seen of the others, which a fold must read as of each event (docs/preferences.md, Clock skew)."""
    f = Family(tmp_path, phone=2 * DAY)
    f.laptop.scopes.create("health")
    f.laptop.scopes.grant("health", ["phone"])
    f.hub_, f.radio, f.speaker = new_device(f, "hub"), new_device(f, "radio"), new_device(f, "speaker")
    f.laptop.scopes.grant("health", ["hub"])
    f.meet()
    return f


def close_health(f: Family) -> None:
    """Close every store of a health_family."""
    for store in (f.hub_, f.radio, f.speaker):
        store.close()
    f.close()


def write_days(f: Family, days: int) -> None:
    """laptop and phone observe in `user` and in `health` (CANARY among the values) for days, so day summaries
    form, and keep notes (the laptop's in `health`)."""
    for day in range(days):
        for i in range(8):
            for store, tag in ((f.laptop, "l"), (f.phone, "p")):
                store.prefs.observe(f"s{i % 2}", f"{tag}{i % 3}")
                store.prefs.observe("diet", f"{CANARY}-{i % 2}" if i % 4 == 0 else "vegan", scope="health")
            f.later(HOUR)
        f.laptop.memory.put(f"{CANARY} note {day}", scope="health")
        f.phone.memory.put(f"plain note {day}")
        f.meet()
        f.later(DAY)
    f.laptop.prefs.observe("s0", "last")          # the phone's next clock names everything the laptop holds
    f.sync(f.laptop, f.phone)
    f.phone.prefs.observe("diet", "vegan", scope="health")
    f.sync(f.phone, f.laptop)
