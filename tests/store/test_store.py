"""The LMDB store: map growth, several processes on one home, one-transaction appends,
and the roster folding to the same state whatever order events arrive in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agentlog import crypto
from agentlog.errors import CausalGapError, InvalidValueError, SizeLimitError, StoreError, UsageError
from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.sync import sync


def test_store_grows_its_map_instead_of_failing(tmp_path, laptop):
    laptop.close()
    store = Store(tmp_path / "laptop" / "store", home.open_home(tmp_path / "laptop").key, map_size=256 * 1024)
    before = store.map_size()
    for _i in range(20):
        store.append_many([payloads.Observation(setting=f"s{j}", value="x" * 200) for j in range(100)])
    assert store.map_size() > before
    assert store.count() == 2001 and verify_store(store).ok
    store.close()


def test_preference_view_survives_the_retries_of_a_growing_map(tmp_path, laptop):
    """A write that finds the map full is aborted and run again: the view folded in the retry (which
    may reuse states parsed in the aborted one) is the one a replay gives."""
    laptop.close()
    store = Store(tmp_path / "laptop" / "store", home.open_home(tmp_path / "laptop").key, map_size=256 * 1024)
    before = store.map_size()
    for i in range(20):
        store.append_many([payloads.Observation(setting=f"s{j % 7}", value=f"v{(i + j) % 3}" + "x" * 150,
                                                context=(("n", str(j % 2)),)) for j in range(100)])
    assert store.map_size() > before
    folded = store.views()["pref"]["digest"]
    store.rebuild_views()
    assert store.views()["pref"]["digest"] == folded
    store.close()


def test_large_payload_round_trips_and_oversized_is_refused(laptop):
    choices = tuple(f"{i}" + "x" * 1000 for i in range(64))
    eid = laptop.append(payloads.PrefConfig(setting="s", value_type="choice", choices=choices))
    assert len(laptop.get(eid).payload) > 64_000
    assert payloads.decode("pref.config", laptop.get(eid).payload).choices == choices
    with pytest.raises(InvalidValueError, match="content is 2000000 bytes, over the limit of 16384"):
        laptop.append(payloads.MemoryPut(entry=b"e" * 16, type="fact", content="x" * 2_000_000))
    with pytest.raises(SizeLimitError):
        laptop.append(payloads.Snapshot(views=(payloads.ViewState(name="v", version=1, digest=b"d" * 32,
                                                                  state=b"s" * 2_000_000),)))
    assert verify_store(laptop).ok


def test_batch_append_is_one_chain(laptop):
    ids = laptop.append_many([payloads.Observation(setting="s", value=str(i)) for i in range(250)])
    events = list(laptop.events(laptop.device))
    assert [e.id for e in events[1:]] == ids
    assert all(b.header.prev == a.id for a, b in zip(events, events[1:]))
    assert laptop.heads()[laptop.device].seq == 251


def test_revoked_device_cannot_append(tmp_path, laptop, phone):
    devices.revoke(laptop, "phone")
    sync(laptop, phone)
    with pytest.raises(UsageError, match="revoked"):
        phone.append(payloads.Observation(setting="s", value="v"))


WRITER = textwrap.dedent("""
    import sys
    from agentlog.store import home
    from agentlog.log import payloads
    store = home.open_home(sys.argv[1])
    for i in range(int(sys.argv[2])):
        store.append(payloads.Observation(setting="s", value=f"{sys.argv[3]}-{i}"))
    store.close()
""")


def test_several_processes_append_to_one_home(tmp_path, laptop):
    """The CLI, an agent and the daemon may write at once; LMDB serializes them safely."""
    laptop.close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "laptop"), "150", f"w{n}"]) for n in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    store = home.open_home(tmp_path / "laptop")
    assert store.count() == 451 and store.heads()[store.device].seq == 451
    assert verify_store(store).ok
    store.close()


def test_a_read_begun_after_last_txnid_sees_that_commit_while_another_process_writes(tmp_path, laptop):
    """A watcher takes a commit as seen once last_txnid() names it, then reads what changed: that read must hold
    the commit. LMDB's environment info names a commit while its metadata page is still being written (synced),
    before readers get it; the relay's publish loop woken then found nothing new, and waited (a lost wake-up).
    On tmpfs that window is too short to catch."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "laptop"), "150", "w"])
    polls, ahead = 0, []
    try:
        while writer.poll() is None:
            named = laptop.last_txnid()
            seen = laptop.read(lambda txn: txn.id())
            polls += 1
            if seen < named:
                ahead.append((named, seen))
    finally:
        assert writer.wait(timeout=60) == 0
    assert polls > 100 and ahead == [], f"{len(ahead)} of {polls} reads began before the commit last_txnid named"
    assert laptop.heads()[laptop.device].seq == 151


def test_event_whose_causal_context_is_missing_waits(tmp_path, laptop, phone):
    """The phone's first event follows the laptop's seq 3 (the hub's enrolment): a
    device holding only the laptop's seqs 1-2 must not accept it yet."""
    hub = home.create(tmp_path / "hub", "hub")
    devices.join(hub, devices.enroll(laptop, hub.device, "hub"))
    sync(laptop, phone)
    eid = phone.append(payloads.Observation(setting="s", value="v"))
    genesis, enrol_phone = list(laptop.events())[:2]
    hub.ingest([(genesis.record, genesis.payload), (enrol_phone.record, enrol_phone.payload)])
    with pytest.raises(CausalGapError):
        hub.ingest([(phone.get(eid).record, phone.get(eid).payload)])
    sync(laptop, hub)
    assert hub.ingest([(phone.get(eid).record, phone.get(eid).payload)]).accepted == 1
    assert verify_store(hub).ok
    hub.close()


def test_roster_is_the_same_whatever_the_arrival_order(tmp_path, laptop, phone):
    """A revocation written concurrently with another device's enrolment of the same key."""
    tablet = crypto.DeviceKey.generate().public
    devices.enroll(laptop, tablet, "tablet")
    sync(laptop, phone)
    phone.append(payloads.DeviceRevoke(device=tablet, until_seq=0, reason="lost"))
    laptop.append(payloads.DeviceEnroll(device=tablet, name="tablet-again"))
    sync(phone, laptop)
    sync(laptop, phone)
    assert laptop.roster().to_bytes() == phone.roster().to_bytes()
    assert not laptop.roster().members[tablet].active


def test_roster_view_is_rebuilt_by_replay_when_its_version_changes(tmp_path, laptop, phone):
    devices.revoke(laptop, "phone")
    before = laptop.roster().to_bytes()
    with laptop.raw_txn(write=True) as txn:
        txn.put(b"version", b"\x00\x00\x00\x00", db=laptop.db("views.roster"))
        txn.put(b"state", b'{"founder":null,"members":[]}', db=laptop.db("views.roster"))
    laptop.close()
    reopened = home.open_home(tmp_path / "laptop")
    assert reopened.roster().to_bytes() == before
    reopened.close()


def test_store_of_another_layout_is_refused(tmp_path, laptop):
    with laptop.raw_txn(write=True) as txn:
        txn.put(b"layout", (99).to_bytes(4, "big"), db=laptop.db("meta"))
    laptop.close()
    with pytest.raises(StoreError, match="layout 99"):
        home.open_home(tmp_path / "laptop")
