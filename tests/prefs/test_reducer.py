"""Unit tests of the preference view's pure pieces: the integer decay, one setting's
incremental fold against a fold from scratch, canonical bytes (kept piece by piece), value checks and
normalization, and which context bucket answers a lookup."""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.log import payloads
from agentlog.prefs import decay
from agentlog.prefs import reducer as pr
from tests.helpers.pref_index import AUTHORS, NOW, MemoryIndex, evidence, whole_json

HOUR = 3_600_000
DAY = 24 * HOUR
YEAR = 365 * DAY


# -- decay ---------------------------------------------------------------------------------

def test_decay_table_is_pinned_and_monotone():
    table = decay._table()
    assert len(table) == decay.STEPS
    assert table[0] == 1 << decay.FRAC_BITS
    assert table[128] == math.isqrt(2 << 60)                       # sqrt(2) in 30-bit fixed point, floored
    assert all(a < b for a, b in zip(table, table[1:]))
    assert table[-1] < 2 << decay.FRAC_BITS
    for j, v in enumerate(table):                                  # within one unit of 2^(j/256)
        assert abs(v - 2 ** (j / decay.STEPS) * 2**decay.FRAC_BITS) <= 1
    # The exact integers: every device, every platform, every version must fold with these.
    raw = b"".join(v.to_bytes(8, "big") for v in table)
    assert hashlib.blake2b(raw, digest_size=16).hexdigest() == "6fb62f78da83614bc13fe06392d06723"
    decay._table.cache_clear()
    assert decay._table() == table


half_lives = st.sampled_from([pr.MIN_HALF_LIFE_MS, 7 * HOUR + 13, DAY, pr.DEFAULT_HALF_LIFE_MS, 97 * DAY,
                              pr.MAX_HALF_LIFE_MS])


@given(weight=st.integers(1, 10**9), t=st.integers(0, 200 * YEAR), h=half_lives, back=st.integers(0, 64),
       ahead=st.floats(-40.0, 40.0))
def test_term_and_value_at_match_two_to_the_power_within_one_percent(weight, t, h, back, ahead):
    anchor = decay.halvings(t, h) - back
    now = t + int(ahead * h)
    total = decay.term(weight, t, h, anchor)
    assert total > 0 and isinstance(total, int)
    assert decay.value_at(total, anchor, now, h) == pytest.approx(weight * 2.0 ** ((t - now) / h), rel=0.01)
    assert decay.value_at(-total, anchor, now, h) == -decay.value_at(total, anchor, now, h)
    assert decay.decayed(weight, t, now, h) == pytest.approx(weight * 2.0 ** ((t - now) / h), rel=1e-9)


@given(weight=st.integers(1, 10**6), t=st.integers(0, 100 * YEAR), dt=st.integers(0, 10 * YEAR), h=half_lives)
def test_term_is_monotone_in_time_and_exact_under_a_moved_anchor(weight, t, dt, h):
    anchor = decay.halvings(t, h) - pr.KEEP_HALVINGS
    assert decay.term(weight, t, h, anchor) <= decay.term(weight, t + dt, h, anchor)
    # Moving the anchor forward by k halvings divides every term exactly by 2^k.
    k = decay.halvings(t, h) - anchor
    assert decay.term(weight, t, h, anchor) == decay.term(weight, t, h, anchor + k) << k
    with pytest.raises(ValueError):
        decay.term(weight, t, h, decay.halvings(t, h) + 1)
    assert decay.value_at(0, anchor, t, h) == 0.0


# -- one setting: incremental fold == fold from scratch ------------------------------------------

def config_fact(n: int, lamport: int, half_life_ms: int = 0, policy: str = "unchanged") -> pr.Fact:
    p = payloads.PrefConfig(setting="s", policy=policy, half_life_ms=half_life_ms)
    return pr.Fact(AUTHORS[n % 3], 0, n, lamport, NOW, NOW, "pref.config", (10**6 + n).to_bytes(32, "big"), p)


def forget_fact(n: int, lamport: int) -> pr.Fact:
    return pr.Fact(AUTHORS[n % 3], 0, n, lamport, NOW, NOW, "pref.forget", (2 * 10**6 + n).to_bytes(32, "big"),
                   payloads.PrefForget(setting="s"))


def fold(items: list, roundtrip: list[bool]) -> tuple[pr.Setting, MemoryIndex]:
    """Fold evidence and config/forget facts one at a time, as the view does (reloading the state
    from its bytes between batches when `roundtrip` says so)."""
    s, index = pr.Setting("s"), MemoryIndex()
    for item, reload in zip(items, roundtrip + [False] * len(items)):
        if isinstance(item, pr.Evidence):
            s.add(item, index)
        elif s.state(item) == "recompute":
            everything = index.everything()
            for ev in everything:
                if ev.lamport < s.forget:
                    index.delete(ev)
            s.recompute(everything)
        if reload:
            s = pr.Setting.from_bytes("s", s.to_bytes())
    return s, index


def from_scratch(items: list) -> pr.Setting:
    s = pr.Setting("s")
    for item in items:
        if isinstance(item, pr.Fact):
            s.state(item)
    s.recompute([ev for ev in items if isinstance(ev, pr.Evidence)])
    return s


TIMES = {
    "around now": st.integers(NOW - 3 * DAY, NOW + 3 * DAY),
    "one recent window": st.integers(NOW - 2 * HOUR, NOW + 2 * HOUR),
    # on the edges of recent windows (a quarter half-life, at most a day): whole windows apart
    "window edges": st.builds(lambda k, window: NOW + k * window, st.integers(-4, 4),
                              st.sampled_from([pr.MIN_HALF_LIFE_MS // 4, DAY // 4, DAY])),
    "far past": st.integers(0, NOW),                        # back to 1970
    "far future": st.integers(NOW, NOW + 50 * YEAR),        # a bad clock
}
times = st.sampled_from(["around now", "one recent window", "window edges", "window edges", "window edges",
                         "far past", "far future"]).flatmap(TIMES.__getitem__)
evidence_piece = st.tuples(
    st.just("ev"), times, st.sampled_from(["dark", "light", "sepia"]),
    st.sampled_from(["", "daypart=night", f"daypart=night{pr.SEP}device_class=phone"]),
    st.one_of(st.integers(1, 10_000), st.just(-pr.CORRECTION_AGAINST), st.integers(1, 10**9)), st.integers(1, 60))
state_piece = st.one_of(
    st.tuples(st.just("half-life"), st.sampled_from([pr.MIN_HALF_LIFE_MS, DAY, 30 * DAY, pr.MAX_HALF_LIFE_MS]),
              st.integers(1, 60)),
    st.tuples(st.just("forget"), st.integers(1, 60)),
)
# Mostly evidence: a half-life change or a forget refolds from scratch, hiding incremental mistakes.
pieces = st.tuples(st.lists(evidence_piece, min_size=2, max_size=40), st.lists(state_piece, max_size=3)).map(
    lambda t: t[0] + t[1])


def build(drawn: list) -> list:
    """Evidence and facts from drawn pieces; lamports are unique, as (lamport, author) is for real events."""
    out = []
    for n, piece in enumerate(drawn):
        if piece[0] == "ev":
            _, eff, value, context, weight, lamport = piece
            out.append(evidence(n, eff, value, context, weight, lamport * 100 + n, author=AUTHORS[n % 3]))
        elif piece[0] == "half-life":
            out.append(config_fact(n, piece[2] * 100 + n, half_life_ms=piece[1]))
        else:
            out.append(forget_fact(n, piece[1] * 100 + n))
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=pieces, data=st.data())
def test_incremental_fold_equals_fold_from_scratch_in_any_order(drawn, data):
    items = build(drawn)
    expected = from_scratch(items)
    for _ in range(2):
        order = data.draw(st.permutations(items))
        roundtrip = data.draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
        s, index = fold(order, roundtrip)
        assert s.to_bytes() == expected.to_bytes()
        assert sorted(index.rows) == sorted((ev.eff, ev.eid, ev.role) for ev in items
                                            if isinstance(ev, pr.Evidence) and ev.lamport >= s.forget)
        assert pr.Setting.from_bytes("s", s.to_bytes()).to_bytes() == s.to_bytes()


def test_evidence_that_cancels_to_zero_does_not_break_later_folds():
    """Two observations of dark (+2.0) and a correction against dark (-2.0) in one decay step sum to
    exactly [0, 0], which the canonical bytes leave out; evidence after the recent window must still
    fold (this raised KeyError)."""
    items = [evidence(1, NOW, weight=1000), evidence(2, NOW, weight=1000),
             evidence(3, NOW, weight=-2000, kind="correction", role=1),
             evidence(3, NOW, value="light", weight=4000, kind="correction"),
             evidence(4, NOW + 2 * DAY, value="light")]
    s, _ = fold(items, [True] * len(items))
    assert "dark" not in s.sums[""] or s.sums[""]["dark"] == [0, 0]
    assert s.to_bytes() == from_scratch(items).to_bytes()


@pytest.mark.parametrize("reload", [False, True])
def test_late_evidence_in_the_recent_window_is_promoted_when_the_newest_time_passes_it(reload):
    """A state skips the index scan of a move of its newest time that cannot reach its oldest recent evidence
    (here light's, once dark is promoted); sepia, arriving late, older than light but still recent, must be
    promoted all the same when the newest time moves past it, though not past light."""
    items = [evidence(1, NOW), evidence(2, NOW + 2 * DAY, value="light"),
             evidence(3, NOW + 3 * DAY // 2, value="sepia"), evidence(4, NOW + 11 * DAY // 4)]
    s, _ = fold(items, [reload] * len(items))
    assert s.to_bytes() == from_scratch(items).to_bytes()
    assert s.sums[""]["sepia"][1] == s.sums[""]["sepia"][0] != 0        # old now: promoted


def test_evidence_older_than_keep_halvings_is_dropped_from_the_sums_but_kept_in_the_index():
    h = pr.DEFAULT_HALF_LIFE_MS
    old, new = evidence(1, NOW), evidence(2, NOW + (pr.KEEP_HALVINGS + 2) * h, value="light")
    s, index = fold([old, new], [True, True])
    assert list(s.sums[""]) == ["light"] and len(index.rows) == 2
    assert s.anchor == decay.halvings(new.eff, h) - pr.KEEP_HALVINGS
    assert s.to_bytes() == from_scratch([new, old]).to_bytes()


def test_config_is_latest_by_lamport_then_author():
    s = pr.Setting("s")
    s.state(config_fact(1, lamport=5, half_life_ms=DAY))        # author 2
    s.state(config_fact(0, lamport=5, half_life_ms=7 * DAY))    # author 1, same lamport: sorts first, loses
    s.state(config_fact(3, lamport=4, half_life_ms=HOUR))       # older
    assert s.half_life == DAY
    s.state(config_fact(4, lamport=6, policy="vote"))           # another field: both kept
    assert (s.half_life, s.policy) == (DAY, "vote")
    assert s.state(config_fact(5, lamport=7, half_life_ms=10)) == ""   # under the minimum: ignored
    assert s.half_life == DAY


def test_forget_keeps_what_is_not_below_its_lamport():
    items = [evidence(1, NOW, lamport=3), evidence(2, NOW, value="light", lamport=5), forget_fact(9, lamport=5)]
    s, index = fold(items, [True] * 3)
    assert list(s.sums[""]) == ["light"] and len(index.rows) == 1
    s.add(evidence(4, NOW + HOUR, lamport=4), index)            # arrives late, sorted before the forget
    assert list(s.sums[""]) == ["light"]


# -- canonical bytes --------------------------------------------------------------------------

@given(eff=st.integers(0, 2**63), eid=st.binary(min_size=32, max_size=32), role=st.sampled_from([0, 1]),
       kind=st.sampled_from(sorted(pr.EVIDENCE_KINDS)), value=st.text(min_size=1, max_size=50),
       context=st.text(max_size=50), weight=st.integers(-(2**63), 2**63 - 1), lamport=st.integers(0, 2**64 - 1),
       author=st.binary(min_size=32, max_size=32), time_ms=st.integers(0, 2**64 - 1))
def test_evidence_bytes_round_trip(eff, eid, role, kind, value, context, weight, lamport, author, time_ms):
    ev = pr.Evidence(eff, eid, role, kind, value, context, weight, lamport, author, time_ms)
    assert pr.Evidence.from_bytes(eff, eid, role, ev.to_bytes()) == ev


def test_setting_bytes_are_canonical():
    a, _ = fold([evidence(1, NOW), evidence(2, NOW, value="light", context="daypart=night"), config_fact(3, 9, DAY)],
                [False] * 3)
    a.explicit["daypart=day"] = [4, AUTHORS[0].hex(), "dark", "00" * 32, NOW]
    a.overrides[AUTHORS[1].hex()] = {"value": "sepia", "baseline": "dark", "pos": [0, 7], "eff": NOW, "eid": "11" * 32,
                                     "time": NOW}
    raw = a.to_bytes()
    b = pr.Setting.from_bytes("s", raw)
    assert b.to_bytes() == raw and b == a
    assert pr.Setting.from_bytes("s", whole_json(a)) == a               # as version 3 stored it
    shuffled = pr.Setting("s", dict(reversed(a.config.items())), a.forget, a.tmax, a.anchor,
                          {k: dict(reversed(v.items())) for k, v in reversed(a.sums.items())},
                          dict(reversed(a.explicit.items())), a.overrides)
    assert shuffled.to_bytes() == raw                                 # insertion order does not matter
    a.sums.setdefault("daypart=day", {})["auto"] = [0, 0]             # nor do sums that cancelled out
    assert a.to_bytes() == raw


# A setting's canonical bytes are kept up to date piece by piece (agentlog.prefs.canonical): they must be
# exactly the encoding of its whole state (docs/preferences.md, "The stored state"), written out here again
# from the spec, whenever and however often they are taken during a fold.

def _uvarint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes((low | (0x80 if n else 0),))
        if not n:
            return out


def _signed(x: int, n: int) -> bytes:
    return x.to_bytes(n, "big", signed=True)


def _least(x: int) -> int:
    if not x:
        return 0
    n = 1
    while not -(1 << (8 * n - 1)) <= x < (1 << (8 * n - 1)):
        n += 1
    return n


def _integer(x: int) -> bytes:
    return _uvarint(_least(x)) + _signed(x, _least(x))


def whole_bytes(s: pr.Setting) -> bytes:
    """The state encoded whole, from the spec, sums that cancelled to [0, 0] left out."""
    meta = json.dumps([s.config, s.explicit, s.overrides], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()
    out = b"\x01" + _uvarint(len(meta)) + meta + _integer(s.anchor) + _integer(s.forget)
    out += b"\x00" if s.tmax is None else b"\x01" + _integer(s.tmax)
    sums = {b: {v: t for v, t in sorted(vals.items()) if t[0] or t[1]} for b, vals in sorted(s.sums.items())}
    sums = {b: vals for b, vals in sums.items() if vals}
    out += _uvarint(len(sums))
    for b, vals in sums.items():
        wt, wo = max(_least(t[0]) for t in vals.values()), max(_least(t[1]) for t in vals.values())
        names = "\x00".join(vals).encode()
        out += _uvarint(len(b.encode())) + b.encode() + _uvarint(len(vals)) + _uvarint(wt) + _uvarint(wo)
        out += _uvarint(len(names)) + names
        out += b"".join(_signed(t[0], wt) + _signed(t[1], wo) for t in vals.values())
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=pieces, data=st.data())
def test_setting_bytes_taken_between_any_steps_equal_the_whole_encoding(drawn, data):
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
            expected = whole_bytes(s)
            assert s.to_bytes() == expected
            if take == "reload":
                s = pr.Setting.from_bytes("s", expected)
                assert s.to_bytes() == expected
    assert s.to_bytes() == whole_bytes(s) == s.to_bytes()
    assert pr.Setting.from_bytes("s", whole_json(s)) == s              # a version 3 state reads the same


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=pieces, context=st.sampled_from([(), (("daypart", "night"),), (("device_class", "phone"),),
                                               (("daypart", "night"), ("device_class", "phone"))]),
       now=st.integers(NOW - YEAR, NOW + 2 * YEAR))
def test_a_lookup_that_decodes_only_its_buckets_answers_as_the_whole_state_does(drawn, context, now):
    s, index = pr.Setting("s"), MemoryIndex()
    for item in build(drawn):
        if isinstance(item, pr.Evidence):
            s.add(item, index)
        elif s.state(item) == "recompute":
            s.recompute([ev for ev in index.everything() if ev.lamport >= s.forget])
    raw = s.to_bytes()
    partial = pr.Setting.for_answer("s", raw, context)
    assert set(partial.sums) == set(s.sums) & set(pr.lookup_buckets(context))
    assert pr.answer(partial, "00", context, now) == pr.answer(pr.Setting.from_bytes("s", raw), "00", context, now)


def test_a_bucket_whose_totals_or_old_sums_are_all_zero_round_trips():
    s = pr.Setting("s", sums={"": {"a": [0, 5], "b": [0, -3]}, "k=v": {"a": [7, 0]}}, tmax=0, anchor=-64)
    raw = s.to_bytes()
    assert raw == whole_bytes(s) and pr.Setting.from_bytes("s", raw) == s
    assert pr.Setting.for_answer("s", raw, ()).sums == {"": {"a": [0, 5], "b": [0, -3]}}


def test_a_busy_setting_is_stored_in_under_half_the_bytes_of_its_json():
    index, s = MemoryIndex(), pr.Setting("s")
    for ev in build([("ev", pr.DAY_MS * 20_000 + i * HOUR, f"value-{i % 17}", f"host=h{i % 3}", 1000, i + 1)
                     for i in range(400)]):
        s.add(ev, index)
    raw = s.to_bytes()
    assert raw == whole_bytes(s) and len(s.sums) == 4 and sum(map(len, s.sums.values())) == 68
    assert len(raw) < len(whole_json(s)) / 2
    assert pr.Setting.from_bytes("s", raw) == s


def test_statements_overrides_and_names_needing_escapes_are_encoded_as_json_does():
    index = MemoryIndex()
    s = pr.Setting("s")
    items = build([("ev", pr.DAY_MS * 20_000, "dark \"quoted\" ü", "daypart=night", 1000, 1),
                   ("ev", pr.DAY_MS * 20_000 + 5, "light\\x", "", 2000, 2)])
    for ev in items:
        s.add(ev, index)
    assert s.to_bytes() == whole_bytes(s)
    fact = pr.Fact(b"\x01" * 32, 0, 9, 9, 5, 5, "pref.set", b"\x02" * 32,
                   payloads.PrefSet(setting="s", value="séance", context=(("daypart", "night"),)))
    s.state(fact)
    assert s.explicit and s.to_bytes() == whole_bytes(s)


# -- names, values, normalization ------------------------------------------------------------------

@pytest.mark.parametrize("typed, expected", [
    ("yes", "true"), ("On", "true"), (" 1 ", "true"), ("TRUE", "true"), ("no", "false"), ("OFF", "false"),
    ("0", "false"), ("false", "false"), ("maybe", "maybe"),
])
def test_normalize_bool(typed, expected):
    assert pr.normalize(typed, "bool") == expected
    assert (pr.typed_problem(expected, "bool", ()) is None) == (expected in ("true", "false"))


@pytest.mark.parametrize("typed, expected", [
    ("1.50", "1.5"), ("020", "20"), ("-0", "0"), ("-0.000", "0"), ("1E+3", "1000"), (" 2.5 ", "2.5"),
    ("0.10", "0.1"), ("-1.5", "-1.5"), ("1e-3", "0.001"), ("abc", "abc"), ("NaN", "NaN"), ("Infinity", "Infinity"),
    ("", ""), ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("1.000000000000000000000000000001", "1.000000000000000000000000000001"), ("1E+1000000", "1E+1000000"),
    ("1E-1000000", "1E-1000000"), ("0E+5000000", "0"),
])
def test_normalize_number(typed, expected):
    assert pr.normalize(typed, "number") == expected


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 400))
def test_every_finite_number_normalizes_to_its_canonical_form(d):
    canonical = pr.normalize(str(d), "number")
    assert pr.typed_problem(canonical, "number", ()) is None
    assert Decimal(canonical) == d
    assert pr.normalize(canonical, "number") == canonical


def test_typed_problem():
    assert pr.typed_problem("anything at all", "text", ()) is None
    for bad in ("1.50", "01", "+1", "1.", ".5", "1e3", "NaN", "-0.0", ""):
        assert "not a number" in pr.typed_problem(bad, "number", ()), bad
    for good in ("0", "-1.5", "20", "0.001"):
        assert pr.typed_problem(good, "number", ()) is None
    assert pr.typed_problem("small", "choice", ("small", "large")) is None
    assert "not one of small, large" in pr.typed_problem("Small", "choice", ("small", "large"))
    assert "not a bool" in pr.typed_problem("yes", "bool", ())      # normalize first


def test_name_value_and_context_problems():
    assert pr.setting_problem("ui.theme") is None and pr.setting_problem("x" * pr.MAX_SETTING_LEN) is None
    for bad in ("", "x" * (pr.MAX_SETTING_LEN + 1), "a b", "a\tb", "a\nb", "a\x7fb", "a\u2028b"):
        assert pr.setting_problem(bad), repr(bad)
    assert pr.value_problem("dark") is None and pr.value_problem("x" * pr.MAX_VALUE_LEN) is None
    for bad in ("", "x" * (pr.MAX_VALUE_LEN + 1), "a\nb", "\x00"):
        assert pr.value_problem(bad), repr(bad)
    assert pr.context_problem([]) is None and pr.context_problem([("daypart", "late night")]) is None
    for bad in ([("k", "a"), ("k", "b")], [("", "v")], [("k k", "v")], [("k", "")], [("k", "x" * 65)],
                [("k" * 65, "v")], [(f"k{i}", "v") for i in range(pr.MAX_CONTEXT_KEYS + 1)], [("k", "a\nb")]):
        assert pr.context_problem(bad), bad


def test_effective_time_caps_a_clock_at_a_day_past_what_its_author_had_seen():
    assert pr.effective_time(NOW + YEAR, None) == NOW + YEAR          # has seen nothing: its own clock
    assert pr.effective_time(NOW + YEAR, NOW) == NOW + pr.LEAD_MS
    assert pr.effective_time(NOW - YEAR, NOW) == NOW - YEAR           # behind: as is
    assert pr.effective_time(NOW + HOUR, NOW) == NOW + HOUR


# -- buckets and fallback ---------------------------------------------------------------------

def test_lookup_buckets_go_from_most_specific_to_every_context():
    ctx = (("device_class", "phone"), ("daypart", "night"), ("app", "mail"))
    assert pr.lookup_buckets(ctx) == (
        f"app=mail{pr.SEP}daypart=night{pr.SEP}device_class=phone",
        f"app=mail{pr.SEP}daypart=night",
        f"app=mail{pr.SEP}device_class=phone",
        f"daypart=night{pr.SEP}device_class=phone",
        "app=mail",
        "daypart=night",
        "device_class=phone",
        "",
    )
    assert pr.lookup_buckets(()) == ("",)
    assert set(pr.buckets_of(ctx)) == set(pr.lookup_buckets(ctx))


@given(st.dictionaries(st.sampled_from("abcd"), st.sampled_from(["1", "2"]), max_size=4))
def test_evidence_counts_in_every_bucket_a_lookup_in_its_context_consults(context):
    pairs = tuple(context.items())
    buckets = pr.lookup_buckets(pairs)
    assert len(buckets) == 2 ** len(pairs) and buckets[-1] == "" and buckets[0] == pr.bucket_key(tuple(sorted(pairs)))
    sizes = [0 if not b else b.count(pr.SEP) + 1 for b in buckets]
    assert sizes == sorted(sizes, reverse=True)
    assert sorted(pr.buckets_of(pairs)) == sorted(buckets)


def setting_with(*items) -> pr.Setting:
    s, _ = fold(list(items), [False] * len(items))
    return s


NIGHT_PHONE = f"daypart=night{pr.SEP}device_class=phone"
LOOKUP = (("daypart", "night"), ("device_class", "phone"))


def test_lookup_answers_from_the_most_specific_bucket_with_enough_evidence():
    s = setting_with(evidence(1, NOW, "dark", NIGHT_PHONE, 1500), evidence(2, NOW, "light", "", 3000))
    a = pr.answer(s, "", LOOKUP, NOW)
    assert (a.value, a.bucket) == ("dark", NIGHT_PHONE)
    a = pr.answer(s, "", (("daypart", "night"),), NOW)              # that evidence counts in daypart=night too
    assert (a.value, a.bucket) == ("dark", "daypart=night")
    assert pr.answer(s, "", (("daypart", "day"),), NOW).bucket == ""


def test_lookup_falls_back_past_a_bucket_with_too_little_evidence():
    s = setting_with(evidence(1, NOW, "dark", NIGHT_PHONE, 600), evidence(2, NOW, "light", "daypart=night", 1000),
                     evidence(3, NOW, "sepia", "", 5000))
    a = pr.answer(s, "", LOOKUP, NOW)                                # 0.6 < 1.0: next, daypart=night (1.6)
    assert (a.value, a.bucket) == ("light", "daypart=night")
    a = pr.answer(s, "", LOOKUP, NOW + 30 * DAY)                     # decayed to 0.8 there: every context
    assert (a.value, a.bucket) == ("sepia", "")
    thin = setting_with(evidence(1, NOW, "dark", "daypart=night", 100))
    a = pr.answer(thin, "", LOOKUP, NOW)                             # the bucket {} answers whenever it holds any
    assert (a.value, a.bucket, a.uncertain) == ("dark", "", True)


def test_explicit_statements_are_looked_up_most_specific_first_and_beat_learned():
    s = setting_with(*[evidence(i, NOW, "dark", NIGHT_PHONE, 1000) for i in range(5)])
    s.explicit[""] = [3, AUTHORS[0].hex(), "light", "00" * 32, NOW]
    assert (pr.answer(s, "", LOOKUP, NOW).value, pr.answer(s, "", LOOKUP, NOW).source) == ("light", "explicit")
    s.explicit["device_class=phone"] = [2, AUTHORS[0].hex(), "sepia", "01" * 32, NOW]
    assert pr.answer(s, "", LOOKUP, NOW).value == "sepia"
    assert pr.answer(s, "", (("daypart", "night"),), NOW).value == "light"


def test_values_of_the_wrong_type_are_not_answered():
    s = setting_with(evidence(1, NOW, "maybe", "", 5000), evidence(2, NOW, "true", "", 1000))
    assert pr.answer(s, "", (), NOW).value == "maybe"
    s.state(pr.Fact(AUTHORS[0], 0, 9, 9, NOW, NOW, "pref.config", b"\x09" * 32,
                    payloads.PrefConfig(setting="s", value_type="bool")))
    a = pr.answer(s, "", (), NOW)
    assert a.value == "true" and dict(a.scores) == pytest.approx({"true": 1.0}, abs=0.01)


def test_default_answer_has_no_value():
    a = pr.default_answer("never.seen")
    assert (a.value, a.source, a.confidence, a.uncertain, a.stale_override) == (None, "default", 0.0, False, False)
    assert a.to_json()["value"] is None and a.to_json()["context_bucket"] is None
    assert pr.answer(pr.Setting("s"), "", (), NOW).source == "default"
