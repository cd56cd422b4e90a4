"""Inside a peer's run (every_signature False), an event that simply continues its author's chain is accepted on a
shorter path (agentlog.store.ingest.TxnLog.follows): every defect that path could miss is still refused, with the
error the full checks give, and the store is left as it was."""

from __future__ import annotations

import pytest

from agentlog import crypto
from agentlog.errors import NotEnrolledError
from agentlog.log.event import ClockEntry
from agentlog.log.validate import LAMPORT_STEP
from agentlog.store import devices
from tests.helpers.events import phone_events, resign, store_digest
from tests.helpers.sync import sync


def _defects(h):
    return {
        "lamport not above": {"lamport": h.lamport - 1},
        "lamport too far": {"lamport": h.lamport + LAMPORT_STEP + 1},
        "prev": {"prev": b"\x07" * crypto.ID_LEN},
        "gap": {"seq": h.seq + 1},
        "group": {"group": b"\x05" * crypto.ID_LEN},
        "later epoch": {"epoch": h.epoch + 1},
        "clock not held": {"clock": (ClockEntry(b"\x09" * crypto.KEY_LEN, 0, 3),)},
    }


DEFECTS = ("lamport not above", "lamport too far", "prev", "gap", "group", "later epoch", "clock not held")


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_defect_at_the_end_of_a_run_is_refused_as_the_full_checks_refuse_it(laptop, phone, tablet, defect):
    sync(laptop, tablet)
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 6)
    last = events[-1]
    bad = resign(last, phone.key, **_defects(last.header)[defect])
    batch = [(e.record, e.payload) for e in events[:-1]] + [(bad.record, bad.payload)]
    errors = []
    for store, every in ((laptop, True), (tablet, False)):
        before = store_digest(store)
        with pytest.raises(Exception) as caught:
            store.ingest(batch, every_signature=every)
        assert store_digest(store) == before
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1])
    assert str(errors[0]) == str(errors[1])


def test_a_revoked_authors_later_events_are_refused_inside_a_run(laptop, phone):
    events = phone.events_after(laptop.frontier()) + phone_events(phone, 4)
    laptop.ingest([(e.record, e.payload) for e in events[:-3]], every_signature=False)
    devices.revoke(laptop, "phone")
    before = store_digest(laptop)
    with pytest.raises(NotEnrolledError, match="revoked after seq"):
        laptop.ingest([(e.record, e.payload) for e in events[-3:]], every_signature=False)
    assert store_digest(laptop) == before
