"""The scope reducer: who reads each sealed scope, its keys and epochs, the ingest rules, canonical bytes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog import crypto
from agentlog.errors import ScopeError
from agentlog.log.event import Header
from agentlog.log.payloads import GrantedKey, ScopeGrant, ScopeKey, SealedKey
from agentlog.log.roster import Member, Position, Roster
from agentlog.log.scopes import ScopeEvent, Scopes, fold_scope

A, B, C, D = (bytes([n]) * 32 for n in (1, 2, 3, 4))
STRANGER = bytes([9]) * 32


def box(device: bytes, n: int = 0) -> bytes:
    return bytes([device[0], n]) * 40


def key_event(author, lamport, readers, seq=None, scope="health", eid=None) -> ScopeEvent:
    eid = eid or crypto.blake2b256(b"%b %d %d %r" % (author, lamport, seq or lamport, scope.encode()))
    payload = ScopeKey(scope=scope, readers=tuple(SealedKey(device=d, box=box(d, lamport)) for d in readers))
    return ScopeEvent(lamport, author, 0, seq or lamport, eid, payload)


def grant_event(author, lamport, device, keys, seq=None, scope="health") -> ScopeEvent:
    eid = crypto.blake2b256(b"g %b %d" % (author, lamport))
    payload = ScopeGrant(scope=scope, device=device, keys=tuple(GrantedKey(key=k, box=box(device, 7)) for k in keys))
    return ScopeEvent(lamport, author, 0, seq or lamport, eid, payload)


def roster(*enrolled: bytes, revoked: dict | None = None) -> Roster:
    r = Roster(A)
    for d in enrolled:
        r.members[d] = Member(d, [(Position(A, 0, 1, b"e" * 32), d.hex()[:4])], (revoked or {}).get(d))
    return r


def folded(events, limits=None) -> Scopes:
    scopes = Scopes(limits)
    for e in events:
        scopes.add(e)
    return scopes


def test_create_grant_and_rotate():
    create = key_event(A, 1, [A])
    grant = grant_event(A, 2, B, [create.eid])
    rotate = key_event(B, 3, [B])
    state = folded([create, grant, rotate]).get("health")
    assert state.readers == {B}
    assert state.current == rotate.eid
    assert state.keys[create.eid].epoch == 1 and state.keys[rotate.eid].epoch == 2
    assert state.keys[create.eid].boxes == {A: box(A, 1), B: box(B, 7)}
    assert state.epoch == 2
    assert state.ignored == []


def test_events_by_non_readers_are_ignored():
    create = key_event(A, 1, [A])
    takeover = key_event(C, 2, [C])                    # C never read health
    sneaky = grant_event(C, 3, C, [create.eid])
    state = folded([create, takeover, sneaky]).get("health")
    assert state.readers == {A} and state.current == create.eid
    assert state.ignored == [takeover.eid, sneaky.eid]


def test_create_must_name_its_author():
    state = folded([key_event(A, 1, [B])]).get("health")
    assert state.current is None and state.readers == set()
    assert state.needs_new_key(roster(A, B))


def test_late_arrival_folds_in_its_place():
    create = key_event(A, 1, [A, B])
    revoke_b = key_event(A, 5, [A])
    rotate_by_b = key_event(B, 3, [A, B])              # concurrent, but lower lamport: applies before the revoke
    late = folded([create, revoke_b, rotate_by_b])
    assert late.get("health").current == revoke_b.eid
    assert late.get("health").keys[rotate_by_b.eid].epoch == 2
    assert late.to_bytes() == folded([create, rotate_by_b, revoke_b]).to_bytes()


def test_events_past_a_revocation_do_not_count():
    create = key_event(A, 1, [A, B])
    after = key_event(B, 9, [B], seq=9)
    scopes = folded([create, after], limits={B: 5})
    assert scopes.get("health").current == create.eid
    assert scopes.set_limits({}) and scopes.get("health").current == after.eid


def test_effective_readers_and_needs_new_key():
    create = key_event(A, 1, [A, B])
    state = folded([create]).get("health")
    assert not state.needs_new_key(roster(A, B))
    assert state.effective_readers(roster(A, B, revoked={B: 3})) == {A}
    assert state.needs_new_key(roster(A, B, revoked={B: 3}))          # B still holds the current key
    granted = folded([create, grant_event(A, 2, C, [])]).get("health")  # C added without the current key
    assert granted.needs_new_key(roster(A, B, C))


def test_boxes_for_a_device_cover_every_event_naming_it():
    create = key_event(A, 1, [A])
    grant = grant_event(A, 2, B, [create.eid])
    other = key_event(B, 3, [B], scope="topic:home")
    boxes = folded([create, grant, other]).boxes_for(B)
    assert boxes == {create.eid: ("health", box(B, 7)), other.eid: ("topic:home", box(B, 3))}


def test_bytes_round_trip():
    scopes = folded([key_event(A, 1, [A, B]), grant_event(B, 2, C, []), key_event(A, 4, [A], scope="x")],
                    limits={D: 2})
    again = Scopes.from_bytes(scopes.to_bytes())
    assert again.to_bytes() == scopes.to_bytes()
    assert again.get("health").readers == {A, B, C}


# -- the ingest rules ---------------------------------------------------------------------------------

def header(author, kind="scope.key", scope="user", codec="plain") -> Header:
    return Header(group=b"g" * 32, author=author, epoch=0, seq=4, prev=b"p" * 32, lamport=4, time_ms=1,
                  scope=scope, kind=kind, payload_hash=b"h" * 32, payload_len=1, payload_codec=codec)


def check(scopes, h, payload, r=None):
    scopes.check(h, payload, r or roster(A, B, C))


def test_refuses_a_key_sealed_to_a_device_not_enrolled():
    with pytest.raises(ScopeError, match="not enrolled"):
        check(Scopes(), header(A), key_event(A, 1, [A, STRANGER]).payload)
    with pytest.raises(ScopeError, match="not enrolled"):
        check(folded([key_event(A, 1, [A])]), header(A, "scope.grant"), grant_event(A, 2, STRANGER, []).payload)


def test_refuses_scope_events_by_a_device_never_a_reader():
    scopes = folded([key_event(A, 1, [A, B])])
    with pytest.raises(ScopeError, match="never a reader"):
        check(scopes, header(C), key_event(C, 2, [A]).payload)
    with pytest.raises(ScopeError, match="never its reader"):
        check(scopes, header(C, "scope.grant"), grant_event(C, 2, C, []).payload)
    with pytest.raises(ScopeError, match="no scope.key created"):
        check(Scopes(), header(A, "scope.grant"), grant_event(A, 2, B, []).payload)
    check(scopes, header(C), key_event(C, 2, [C, A]).payload)      # a concurrent create: the reducer decides
    check(scopes, header(B), key_event(B, 2, [A]).payload)         # a reader rotating itself out


def test_refuses_scope_events_outside_user_or_sealed():
    payload = key_event(A, 1, [A]).payload
    with pytest.raises(ScopeError, match="scope user"):
        check(Scopes(), header(A, scope="health"), payload)
    with pytest.raises(ScopeError, match="plain payload"):
        check(Scopes(), header(A, codec="sealed"), payload)
    with pytest.raises(ScopeError, match="without its payload"):
        check(Scopes(), header(A), None)


def test_refuses_sealed_events_by_a_device_never_a_reader():
    scopes = folded([key_event(A, 1, [A, B])])
    check(scopes, header(B, "memory.put", "health", "sealed"), None)
    with pytest.raises(ScopeError, match="never its reader"):
        check(scopes, header(C, "memory.put", "health", "sealed"), None)
    with pytest.raises(ScopeError, match="never its reader"):
        check(scopes, header(A, "memory.put", "topic:none", "sealed"), None)
    with pytest.raises(ScopeError, match="never sealed"):
        check(scopes, header(A, "memory.put", "user", "sealed"), None)



def test_refuses_a_plain_payload_in_a_sealed_scope_by_anyone():
    """Writers seal every scope but user and device:*, so a plain payload under a sealed scope's name is a
    non-reader (or a forger) writing as if it were one: refused, whoever wrote it, whatever the order."""
    scopes = folded([key_event(A, 1, [A, B])])
    for author, scope in ((C, "health"), (A, "health"), (C, "topic:none")):
        with pytest.raises(ScopeError, match="plain payload in scope"):
            check(scopes, header(author, "memory.put", scope, "plain"), None)
    check(scopes, header(C, "memory.put", "user", "plain"), None)
    check(scopes, header(C, "override.set", "device:" + C.hex(), "plain"), None)


# -- determinism: the state is a function of the set of scope events ------------------------------------

DEVICES = (A, B, C, D)


@st.composite
def scope_histories(draw):
    """A set of scope events over two scopes by four devices, as concurrent writers could produce them."""
    events, keys = [], {"health": [], "topic:home": []}
    for lamport in range(1, draw(st.integers(1, 14)) + 1):
        author = draw(st.sampled_from(DEVICES))
        scope = draw(st.sampled_from(sorted(keys)))
        if keys[scope] and draw(st.booleans()):
            device = draw(st.sampled_from(DEVICES))
            some = draw(st.lists(st.sampled_from(keys[scope]), unique=True, max_size=3))
            events.append(grant_event(author, lamport, device, some, scope=scope))
        else:
            readers = draw(st.lists(st.sampled_from(DEVICES), unique=True, min_size=1, max_size=4))
            e = key_event(author, draw(st.integers(1, lamport)), readers, seq=lamport, scope=scope)
            keys[scope].append(e.eid)
            events.append(e)
    limits = draw(st.dictionaries(st.sampled_from(DEVICES), st.integers(0, 14), max_size=2))
    return events, limits


@settings(max_examples=300, deadline=None)
@given(scope_histories(), st.randoms(use_true_random=False))
def test_every_order_of_a_set_of_scope_events_folds_to_the_same_bytes(history, rnd):
    events, limits = history
    expected = folded(events, limits).to_bytes()
    for _ in range(4):
        order = events[:]
        rnd.shuffle(order)
        assert folded(order, limits).to_bytes() == expected
        twice = folded(order + order[: len(order) // 2], limits)
        assert twice.to_bytes() == expected
    late_limits = Scopes()
    for e in events:
        late_limits.add(e)
    late_limits.set_limits(limits)
    assert late_limits.to_bytes() == expected
    assert Scopes.from_bytes(expected).to_bytes() == expected


def test_fold_scope_is_order_free():
    events = [key_event(A, 1, [A, B]), grant_event(B, 2, C, []), key_event(C, 3, [C, D]), key_event(A, 3, [A])]
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    assert fold_scope("health", shuffled, {}) == fold_scope("health", events, {})
