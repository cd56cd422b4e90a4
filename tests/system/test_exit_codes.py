"""Exit codes a script can use, the same for every command (README, "Exit codes"):
0 success, 1 a check found problems, 2 a usage mistake or bad input, 3 a peer problem, 4 not found."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.daemons import Daemon, agentlog, closed_port, end_all, provision


def _tamper(home_dir) -> None:
    """Flip a bit of an observation's value in the store file, so its payload hash no longer matches."""
    data = home_dir / "store" / "data.mdb"
    raw = bytearray(data.read_bytes())
    at = raw.find(b"dark-and-unique-value")
    assert at >= 0
    while at >= 0:
        raw[at] ^= 0x20
        at = raw.find(b"dark-and-unique-value", at + 1)
    data.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two devices of one group, a listening daemon on laptop, and a stranger device of another group."""
    root = tmp_path_factory.mktemp("exit")
    homes = provision(root, "laptop", "phone")
    stranger = root / "stranger"
    agentlog(stranger, "init", "--name", "stranger")
    memory = agentlog(stranger, "memory", "put", "written after the group's first event").stdout.strip()
    tampered = root / "tampered"
    agentlog(tampered, "init", "--name", "tampered")
    agentlog(tampered, "observe", "theme", "dark-and-unique-value")
    _tamper(tampered)
    registry: list[Daemon] = []
    laptop = Daemon(homes["laptop"], registry=registry).start()
    yield {"phone": homes["phone"], "stranger": stranger, "tampered": tampered, "nohome": root / "nohome",
           "laptop": laptop.address, "memory": memory}
    end_all(registry)


CASES = [
    (0, "phone", ("status",)),
    (1, "tampered", ("verify",)),
    (2, "phone", ("status", "--jsno")),
    (2, "phone", ("observe", "theme", "dark", "--weight", "0")),
    (2, "phone", ("sync", "127.0.0.1:notaport")),
    (3, "phone", ("sync", "127.0.0.1:{closed}")),
    (3, "stranger", ("sync", "{laptop}")),
    (4, "phone", ("memory", "get", "0123456789abcdef")),
    (4, "nohome", ("status",)),
    (4, "phone", ("devices", "revoke", "nosuch")),
    (4, "stranger", ("replay", "--at", "stranger:999")),
    (4, "phone", ("replay", "--setting", "no.such.setting")),
    (4, "stranger", ("replay", "--memory", "{memory}", "--at", "stranger:1")),
]


@pytest.mark.parametrize("code, who, args", CASES, ids=[f"{c} {w}: {' '.join(a)}" for c, w, a in CASES])
def test_exit_code(world, code, who, args):
    args = tuple(a.format(closed=closed_port(), laptop=world["laptop"], memory=world["memory"]) for a in args)
    proc = agentlog(world[who], *args, check=False)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if code >= 2:
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("agentlog: error: "), proc.stderr


def test_a_bad_snapshot_from_the_peer_during_sync_is_a_peer_problem(world):
    """A SnapshotError out of `agentlog sync` (the peer's snapshot did not hold) exits 3, like any peer problem."""
    code = textwrap.dedent(f"""
        import sys
        from agentlog.errors import SnapshotError
        from agentlog.sync import replicator

        async def bad_snapshot(*args, **kwargs):
            raise SnapshotError("snapshot signature does not verify")

        replicator.sync_once = bad_snapshot
        from agentlog.cli.main import main
        sys.exit(main(["--home", {str(world["phone"])!r}, "sync", {world["laptop"]!r}]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "snapshot signature does not verify" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("agentlog: error: "), proc.stderr
