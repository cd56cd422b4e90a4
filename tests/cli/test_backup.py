"""`agentlog backup` and `agentlog restore`: a copy that verifies, the key kept private, progress only on a
terminal, and a restore that refuses a live home and marks the one it writes."""

from __future__ import annotations

import json
import socket
import stat

from agentlog.store import home
from agentlog.store.nudge import PORT_FILE
from agentlog.store.verify import verify_store
from agentlog.sync.peer_log import StoreLog
from tests.helpers.cli import as_json, assert_one_line_error, run, stderr_on_a_terminal
from tests.helpers.events import phone_events


def test_backup_copies_store_and_key_while_the_store_is_open(tmp_path, laptop):
    phone_events(laptop, 5)                          # the fixture's store stays open, as serve's would
    doc = json.loads(run(tmp_path / "laptop", "backup", str(tmp_path / "bk"), "--json").stdout)
    assert doc["events"] == laptop.count() == 6 and doc["bytes"] > 0
    key = tmp_path / "bk" / home.KEY_FILE
    assert not key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    assert key.read_text() == (tmp_path / "laptop" / home.KEY_FILE).read_text()
    with home.open_home(tmp_path / "bk") as copy:
        assert copy.count() == 6 and verify_store(copy).ok
    assert_one_line_error(run(tmp_path / "laptop", "backup", str(tmp_path / "bk"), check=False), "not an empty")
    assert b"backup: 2/2" in stderr_on_a_terminal(tmp_path / "laptop", "backup", str(tmp_path / "bk2"))


def test_restore_refuses_a_live_home_and_marks_the_home_it_writes(tmp_path, laptop):
    run(tmp_path / "laptop", "backup", str(tmp_path / "bk"))
    phone_events(laptop, 3)
    target = tmp_path / "laptop"
    assert_one_line_error(run(target, "restore", str(tmp_path / "bk"), check=False), "already holds a device")
    assert_one_line_error(run(tmp_path / "new", "restore", str(tmp_path / "nothing"), check=False),
                          "not an agentlog backup")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as serving:      # what a running serve publishes
        serving.bind(("127.0.0.1", 0))
        (target / home.STORE_DIR / PORT_FILE).write_text(str(serving.getsockname()[1]))
        assert_one_line_error(run(target, "restore", str(tmp_path / "bk"), "--force", check=False),
                              "serve is running")
    laptop.close()
    done = as_json(target, "restore", str(tmp_path / "bk"), "--force")
    assert done["events"] == 1 and done["restored_at"] == {"epoch": 0, "seq": 1}
    with home.open_home(target) as store:
        assert store.meta("restored") is not None and store.count() == 1
        phone_events(store, 1)                                        # written before it reaches a peer
        assert store.heads()[store.device].seq == 2
        assert StoreLog(store).frontier()[store.device] == (0, 1)     # shown at the backup: later events asked for
