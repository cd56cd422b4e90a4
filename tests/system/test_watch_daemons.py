"""`agentlog watch --json` on the laptop while both devices run `serve`: a phone's observation that changes a
setting arrives as one line naming the setting, its new value and the phone; Ctrl-C ends the watch cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from agentlog.store import home
from agentlog.store.home import STORE_DIR
from tests.helpers.daemons import DEADLINE, _env, provision, wait_until


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines as they come, read by a thread (a test waits on the queue with a deadline)."""
    found: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [found.put(line) for line in proc.stdout], daemon=True).start()
    return found


@pytest.mark.slow
def test_watch_prints_a_peers_change(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    laptop = daemons(homes["laptop"])
    daemons(homes["phone"], listen=False, peers=(laptop.address,))
    store_dir = homes["laptop"] / STORE_DIR
    wait_until(lambda: (store_dir / "replicator.port").exists(), "the laptop's daemon publishes its port")
    watch = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(homes["laptop"]), "watch", "--json",
                              "--setting", "editor."], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
    lines = lines_of(watch)
    try:
        wait_until(lambda: any((store_dir / "watchers").glob("*")), "the watcher registers")
        with home.open_home(homes["phone"]) as phone:          # an agent's process beside the phone's daemon
            phone.prefs.observe("editor.font", "mono")
            phone.prefs.observe("other.thing", "x")                # not watched: no line
            phone.prefs.observe("editor.theme", "dark")
        seen = [json.loads(lines.get(timeout=DEADLINE)) for _ in range(2)]
        assert [(c["setting"], c["value"], c["devices"]) for c in seen] == \
            [("editor.font", "mono", ["phone"]), ("editor.theme", "dark", ["phone"])]
        assert seen[1]["old_value"] is None and seen[1]["events"][0]["kind"] == "observation"
        assert seen[1]["position"] > seen[0]["position"] and seen[1]["time"].endswith("Z")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(DEADLINE) == 0
        assert "Traceback" not in watch.stderr.read()
        assert not any((store_dir / "watchers").glob("*"))
    finally:
        if watch.poll() is None:
            os.kill(watch.pid, signal.SIGKILL)
            watch.wait()
