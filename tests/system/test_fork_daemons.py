"""A device restored from a backup that writes before it syncs forks its log; with real `agentlog serve` daemons
the fork heals: every event of both branches reaches every device, and the device goes on in a new epoch."""

from __future__ import annotations

import json
import stat

import pytest

from agentlog.store import home
from tests.helpers.daemons import agentlog, observe, provision, status, wait_converged, wait_until

ENROLLED = {2: 2, 3: 3}          # devices in the group -> events before anyone writes


def check_healed(*homes) -> None:
    """Each home's `status --json` names the same one fork, healed in epoch 1 with both branch heads; each verifies."""
    forks = []
    for h in homes:
        doc = status(h)
        [fork] = doc["forks"]
        assert fork["healed"] and fork["healed"]["epoch"] == 1 and len(fork["heads"]) == 2, fork
        assert not doc["copied_keys"]
        forks.append(fork)
        agentlog(h, "verify")
    assert all(f == forks[0] for f in forks), forks


def restored(tmp_path, homes, phone_daemon) -> None:
    """Stop the phone's daemon, put its backup back in its home and write 20 events before it syncs."""
    phone_daemon.stop()
    done = json.loads(agentlog(homes["phone"], "restore", str(tmp_path / "backup"), "--force", "--json").stdout)
    assert done["restored_at"]["seq"] == 4
    observe(homes["phone"], 20, tag="after")


@pytest.mark.slow
def test_a_restored_phone_that_writes_before_it_syncs_heals_its_fork(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    laptop = daemons(homes["laptop"])
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address,))
    observe(homes["phone"], 4, tag="before")
    wait_converged(*homes.values(), count=ENROLLED[2] + 4)
    backup = json.loads(agentlog(homes["phone"], "backup", str(tmp_path / "backup"), "--json").stdout)
    assert backup["events"] == ENROLLED[2] + 4
    key_mode = (tmp_path / "backup" / home.KEY_FILE).stat().st_mode
    assert not key_mode & (stat.S_IRWXG | stat.S_IRWXO)

    observe(homes["phone"], 50, tag="lost")
    wait_converged(*homes.values(), count=ENROLLED[2] + 54)
    restored(tmp_path, homes, phone)
    phone.start()
    wait_converged(*homes.values(), count=ENROLLED[2] + 4 + 50 + 20 + 1)     # and the epoch.start
    check_healed(*homes.values())


@pytest.mark.slow
def test_a_fork_first_seen_by_a_third_device_heals_across_the_mesh(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone", "tablet")
    laptop = daemons(homes["laptop"])
    tablet = daemons(homes["tablet"], peers=(laptop.address,))
    phone = daemons(homes["phone"], listen=False, peers=(laptop.address, tablet.address))
    observe(homes["phone"], 4, tag="before")
    wait_converged(*homes.values(), count=ENROLLED[3] + 4)
    agentlog(homes["phone"], "backup", str(tmp_path / "backup"))
    tablet.stop()
    observe(homes["phone"], 50, tag="lost")                      # these reach the laptop only
    wait_converged(homes["phone"], homes["laptop"], count=ENROLLED[3] + 54)
    restored(tmp_path, homes, phone)

    alone = daemons(homes["tablet"])                              # the restored branch reaches the tablet first
    phone_to_tablet = daemons(homes["phone"], listen=False, peers=(alone.address,))
    wait_converged(homes["phone"], homes["tablet"], count=ENROLLED[3] + 24)
    phone_to_tablet.stop()
    alone.stop()
    daemons(homes["tablet"], peers=(laptop.address,))            # ... which finds the fork when it meets the laptop
    wait_until(lambda: status(homes["laptop"])["forks"], "the tablet tells the laptop of the fork")
    with home.open_home(homes["phone"]) as store:
        assert store.forks() == []                                # the phone has not seen it yet
    daemons(homes["phone"], listen=False, peers=(laptop.address,))
    wait_converged(*homes.values(), count=ENROLLED[3] + 4 + 50 + 20 + 1)
    check_healed(*homes.values())
