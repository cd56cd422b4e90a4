"""A setting's canonical bytes kept up to date piece by piece (agentlog.prefs.canonical) are exactly the
JSON of its whole state, whenever and however often they are taken during a fold."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.log import payloads
from agentlog.prefs import reducer as pr
from tests.helpers.pref_index import MemoryIndex
from tests.prefs.test_reducer import build, pieces


def whole(s: pr.Setting) -> bytes:
    """The state's JSON encoded whole, sums that cancelled to [0, 0] left out."""
    sums = {b: {v: t for v, t in vals.items() if t[0] or t[1]} for b, vals in s.sums.items()}
    doc = {"config": s.config, "forget": s.forget, "tmax": s.tmax, "anchor": s.anchor,
           "sums": {b: vals for b, vals in sums.items() if vals}, "explicit": s.explicit, "overrides": s.overrides}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=pieces, data=st.data())
def test_bytes_taken_between_any_steps_equal_the_whole_encoding(drawn, data):
    items = build(drawn)
    taken = data.draw(st.lists(st.sampled_from(["none", "bytes", "reload"]), min_size=len(items),
                               max_size=len(items)))
    s, index = pr.Setting("s"), MemoryIndex()
    for item, take in zip(items, taken):
        if isinstance(item, pr.Evidence):
            s.add(item, index)
        elif s.state(item) == "recompute":
            s.recompute([ev for ev in index.everything() if ev.lamport >= s.forget])
        if take != "none":
            expected = whole(s)
            assert s.to_bytes() == expected
            if take == "reload":
                s = pr.Setting.from_bytes("s", expected)
    assert s.to_bytes() == whole(s) == s.to_bytes()


def test_statements_overrides_and_names_needing_escapes_are_encoded_as_json_does():
    index = MemoryIndex()
    s = pr.Setting("s")
    items = build([("ev", pr.DAY_MS * 20_000, "dark \"quoted\" ü", "daypart=night", 1000, 1),
                   ("ev", pr.DAY_MS * 20_000 + 5, "light\\x", "", 2000, 2)])
    for ev in items:
        s.add(ev, index)
    assert s.to_bytes() == whole(s)
    fact = pr.Fact(b"\x01" * 32, 0, 9, 9, 5, 5, "pref.set", b"\x02" * 32,
                   payloads.PrefSet(setting="s", value="séance", context=(("daypart", "night"),)))
    s.state(fact)
    assert s.explicit and s.to_bytes() == whole(s)
