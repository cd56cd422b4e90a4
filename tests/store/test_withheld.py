"""Events stored without their payload (a relaying peer withheld it): shown by `status` and `verify`,
asked for from every peer, and filled in when a peer supplies it, leaving views equal to a device that
had the payload from the start."""

from __future__ import annotations

import json

import pytest

from agentlog.errors import PayloadHashError
from agentlog.log import payloads
from agentlog.log.event import peek_record
from agentlog.log.validate import ROSTER_KINDS
from agentlog.store.layout import seq_runs
from agentlog.store.verify import verify_store
from agentlog.sync.messages import WireEvent
from agentlog.sync.peer_log import StoreLog
from tests.helpers.daemons import agentlog
from tests.helpers.events import store_digest
from tests.helpers.loopback import sync_over_socket
from tests.helpers.sync import sync


def views(store) -> dict:
    return {name: v["digest"] for name, v in store.views().items()}


def write(store, n: int = 3) -> None:
    """Events of every view's kinds: observations, a preference, a memory."""
    store.append_many([payloads.Observation(setting="theme", value=f"v{i}") for i in range(n)])
    store.append(payloads.PrefSet(setting="editor", value="vim"))
    store.memory.put("the build needs make install first", tags=("build",))


def missing_payloads(store) -> int:
    with store.raw_txn() as txn:
        return txn.stat(store.db("withheld"))["entries"]


def stripped(events) -> list:
    return [(e.record, None if e.header.kind not in ROSTER_KINDS else e.payload) for e in events]


def test_a_withheld_payload_is_filled_when_a_peer_supplies_it(laptop, phone, tablet):
    write(phone)
    sync(phone, tablet)                                   # the tablet had every payload from the start
    sync(laptop, tablet)
    missing = phone.events_after(laptop.frontier())
    laptop.ingest(stripped(missing))
    n = sum(e.header.kind not in ROSTER_KINDS for e in missing)
    assert laptop.withheld_count() == n and len(laptop.withheld()) == 1
    assert views(laptop) != views(tablet)
    report = verify_store(laptop)
    assert not report.ok and not report.problems and len(report.withheld) == 1
    assert "held without the payload" in report.withheld[0].what

    result = laptop.ingest([(e.record, e.payload) for e in missing])
    assert (result.accepted, result.filled) == (0, n)
    assert laptop.withheld_count() == 0 and laptop.withheld() == []
    assert views(laptop) == views(tablet)
    assert verify_store(laptop).ok
    laptop.rebuild_views()
    assert views(laptop) == views(tablet)


def test_a_payload_that_does_not_match_is_refused_and_changes_nothing(laptop, phone):
    write(phone, 1)
    missing = phone.events_after(laptop.frontier())
    laptop.ingest(stripped(missing))
    before = store_digest(laptop)
    target = next(e for e in missing if e.header.kind not in ROSTER_KINDS)
    with pytest.raises(PayloadHashError):
        laptop.ingest([(target.record, target.payload + b"x")])
    assert store_digest(laptop) == before


def test_one_batch_may_carry_an_event_withheld_then_whole(laptop, phone, tablet):
    write(phone, 2)
    sync(phone, tablet)
    sync(laptop, tablet)
    missing = phone.events_after(laptop.frontier())
    result = laptop.ingest(stripped(missing) + [(e.record, e.payload) for e in missing])
    assert result.filled == sum(e.header.kind not in ROSTER_KINDS for e in missing)
    assert laptop.withheld_count() == 0 and views(laptop) == views(tablet)


def test_a_stripping_relay_is_healed_over_real_sockets(laptop, phone, tablet, monkeypatch):
    """The hub relays the phone's events with their payloads withheld; the laptop takes them from it,
    `verify` and `status` report the gap, and the laptop's next sync with the phone asks for the
    payloads and fills them: views equal the tablet's, which had them from the start."""
    hub = tablet
    write(phone)
    sync(phone, hub)
    honest = StoreLog.read

    def read(self, author, epoch, lo, hi, limit):
        got = honest(self, author, epoch, lo, hi, limit)
        if self.store is not hub:
            return got
        return [(lamport, WireEvent(e.record, None if peek_record(e.record)[2] not in ROSTER_KINDS else e.payload))
                for lamport, e in got]
    monkeypatch.setattr(StoreLog, "read", read)

    sync_over_socket(laptop, hub)
    n = missing_payloads(laptop)
    assert n > 0 and laptop.frontier() == hub.frontier()
    assert views(laptop) != views(hub)
    checked = agentlog(laptop.path.parent, "verify", "--json", check=False)
    assert checked.returncode != 0 and json.loads(checked.stdout)["withheld"]
    assert json.loads(agentlog(laptop.path.parent, "status", "--json").stdout)["payloads_missing"] == n

    sync_over_socket(laptop, phone)
    assert missing_payloads(laptop) == 0
    assert views(laptop) == views(hub) == views(phone)
    checked = agentlog(laptop.path.parent, "verify", "--json", check=False)
    assert checked.returncode == 0, checked.stdout
    assert json.loads(agentlog(laptop.path.parent, "status", "--json").stdout)["payloads_missing"] == 0


def test_positions_group_into_runs_of_consecutive_seqs():
    a, b = b"a" * 32, b"b" * 32
    positions = [(a, 0, 1), (a, 0, 2), (a, 0, 4), (a, 1, 5), (b, 0, 1), (b, 0, 2)]
    assert seq_runs(positions) == [(a, 0, 1, 2), (a, 0, 4, 4), (a, 1, 5, 5), (b, 0, 1, 2)]
    assert seq_runs(positions, limit=2) == [(a, 0, 1, 2), (a, 0, 4, 4)]
