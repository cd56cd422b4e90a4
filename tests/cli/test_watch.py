"""`agentlog watch`: a bad position or memory filter is one error line; a change prints one line for people."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.helpers.cli import assert_one_line_error, run


def test_bad_arguments_are_one_line(laptop):
    path = laptop.path.parent
    assert_one_line_error(run(path, "watch", "--position", "-1", check=False), "position -1")
    assert_one_line_error(run(path, "watch", "--position", "7", check=False), "past the last change")
    assert_one_line_error(run(path, "watch", "--setting", "a b", check=False), "setting prefix")


def test_a_change_prints_one_line_then_ctrl_c_exits_cleanly(laptop):
    laptop.prefs.set("editor.theme", "dark")
    proc = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(laptop.path.parent), "watch",
                             "--position", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.endswith("editor.theme: None -> dark (confidence 1.0) by laptop [pref.set]\n"), line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert proc.stderr.read() == ""
