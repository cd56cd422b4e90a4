"""Carry mode over real trio sockets on 127.0.0.1: a speaker that carries only what it reads takes `health`
header-only, relays headers only, and after a grant fetches the scope's past from a peer in the same session."""

from __future__ import annotations

import pytest

from agentlog.errors import NotFoundError
from agentlog.log.kinds import is_sealed_scope
from agentlog.store.verify import verify_store
from agentlog.sync.messages import Want
from tests.helpers.links import Link
from tests.helpers.loopback import sync_over_socket
from tests.helpers.scoped import files_holding, health_home

CANARY = "CANARY-5ync-c4rry-glucose"


@pytest.fixture
def home(tmp_path):
    with health_home(tmp_path) as h:
        yield h


def test_a_readable_speaker_relays_headers_and_fetches_the_past_after_a_grant(home):
    speaker, phone, laptop = home.speaker, home.phone, home.laptop
    speaker.set_carry("readable")
    entry = phone.memory.put(f"{CANARY} fasting 5.4", scope="health")
    phone.prefs.observe("glucose", CANARY, scope="health")
    sealed = [e for e in phone.events(phone.device) if is_sealed_scope(e.header.scope)]

    sync_over_socket(phone, speaker)
    assert speaker.frontier() == phone.frontier()
    assert speaker.uncarried_counts() == {"health": 2} and speaker.withheld_count() == 0
    for e in sealed:
        assert files_holding(home.tmp / "speaker", e.payload[-24:]) == []

    # The laptop takes the phone's events from the speaker: headers only, which it asks for and the speaker lacks.
    sync_over_socket(laptop, speaker)
    assert laptop.frontier() == phone.frontier() and laptop.withheld_count() == 2
    sync_over_socket(laptop, phone)                   # the laptop asks the phone, which has them
    assert laptop.withheld_count() == 0 and laptop.memory.get(entry).content.startswith(CANARY)

    laptop.scopes.grant("health", ["speaker"])
    with pytest.raises(NotFoundError):
        speaker.memory.get(entry)
    sync_over_socket(speaker, laptop)                 # the grant arrives; the speaker asks for the past at once
    assert speaker.uncarried_counts() == {} and speaker.withheld_count() == 0
    assert speaker.memory.get(entry).content.startswith(CANARY)
    assert speaker.prefs.get("glucose").value == CANARY
    for store in (laptop, phone, speaker):
        report = verify_store(store)
        assert report.ok and report.uncarried == 0, (store.name, report.problems, report.withheld)


def test_a_stored_grant_has_the_connection_ask_for_the_past_without_waiting_for_a_heartbeat(home):
    """Sans-IO, no clock moving: the batch holding the grant leaves payloads wanted, and the connection that
    stored it asks its peer for them at once; the peer's answer fills and folds them."""
    speaker, laptop = home.speaker, home.laptop
    speaker.set_carry("readable")
    entry = home.phone.memory.put(f"{CANARY} after lunch", scope="health")
    home.meet()
    [put] = [e for e in home.phone.events(home.phone.device) if e.header.scope == "health"]
    assert speaker.uncarried_counts() == {"health": 1}
    laptop.scopes.grant("health", ["speaker"])
    link = Link(speaker, laptop)
    link.start()
    link.run()
    wants = [m for who, m in link.sent if who == "a" and isinstance(m, Want) and m.payloads]
    assert [w.payloads for w in wants] == [((home.phone.device, 0, put.header.seq, put.header.seq),)]
    assert link.a.state == link.b.state == "live" and not link.closed
    assert speaker.withheld_count() == 0 and speaker.memory.get(entry).content.startswith(CANARY)

