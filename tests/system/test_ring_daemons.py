"""Fresh devices connected only in a ring converge, as real `agentlog serve` daemons on 127.0.0.1 (the
receive-only rule that lets them: tests/sync/test_ring.py)."""

from __future__ import annotations

import pytest

from tests.helpers.daemons import Daemon, end_all, observe, provision, status, wait_until

RING = 8


@pytest.fixture
def registry():
    found: list[Daemon] = []
    yield found
    end_all(found)


def test_fresh_devices_in_a_ring_converge(tmp_path, registry):
    """The founder enrols every device, each joins by token and writes; then each daemon dials only its
    ring neighbour (the last one also the founder, closing the ring). All reach identical views."""
    names = [f"d{i}" for i in range(RING)]
    homes = provision(tmp_path, *names)
    for name in names:
        observe(homes[name], 1, tag=name)
    started: list[Daemon] = []
    for i, name in enumerate(names):
        peers = (started[-1].address,) if started else ()
        if i == RING - 1:
            peers += (started[0].address,)
        started.append(Daemon(homes[name], peers=peers, heartbeat=0.5, registry=registry).start())
    expected = 1 + (RING - 1) + RING                   # genesis, enrolments, one observation each

    def same():
        docs = [status(homes[name]) for name in names]
        digests = [{v: d["views"][v]["digest"] for v in d["views"]} for d in docs]
        return all(d["events"] == expected for d in docs) and all(x == digests[0] for x in digests)
    wait_until(same, "every device of the ring holding every event, with identical view digests", timeout=90)
    for daemon in started:
        assert daemon.running(), f"{daemon.name}'s daemon died"
