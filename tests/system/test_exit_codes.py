"""Exit codes a script can use, the same for every command (README, "Exit codes"):
0 success, 1 a check found problems, 2 a usage mistake or bad input, 3 a peer problem, 4 not found."""

from __future__ import annotations

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
    tampered = root / "tampered"
    agentlog(tampered, "init", "--name", "tampered")
    agentlog(tampered, "observe", "theme", "dark-and-unique-value")
    _tamper(tampered)
    registry: list[Daemon] = []
    laptop = Daemon(homes["laptop"], registry=registry).start()
    yield {"phone": homes["phone"], "stranger": stranger, "tampered": tampered, "nohome": root / "nohome",
           "laptop": laptop.address}
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
]


@pytest.mark.parametrize("code, who, args", CASES, ids=[f"{c} {w}: {' '.join(a)}" for c, w, a in CASES])
def test_exit_code(world, code, who, args):
    args = tuple(a.format(closed=closed_port(), laptop=world["laptop"]) for a in args)
    proc = agentlog(world[who], *args, check=False)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if code >= 2:
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("agentlog: error: "), proc.stderr
