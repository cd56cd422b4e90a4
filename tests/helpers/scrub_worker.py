"""Another process holding a home's store open and writing to it, for tests/store/test_scrub.py.

Usage: python tests/helpers/scrub_worker.py HOME STOP_FILE

Opens the home's store once and, until STOP_FILE exists, appends small observations in their own write
transactions, each after a short read. Prints "ready" after its first appends, then "ok N" (events it
appended) and exits 0, or prints the error and exits 1.
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


def main(argv: list[str]) -> int:
    path, stop = Path(argv[1]), Path(argv[2])
    n = 0
    try:
        with home.open_home(path) as store:
            while not stop.exists():
                store.count()
                store.append(payloads.Observation(setting="worker.seen", value=f"w{n:06d}" * 20))
                n += 1
                if n == 5:
                    print("ready", flush=True)
    except Exception as exc:  # noqa: BLE001 - the test reads what failed
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"ok {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
