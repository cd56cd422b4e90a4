"""Running the agentlog command in a subprocess, and what a user mistake must look like: one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(home, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"agentlog {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def assert_one_line_error(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentlog: error: "), proc.stderr
    for word in words:
        assert word in lines[0]


def stderr_on_a_terminal(home, *args) -> bytes:
    """Run agentlog with stderr on a pseudo-terminal; what it wrote there."""
    import pty

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(home), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child_fd)
    os.close(child_fd)
    assert proc.wait(timeout=60) == 0
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    return seen


def out(home, *args) -> str:
    """A command's standard output, stripped; the command must succeed."""
    return run(home, *args).stdout.strip()


def as_json(home, *args):
    """A reading command's --json output, parsed."""
    return json.loads(out(home, *args, "--json"))
