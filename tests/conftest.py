"""Shared fixtures: real homes with real LMDB stores in pytest's tmp_path, a family of devices on a simulated
clock, and real daemons; everything under tests/system/ is marked `system`."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentlog.store import devices, home
from agentlog.store.store import Store
from tests.helpers.daemons import Daemon, end_all
from tests.helpers.family import Family
from tests.helpers.nats import NatsServer
from tests.helpers.sync import sync

SYSTEM = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/system/ `system` (real daemons, kill -9, the simulation, the browser).
    In a pytest-xdist worker, hand out the slow tests first, then the system ones, so that no long test is
    left to run alone at the end (a stable sort: every worker collects the same order, as xdist requires)."""
    for item in items:
        if SYSTEM in item.path.resolve().parents:
            item.add_marker(pytest.mark.system)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda it: (it.get_closest_marker("slow") is None, it.get_closest_marker("system") is None))


@pytest.fixture
def laptop(tmp_path) -> Store:
    store = home.create(tmp_path / "laptop", "laptop")
    store.create_group("laptop")
    yield store
    store.close()


def _enrolled(tmp_path, laptop, name: str) -> Store:
    """A device enrolled by the laptop, joined by token and holding the laptop's log."""
    store = home.create(tmp_path / name, name)
    devices.join(store, devices.enroll(laptop, store.device, name))
    sync(laptop, store)
    return store


@pytest.fixture
def phone(tmp_path, laptop) -> Store:
    """A second device enrolled by the laptop."""
    store = _enrolled(tmp_path, laptop, "phone")
    yield store
    store.close()


@pytest.fixture
def tablet(tmp_path, laptop) -> Store:
    """A third device enrolled by the laptop, like the phone."""
    store = _enrolled(tmp_path, laptop, "tablet")
    yield store
    store.close()


@pytest.fixture
def family(tmp_path):
    f = Family(tmp_path)
    yield f
    f.close()


@pytest.fixture
def daemons():
    """`daemons(home, ...)` starts a daemon; every one still running is killed (by PID) at teardown."""
    registry: list[Daemon] = []
    yield lambda home_dir, **options: Daemon(home_dir, registry=registry, **options).start()
    end_all(registry)


@pytest.fixture
def nats_server(tmp_path):
    """A real `nats-server -js` on a free port with its store under tmp_path, killed by PID at teardown."""
    server = NatsServer(tmp_path).start()
    yield server
    server.kill()
