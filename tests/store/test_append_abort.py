"""An append whose transaction aborts after its fold leaves nothing the next append folds from: the states the
fold keeps in memory are used only while the bytes they encode are still stored."""

from __future__ import annotations

import gc

import pytest

from agentlog.log import payloads
from agentlog.prefs.canonical import only
from agentlog.watch import changelog


def _observations(start: int, n: int) -> list[payloads.Observation]:
    return [payloads.Observation(setting=f"s{i % 7}", value=f"v{i % 3}", context=(("n", str(i % 2)),))
            for i in range(start, start + n)]


def _fail(*_args, **_kwargs):
    raise RuntimeError("the write fails after its fold")


@pytest.mark.parametrize("where", ["change log", "memory fold"])
def test_an_append_aborted_after_its_fold_leaves_no_stale_state(laptop, monkeypatch, where):
    laptop.append_many(_observations(0, 40))
    with monkeypatch.context() as m:
        if where == "change log":
            m.setattr(changelog.Capture, "record", _fail)
        else:
            m.setattr(laptop.memory_view, "fold", _fail)
        with pytest.raises(RuntimeError, match="after its fold"):
            laptop.append_many(_observations(40, 40))
    assert laptop.count() == 41
    laptop.append_many(_observations(80, 40))
    folded = laptop.views()["pref"]["digest"]
    rows = laptop.read(lambda txn: list(changelog.rows_after(txn, laptop.db("watch.changes"), 0, 100)))
    states = laptop.read(lambda txn: {name: bytes(laptop.pref_view.raw_setting(txn, name))
                                      for name in laptop.pref_view.names(txn)})
    for row in rows[-7:]:
        assert row.new == only(states[row.name.decode()], changelog.ANSWERED)
    laptop.rebuild_views()
    assert laptop.views()["pref"]["digest"] == folded


def test_an_append_pauses_the_cyclic_collector_and_turns_it_back_on(laptop, monkeypatch):
    during, real = [], laptop.memory_view.fold

    def fold(txn, batch, *args, **kwargs):
        during.append(gc.isenabled())
        return real(txn, batch, *args, **kwargs)

    monkeypatch.setattr(laptop.memory_view, "fold", fold)
    assert gc.isenabled()
    laptop.append_many(_observations(0, 3))
    assert during == [False] and gc.isenabled()
    monkeypatch.setattr(laptop.memory_view, "fold", _fail)
    with pytest.raises(RuntimeError, match="after its fold"):
        laptop.append_many(_observations(3, 3))
    assert gc.isenabled()
