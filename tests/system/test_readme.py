"""The README's quickstart runs verbatim on a fresh machine: its marked `sh` blocks, in order, in one bash.

A block belongs to the quickstart when the line `<!-- quickstart -->` stands right above its
opening fence. The script runs with HOME, TMPDIR and the working directory in tmp_path, the
venv's bin first on PATH (so `agentlog` is the console script a user would have) and
AGENTLOG_HOME unset, under `set -e`: every command must succeed. The bash runs in its own
process group, killed afterwards, so a failure never leaves `agentlog serve` behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

ROOT = REPO
README = ROOT / "README.md"
MARKER = "<!-- quickstart -->"
PORT = 47110                       # the quickstart's `serve --listen 127.0.0.1:47110`
TIMEOUT = 120


def blocks(text: str, language: str, marker: str | None = MARKER) -> list[str]:
    """The bodies of the fenced blocks of `language`, only those right under `marker` when one is given."""
    above = rf"^{re.escape(marker)}\n" if marker else "^"
    return re.findall(rf"{above}```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def _env(tmp_path: Path) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "agentlog").is_file(), f"no agentlog console script beside {sys.executable}: run `make install`"
    env = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=_env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the quickstart did not finish within {TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)         # a daemon left behind by a failed step
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _port_free(port: int) -> bool:
    """Whether `serve` can listen on the port (it sets SO_REUSEADDR, so TIME_WAIT from a last run is fine)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_quickstart_runs_verbatim(tmp_path):
    text = README.read_text()
    quickstart = blocks(text, "sh")
    assert len(quickstart) == text.count(MARKER) >= 4, "every quickstart marker must sit right above a ```sh fence"
    assert text.index("## Quickstart") < text.index(MARKER)
    assert sum(len(b.splitlines()) for b in quickstart) <= 40, "keep the quickstart short"
    assert f"127.0.0.1:{PORT}" in "".join(quickstart)
    assert _port_free(PORT), f"port {PORT}, which the README quickstart listens on, is in use on this machine"

    done = _run("".join(quickstart), tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    for expected in ("created group ", "joined group ", "ui.font = large  (learned",
                     "      4.000  correction   large", "ui.theme = dark  (learned",
                     "ui.theme = light  (override", "synced with laptop at 127.0.0.1:47110",
                     "Anna's birthday is 3 May", "conflict in content: 2 standing values"):
        assert expected in out, f"{expected!r} not in the quickstart's output:\n{out}"
    # Both status reports show the same view digests: the devices converged.
    digests = re.findall(r"^view (\w+) v\d+ digest (\w+)$", out, re.MULTILINE)
    assert len(digests) == 6 and digests[:3] == digests[3:], out
    assert re.search(r"^peer laptop .* partitioned .* we lack 0, they lack 0", out, re.MULTILINE), out
    # The scratch directory holds both homes and a clean stop of the daemon.
    [serve_log] = tmp_path.glob("*/serve.log")                # in the quickstart's `mktemp -d`
    scratch = serve_log.parent
    log = [json.loads(line) for line in serve_log.read_text().splitlines()]
    assert log[-1]["event"] == "stopped", log
    laptop = subprocess.run(["agentlog", "--home", str(scratch / "laptop"), "verify"], env=_env(tmp_path),
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert laptop.returncode == 0 and "0 problems" in laptop.stderr, laptop.stderr


def test_python_example_runs(tmp_path):
    """The README's Python example, against the default home that `agentlog init` makes."""
    [example] = blocks(README.read_text(), "python", marker=None)
    made = _run("agentlog init --name laptop", tmp_path)
    assert made.returncode == 0, made.stderr
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("large learned 0.8 False\n"), done.stdout
    assert "prefers window seats" in done.stdout and done.stdout.endswith("0 conflicts\n"), done.stdout
