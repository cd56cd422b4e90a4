"""A compaction base written by an older preference reducer (version 3, JSON states; version 4, unwitnessed events
keyed by id alone): the first open refolds from it once, re-encodes its states (re-keys its rows) and stamps the view
current, so later opens do not refold and the view's digest equals that of devices that folded the same events at
this version. Real stores; devices meet by `ingest`."""

from __future__ import annotations

from agentlog.prefs import reducer as pr
from agentlog.prefs import view as pv
from agentlog.store import compaction
from agentlog.store import store as store_module
from agentlog.store.store import Store
from agentlog.store.verify import verify_store
from tests.helpers.family import new_device, observe_days
from tests.helpers.pref_index import whole_json


def digests(store: Store) -> dict[str, bytes]:
    return {name: v["digest"] for name, v in store.views().items()}


def compact_at_version_3(f, monkeypatch) -> None:
    """The laptop folds its view again and compacts as reducer version 3 did (JSON states, version 3)."""
    with monkeypatch.context() as m:
        m.setattr(pr.Setting, "to_bytes", whole_json)
        m.setattr(pv, "_VERSION", (3).to_bytes(4, "big"))
        f.laptop.rebuild_views()
        compaction.compact(f.laptop, now_ms=f.now)
    assert f.laptop.views()["pref"]["version"] == 3
    with f.laptop.raw_txn() as txn:
        assert all(f.laptop.pref_view.raw_setting(txn, n)[:1] == b"{" for n in f.laptop.pref_view.names(txn))


def compact_at_version_4(f, monkeypatch) -> None:
    """The laptop folds its view again and compacts as reducer version 4 did (views.pref.early: author 0x01 event
    id -> row)."""
    with monkeypatch.context() as m:
        m.setattr(pv, "_early_key", lambda author, time_ms, eid: author + b"\x01" + eid)
        m.setattr(pv, "_EARLY_EID", 33)
        m.setattr(pv, "_VERSION", (4).to_bytes(4, "big"))
        f.laptop.rebuild_views()
        compaction.compact(f.laptop, now_ms=f.now)
    assert f.laptop.views()["pref"]["version"] == 4
    with f.laptop.raw_txn() as txn, txn.cursor(db=f.laptop.db("views.pref.early")) as cur:
        assert sum(len(k) == 65 and k[32] == 1 for k in cur.iternext(values=False)) > 0


def test_a_version_3_base_is_refolded_once_and_ends_equal_to_its_peers(family, monkeypatch):
    f = family
    observe_days(f, 12)
    compact_at_version_3(f, monkeypatch)
    f.sync(f.laptop, f.phone)
    assert_refolded_once_and_equal(f, monkeypatch, b'{"anchor"')


def test_a_version_4_base_has_its_unwitnessed_rows_keyed_again(family, monkeypatch):
    f = family
    observe_days(f, 12)
    compact_at_version_4(f, monkeypatch)
    f.sync(f.laptop, f.phone)
    assert_refolded_once_and_equal(f, monkeypatch, None)


def assert_refolded_once_and_equal(f, monkeypatch, signed: bytes | None) -> None:
    """The laptop, opened twice, refolds once from its base and ends equal to the phone; a hub bootstrapped from
    that base (still holding `signed` in its states) ends equal to both."""
    refolds = []
    real = store_module.refold
    monkeypatch.setattr(store_module, "refold", lambda *a, **k: refolds.append(1) or real(*a, **k))
    path, key = f.laptop.path, f.laptop.key
    for opened in (1, 2):
        f.laptop.close()
        f.laptop = Store(path, key, clock=lambda: f.now)
        assert len(refolds) == 1, f"open {opened}"
        assert f.laptop.views()["pref"]["version"] == pr.VERSION
        assert digests(f.laptop) == digests(f.phone)
    assert verify_store(f.laptop, jobs=1).ok                            # its scratch refold from the base agrees
    hub = new_device(f, "hub")
    try:
        bundle = compaction.base_bundle(f.laptop)
        assert signed is None or bundle.states["pref"].count(signed) > 0      # still the bytes it signed
        compaction.bootstrap(hub, bundle)
        assert hub.views()["pref"]["version"] == pr.VERSION
        f.sync(f.laptop, hub)
        f.sync(f.laptop, f.phone)                                         # the hub's enrolment
        assert digests(hub) == digests(f.laptop) == digests(f.phone)
    finally:
        hub.close()
