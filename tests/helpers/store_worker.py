"""Another process on a home for tests/store/test_safety.py: opens, reads and writes the store until told to stop.

Usage: python tests/helpers/store_worker.py HOME STOP_FILE MAP_SIZE

Until STOP_FILE exists, in a loop: opens the home's store with a map of MAP_SIZE bytes (a tiny
one makes every growth by another process reach it), then a few times reads what `agentlog
status` reads and appends one small observation (the open handle must adopt the sizes other
processes set meanwhile), and closes it. Prints "ready" after its first loop, then "ok LOOPS"
(events it appended) and exits 0, or prints the error and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from agentlog.log import payloads
    from agentlog.store import home
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from agentlog.log import payloads
    from agentlog.store import home
from agentlog.crypto import DeviceKey
from agentlog.store.store import Store


def open_small(path: Path, map_size: int) -> Store:
    path, seed = home.read_key(path)
    return Store(path / home.STORE_DIR, DeviceKey(seed), map_size=map_size, create=False)


def main(argv: list[str]) -> int:
    path, stop, map_size = Path(argv[1]), Path(argv[2]), int(argv[3])
    loops = 0
    try:
        while not stop.exists():
            with open_small(path, map_size) as store:
                for _ in range(5):
                    store.count()
                    store.heads()
                    store.views()
                    store.prefs.get("worker.seen")
                    store.append(payloads.Observation(setting="worker.seen", value=str(loops)))
                    loops += 1
            if loops == 5:
                print("ready", flush=True)
    except Exception as exc:  # noqa: BLE001 - the test reads what failed
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"ok {loops}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
