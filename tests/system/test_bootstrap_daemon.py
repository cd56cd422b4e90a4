"""Bootstrap through the real commands: `agentlog serve` daemons (subprocesses on 127.0.0.1, stopped by PID)
and `agentlog sync` start new devices from a compacted device's snapshot, then replicate live."""

from __future__ import annotations

import json

from agentlog.log import payloads
from agentlog.store import devices, home
from tests.helpers.daemons import agentlog, observe, provision, snapshot, wait_converged
from tests.helpers.sync import sync


def test_serve_and_sync_start_new_devices_from_a_compacted_device(tmp_path, daemons):
    homes = provision(tmp_path, "laptop", "phone")
    observe(homes["laptop"], 60, tag="laptop")
    with home.open_home(homes["laptop"]) as laptop, home.open_home(homes["phone"]) as phone:
        sync(laptop, phone)
        phone.append_many([payloads.Observation(setting="test.phone", value=f"p{i}") for i in range(20)])
        sync(phone, laptop)                      # the phone's clock acknowledges all the laptop wrote
    compacted = json.loads(agentlog(homes["laptop"], "compact", "--json").stdout)
    assert compacted["dropped"] >= 80
    with home.open_home(homes["laptop"]) as laptop:
        for name in ("hub", "tablet"):
            with home.create(tmp_path / name, name) as store:
                devices.join(store, devices.enroll(laptop, store.device, name))
    laptop = daemons(homes["laptop"])
    hub = daemons(tmp_path / "hub", listen=False, peers=(laptop.address,))
    hub.wait_log(lambda e: e.get("event") == "bootstrapped from the peer's snapshot", "the bootstrap")
    held = wait_converged(homes["laptop"], tmp_path / "hub")
    assert held["count"] < 10
    observe(tmp_path / "hub", 3, tag="hub")                     # live push from the bootstrapped device
    wait_converged(homes["laptop"], tmp_path / "hub", count=held["count"] + 3)

    done = agentlog(tmp_path / "tablet", "sync", laptop.address, "--json")
    doc = json.loads(done.stdout)
    assert doc["bootstrapped"] is True and doc["peer"] == "laptop" and doc["events"] < 10
    assert done.stderr == ""                                   # no progress when piped
    final = wait_converged(homes["laptop"], tmp_path / "hub", tmp_path / "tablet")
    assert final["count"] == snapshot(tmp_path / "tablet")["count"] == held["count"] + 3
