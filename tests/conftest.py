"""Shared fixtures: real homes with real LMDB stores in pytest's tmp_path."""

from __future__ import annotations

import pytest

from agentlog.store import devices, home
from agentlog.store.store import Store


def sync(src: Store, dst: Store):
    """Copy every event `dst` lacks from `src`, in causal order (what replication will do over a socket)."""
    return dst.ingest([(e.record, e.payload) for e in src.events_after(dst.frontier())])


@pytest.fixture
def laptop(tmp_path) -> Store:
    store = home.create(tmp_path / "laptop", "laptop")
    store.create_group("laptop")
    yield store
    store.close()


@pytest.fixture
def phone(tmp_path, laptop) -> Store:
    """A second device enrolled by the laptop, joined by token and holding the laptop's log."""
    store = home.create(tmp_path / "phone", "phone")
    devices.join(store, devices.enroll(laptop, store.device, "phone"))
    sync(laptop, store)
    yield store
    store.close()
