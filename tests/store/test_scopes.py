"""Sealed scopes on real LMDB stores: three devices, health readable by laptop and phone, synced in process."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog import crypto
from agentlog.crypto import DeviceKey
from agentlog.errors import NotFoundError, ScopeError, UsageError
from agentlog.log import payloads, sealing
from agentlog.log.event import ClockEntry, Header, seal
from agentlog.store import devices
from agentlog.store.keyring import scopes_in
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.events import store_digest
from tests.helpers.scoped import Home, files_holding, health_home
from tests.helpers.sync import sync

CANARY = "CANARY-7f3a9c-blood-pressure"
CANARY2 = "CANARY-2b81d4-after-revoke"


@pytest.fixture
def home(tmp_path):
    with health_home(tmp_path) as h:
        yield h


def phone_writes_canary(home: Home) -> bytes:
    entry = home.phone.memory.put(f"{CANARY} 140/90 in the morning", scope="health")
    home.phone.prefs.observe("diet", CANARY, scope="health")
    return entry


def digests(store: Store) -> dict:
    return {name: v["digest"] for name, v in store.views().items()}


def test_scopes_list_and_readers(home):
    info = home.phone.scopes.get("health")
    assert [name for _, name in info.readers] == ["laptop", "phone"]
    assert info.epoch == 1 and info.can_read
    assert not home.speaker.scopes.get("health").can_read
    assert home.speaker.scopes.list()[0].to_json()["readers"][0]["name"] == "laptop"
    assert home.laptop.scopes.readable("health") and not home.speaker.scopes.readable("health")
    assert home.speaker.scopes.readable("user")
    with pytest.raises(NotFoundError):
        home.laptop.scopes.get("nothing")


def test_canary_reaches_readers_only(home):
    entry = phone_writes_canary(home)
    home.meet()
    assert files_holding(home.tmp / "speaker", CANARY) == []
    hits = home.laptop.memory.search("CANARY-7f3a9c", lexical=True).hits
    assert [h.entry.id for h in hits] == [entry]
    assert home.laptop.prefs.get("diet").value == CANARY
    assert home.laptop.memory.get(entry).scope == "health"
    with pytest.raises(NotFoundError, match="cannot read scope health"):
        home.speaker.memory.get(entry)
    assert home.speaker.prefs.get("diet").value is None
    for store in (home.laptop, home.phone, home.speaker):
        report = verify_store(store)
        assert report.ok, [p.what for p in report.problems] + report.damage
    assert any("do" in n and "not read" in n for n in verify_store(home.speaker).notes)
    assert digests(home.laptop) == digests(home.phone)        # the same rights: byte-identical views
    assert digests(home.speaker)["pref"] != digests(home.laptop)["pref"]


def test_phone_and_laptop_converge_through_the_speaker(home):
    entry = phone_writes_canary(home)
    sync(home.phone, home.speaker)
    sync(home.speaker, home.laptop)
    assert home.laptop.memory.get(entry).content.startswith(CANARY)
    assert home.laptop.prefs.get("diet").value == CANARY
    assert files_holding(home.tmp / "speaker", CANARY) == []
    assert verify_store(home.speaker).ok and verify_store(home.laptop).ok


def test_revoked_reader_gets_nothing_new(home):
    phone_writes_canary(home)
    home.meet()
    home.laptop.scopes.revoke("health", "phone")
    assert home.laptop.scopes.get("health").epoch == 2
    later = home.laptop.memory.put(f"{CANARY2} new medication", scope="health")
    home.meet()
    assert files_holding(home.tmp / "phone", CANARY2) == []
    assert not home.phone.scopes.readable("health")
    with pytest.raises(UsageError, match="cannot read scope 'health'"):
        home.phone.memory.put("more", scope="health")
    with pytest.raises(NotFoundError):
        home.phone.memory.get(later)
    assert home.phone.memory.search("CANARY-7f3a9c", lexical=True).hits       # what it held stays readable
    assert verify_store(home.phone).ok


def test_a_device_granted_later_reads_the_past(home):
    entry = phone_writes_canary(home)
    home.meet()
    before = digests(home.speaker)
    home.phone.scopes.grant("health", [home.speaker.device])
    home.meet()
    assert home.speaker.memory.get(entry).content.startswith(CANARY)
    assert home.speaker.prefs.get("diet").value == CANARY
    assert digests(home.speaker) != before
    assert digests(home.speaker) == digests(home.laptop) == digests(home.phone)
    assert verify_store(home.speaker).ok
    assert home.speaker.scopes.unread() == []


def test_rebuilt_views_equal_live_views(home):
    phone_writes_canary(home)
    home.meet()
    for store in (home.laptop, home.speaker):
        live = digests(store)
        store.rebuild_views()
        assert digests(store) == live


def test_group_revocation_rotates_the_scopes_the_device_read(home):
    devices.revoke(home.laptop, "phone")
    info = home.laptop.scopes.get("health")
    assert info.epoch == 2 and [n for _, n in info.readers] == ["laptop"]
    home.laptop.memory.put(f"{CANARY2} after the phone was lost", scope="health")
    home.meet(home.laptop, home.speaker)
    sync(home.laptop, home.phone)
    assert files_holding(home.tmp / "phone", CANARY2) == []


def test_a_write_rotates_the_key_first_when_a_holder_was_revoked(home):
    home.laptop.append(payloads.DeviceRevoke(device=home.phone.device, until_seq=0))   # no rotation here
    assert home.laptop.scopes.get("health").epoch == 1
    entry = home.laptop.memory.put("after", scope="health")
    assert home.laptop.scopes.get("health").epoch == 2
    kinds = [e.header.kind for e in home.laptop.events(home.laptop.device)][-2:]
    assert kinds == ["scope.key", "memory.put"]
    assert home.laptop.memory.get(entry).content == "after"


def test_first_write_creates_the_scope(home):
    entry = home.speaker.memory.put("speaker notes", scope="topic:kitchen")
    assert home.speaker.scopes.get("topic:kitchen").can_read
    home.meet()
    assert not home.laptop.scopes.readable("topic:kitchen")
    with pytest.raises(NotFoundError):
        home.laptop.memory.get(entry)


def test_user_mistakes(home):
    with pytest.raises(UsageError, match="only a reader"):
        home.speaker.scopes.grant("health", ["speaker"])
    with pytest.raises(NotFoundError, match="no enrolled device"):
        home.laptop.scopes.grant("health", ["fridge"])
    with pytest.raises(UsageError, match="already"):
        home.laptop.scopes.create("health")
    with pytest.raises(UsageError, match="already reads"):
        home.laptop.scopes.grant("health", ["phone"])
    with pytest.raises(UsageError, match="does not read"):
        home.laptop.scopes.revoke("health", "speaker")
    with pytest.raises(UsageError, match="cannot read scope"):
        home.speaker.prefs.set("diet", "x", scope="health")


# -- refusals at ingest, and what is carried unread ----------------------------------------------------

def forge(store: Store, kind: str, body: bytes, *, scope: str = "user", codec: str = "plain"):
    """`store`'s device's next event, signed and valid in its chain, but not stored there."""
    me = store.device
    heads = store.heads()
    head = heads.get(me)
    lamport = int.from_bytes(store.meta("lamport") or b"\0", "big") + 1
    clock = tuple(ClockEntry(a, h.epoch, h.seq) for a, h in sorted(heads.items()) if a != me)
    h = Header(group=store.group, author=me, epoch=0, seq=(head.seq if head else 0) + 1,
               prev=head.id if head else crypto.ZERO_ID, lamport=lamport, clock=clock, time_ms=store.now_ms(),
               scope=scope, kind=kind, payload_hash=crypto.blake2b256(body), payload_len=len(body),
               payload_codec=codec)
    event = seal(h, store.key, body)
    return event.record, event.payload


def refused(store: Store, item, match: str) -> None:
    before = store_digest(store)
    with pytest.raises(ScopeError, match=match):
        store.ingest([item])
    assert store_digest(store) == before


def test_refuses_a_key_sealed_to_a_device_not_enrolled(home):
    stranger = DeviceKey.generate().public
    key = crypto.content_key()
    payload = payloads.ScopeKey(scope="topic:x", readers=tuple(
        payloads.SealedKey(device=d, box=crypto.seal_box(d, key)) for d in (home.phone.device, stranger)))
    refused(home.laptop, forge(home.phone, "scope.key", payloads.encode(payload)), "not enrolled")


def test_refuses_events_by_a_device_never_a_reader(home):
    grant = payloads.ScopeGrant(scope="health", device=home.speaker.device, keys=())
    refused(home.laptop, forge(home.speaker, "scope.grant", payloads.encode(grant)), "never its reader")
    envelope = sealing.seal(crypto.content_key(), b"k" * 32, b"x", b"")
    refused(home.laptop, forge(home.speaker, "memory.put", envelope, scope="health", codec="sealed"),
            "never its reader")
    key = crypto.content_key()
    takeover = payloads.ScopeKey(scope="health", readers=(
        payloads.SealedKey(device=home.laptop.device, box=crypto.seal_box(home.laptop.device, key)),))
    refused(home.laptop, forge(home.speaker, "scope.key", payloads.encode(takeover)), "not among its readers")


def test_refuses_a_plain_payload_written_under_a_sealed_scope(home):
    """A non-reader cannot write into health by leaving its payload plain: the laptop refuses it whole and
    its views and memory stay as they were."""
    put = payloads.MemoryPut(entry=b"f" * 16, type="fact", content="forged into health")
    refused(home.laptop, forge(home.speaker, "memory.put", payloads.encode(put), scope="health"),
            "plain payload in scope 'health'")
    assert all(e.content != "forged into health" for e in home.laptop.memory.list())


def test_a_sealed_payload_that_does_not_open_is_carried_not_folded(home):
    kid = home.laptop.scopes.get("health")
    current = next(e.id for e in home.laptop.events() if e.header.kind == "scope.key")
    body = payloads.encode(payloads.MemoryPut(entry=b"e" * 16, type="fact", content=CANARY))
    envelope = sealing.seal(crypto.content_key(), current, body,
                            sealing.ad(home.phone.group, home.phone.device, "health", "memory.put"))
    result = home.laptop.ingest([forge(home.phone, "memory.put", envelope, scope="health", codec="sealed")])
    assert result.accepted == 1 and kid.can_read
    assert home.laptop.scopes.unread() == ["health"]
    with pytest.raises(NotFoundError):
        home.laptop.memory.get(b"e" * 16)
    report = verify_store(home.laptop)
    assert not report.ok
    assert [(p.author, p.seq) for p in report.problems if "does not open" in p.what] == [(home.phone.device, 1)]


# -- determinism across devices with different grants -------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from(["write", "sync", "grant", "revoke"]), st.integers(0, 2), st.integers(0, 2),
                         st.sampled_from(["user", "health", "topic:home"])), min_size=4, max_size=18)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_devices_with_the_same_rights_hold_the_same_views(tmp_path_factory, ops):
    """Writes in user and two sealed scopes, grants, revocations and syncs in any order; once every device
    holds every event, devices that hold the same keys hold byte-identical views, and every device's views
    equal what a rebuild from its log gives."""
    h = Home(tmp_path_factory.mktemp("grants"))
    stores = [h.laptop, h.phone, h.speaker]
    try:
        h.laptop.scopes.create("health")
        h.laptop.scopes.create("topic:home")
        h.meet()
        for n, (op, a, b, scope) in enumerate(ops):
            src, dst = stores[a], stores[b]
            if op == "sync" and src is not dst:
                sync(src, dst)
            elif op == "write" and src.scopes.readable(scope):
                src.prefs.observe(f"s{n % 3}", f"v{n}", scope=scope)
                src.memory.put(f"note {n}", scope=scope)
            elif op in ("grant", "revoke") and scope != "user" and src.scopes.readable(scope):
                info = src.scopes.get(scope)
                readers = {d for d, _ in info.readers}
                if op == "grant" and dst.device not in readers:
                    src.scopes.grant(scope, [dst.device])
                elif op == "revoke" and dst.device in readers and len(readers) > 1:
                    src.scopes.revoke(scope, dst.device)
        h.meet()
        rights = {}
        for s in stores:
            held = frozenset(s.keyring.keys(s.read(lambda txn, s=s: scopes_in(s.dbs, txn))))   # the keys it opens
            rights.setdefault(held, []).append(digests(s))
            live = digests(s)
            s.rebuild_views()
            assert digests(s) == live
        for same in rights.values():
            assert all(d == same[0] for d in same)
    finally:
        for s in stores:
            s.close()


def test_a_batch_to_a_new_scope_writes_one_key_first(home):
    ids = home.phone.append_many([(payloads.Observation(setting="t", value=str(i)), "topic:new") for i in range(3)]
                                 + [(payloads.Observation(setting="u", value="x"), "user")])
    assert len(ids) == 4
    kinds = [(e.header.kind, e.header.scope, e.header.payload_codec) for e in home.phone.events(home.phone.device)]
    assert kinds[-5:] == [("scope.key", "user", "plain")] + [("observation", "topic:new", "sealed")] * 3 + [
        ("observation", "user", "plain")]
    assert [home.phone.get(i).header.kind for i in ids] == ["observation"] * 4
