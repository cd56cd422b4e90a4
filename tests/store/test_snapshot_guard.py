"""A device that holds history never lets a snapshot move it past positions it cannot account for
(docs/compaction.md, Bootstrap; docs/protocol.md section 8).

An enrolled member gone rogue signs snapshots of its own, against `compaction.bootstrap` on real stores
(against a real `agentlog serve` over 127.0.0.1: tests/system/test_snapshot_guard_daemons.py).
"""

from __future__ import annotations

import pytest

from agentlog import crypto
from agentlog.errors import SnapshotError
from agentlog.store import compaction
from agentlog.store.store import Store
from tests.helpers.family import Family
from tests.helpers.snapshots import forged, past


def state(store: Store) -> dict:
    """Everything a refused snapshot must leave as it was."""
    return {"heads": store.heads(), "truncated": store.truncated(), "base": store.meta("base"),
            "views": {n: v["digest"] for n, v in store.views().items()}, "count": store.count()}


# -- compaction.bootstrap on real stores ---------------------------------------------------------------

@pytest.fixture
def family(tmp_path):
    """Laptop, phone and hub, each holding what the others wrote."""
    f = Family(tmp_path)
    f.hub()                               # the member gone rogue in these tests
    for i in range(5):
        f.laptop.prefs.observe("ui.theme", f"v{i}")
        f.phone.prefs.observe("ui.font", f"f{i}")
    f.meet()
    yield f
    f.close()


def test_a_snapshot_never_moves_this_devices_own_chain(family):
    f = family
    mine = past(f.laptop, f.laptop.device, 3)
    bundle = forged(f.phone, {f.laptop.device: mine}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match="own log to seq .* past its head"):
        compaction.bootstrap(f.laptop, bundle, {f.laptop.device: mine[:2]})     # even if the peer says it dropped them
    assert state(f.laptop) == before


def test_a_snapshot_past_a_head_the_peer_did_not_truncate_is_refused(family):
    f = family
    bundle = forged(f._hub, {f.phone.device: past(f.laptop, f.phone.device, 3)}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match="has not dropped the events in between"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


def test_a_snapshot_naming_another_event_at_a_held_position_is_refused(family):
    f = family
    h = f.laptop.heads()[f.phone.device]
    bundle = forged(f._hub, {f.phone.device: (h.epoch, h.seq - 1, crypto.blake2b256(b"other"))},
                    f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"another event of {f.phone.device.hex()[:16]} at seq {h.seq - 1}"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


def test_a_snapshot_older_than_what_this_device_compacted_is_refused(family):
    f = family
    for store in (f.laptop, f.phone, f._hub):
        store.prefs.observe("ui.lang", "en")           # each acknowledges what the others wrote before
    f.meet()
    compaction.compact(f.laptop, now_ms=f.now)
    author, cut = sorted(f.laptop.truncated().items())[0]
    bundle = forged(f._hub, {}, f.laptop.roster().to_bytes())
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"covers {author.hex()[:16]} to seq 0, below seq {cut.seq}, which this"):
        compaction.bootstrap(f.laptop, bundle, {})
    assert state(f.laptop) == before


def test_a_snapshot_short_of_the_peers_truncation_points_is_refused_before_anything_changes(family):
    f = family
    rogue = f._hub.device
    bundle = forged(f._hub, {}, f.laptop.roster().to_bytes())        # its views wiped, covering nothing
    before = state(f.laptop)
    with pytest.raises(SnapshotError, match=f"does not reach the peer's truncation point of {rogue.hex()[:16]}"):
        compaction.bootstrap(f.laptop, bundle, {rogue: (0, 50)})
    assert state(f.laptop) == before
