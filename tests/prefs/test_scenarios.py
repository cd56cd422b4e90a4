"""The preference view as the user lives it: a phone, a laptop and sometimes a hub
learning, being corrected, overriding, and meeting now and then (issue 3's Bars).

Every device reads a shared simulated time plus its own skew, so a story can say
"two days later" or "the phone's clock runs a year ahead".
"""

from __future__ import annotations

import pytest

from agentlog.errors import AgentlogError, InvalidValueError
from agentlog.log import payloads
from agentlog.prefs import reducer as pr
from agentlog.store.store import Store
from tests.helpers.family import DAY, HOUR, MINUTE, YEAR, Family

NIGHT, DAYTIME = {"daypart": "night"}, {"daypart": "day"}


def get(store: Store, setting: str, context=None, now=None):
    return store.prefs.get(setting, context, now_ms=now).answer


# -- learning ------------------------------------------------------------------------

def test_phone_learns_dark_at_night_while_laptop_learns_light_by_day(family):
    for _ in range(3):
        family.phone.prefs.observe("ui.theme", "dark", context=NIGHT)
        family.later(HOUR)
    for _ in range(2):
        family.laptop.prefs.observe("ui.theme", "light", context=DAYTIME)
        family.later(HOUR)
    assert get(family.laptop, "ui.theme", NIGHT).value == "light"   # not heard of the nights yet: falls back
    family.meet()

    for device in (family.phone, family.laptop):
        night = get(device, "ui.theme", NIGHT)
        assert (night.value, night.source, night.uncertain) == ("dark", "learned", False)
        assert night.confidence == pytest.approx(3 / 4, abs=0.01)
        day = get(device, "ui.theme", {"daypart": "day", "device_class": "laptop"})   # falls back to daypart=day
        assert (day.value, day.source, day.uncertain) == ("light", "learned", False)
        assert day.bucket == "daypart=day"
        anywhere = get(device, "ui.theme")
        assert anywhere.value == "dark" and anywhere.uncertain   # 3 against 2: too close to act on
        assert anywhere.confidence == pytest.approx(1 / 6, abs=0.01)


def test_a_correction_flips_a_belief_on_every_device(family):
    family.laptop.prefs.observe("ui.font", "small")
    decision = family.laptop.prefs.decide("ui.font", "small", confidence=0.8)
    before = get(family.laptop, "ui.font")
    assert (before.value, before.uncertain) == ("small", False)
    family.meet()

    family.later(10 * MINUTE)
    family.phone.prefs.correct(decision, "large")   # the user corrects, on the phone, what the laptop decided
    assert get(family.phone, "ui.font").value == "large"
    assert get(family.laptop, "ui.font").value == "small"
    family.meet()
    for device in (family.laptop, family.phone):
        after = get(device, "ui.font")
        assert (after.value, after.source) == ("large", "learned")
        assert dict(after.scores) == pytest.approx({"large": 4.0, "small": 1.0 + 0.4 - 2.0}, abs=0.01)


def test_the_winner_changed_recently_so_the_answer_is_uncertain_for_a_while(family):
    prefs = family.laptop.prefs
    for _ in range(2):
        prefs.observe("ui.theme", "light")
    family.later(2 * DAY)
    for _ in range(8):
        prefs.observe("ui.theme", "dark")
    fresh = get(family.laptop, "ui.theme")
    assert fresh.value == "dark" and fresh.confidence > pr.UNCERTAIN_BELOW and fresh.uncertain
    settled = get(family.laptop, "ui.theme", now=family.now + DAY + MINUTE)
    assert settled.value == "dark" and not settled.uncertain


# -- overrides -----------------------------------------------------------------------

def shared_belief_dark_then_sepia(family, policy: str | None):
    if policy:
        family.laptop.prefs.configure("ui.theme", policy=policy)
    for _ in range(3):
        family.laptop.prefs.observe("ui.theme", "dark")
    family.meet()
    family.phone.prefs.override("ui.theme", "light")   # this phone only; recorded beside "dark"
    family.meet()
    ov = get(family.phone, "ui.theme", NIGHT)
    assert (ov.value, ov.source, ov.stale_override, ov.uncertain) == ("light", "override", False, False)
    assert get(family.laptop, "ui.theme").value == "dark"
    family.later(HOUR)
    family.laptop.prefs.set("ui.theme", "sepia")       # the shared belief changes
    family.meet()
    assert get(family.laptop, "ui.theme").value == "sepia"


def test_phone_override_survives_a_global_change_under_sticky(family):
    shared_belief_dark_then_sepia(family, None)        # sticky is the default
    a = get(family.phone, "ui.theme")
    assert (a.value, a.source, a.stale_override, a.uncertain) == ("light", "override", False, False)
    assert get(family.laptop, "ui.theme").value == "sepia"


def test_phone_override_is_marked_stale_under_reconfirm_until_confirmed(family):
    shared_belief_dark_then_sepia(family, "reconfirm")
    a = get(family.phone, "ui.theme", DAYTIME)
    assert (a.value, a.source, a.stale_override, a.uncertain) == ("light", "override", True, True)
    family.phone.prefs.confirm("ui.theme")             # "yes, keep light here"
    a = get(family.phone, "ui.theme")
    assert (a.value, a.source, a.stale_override, a.uncertain) == ("light", "override", False, False)
    family.later(HOUR)
    family.laptop.prefs.set("ui.theme", "dark")        # it moves again: stale again
    family.meet()
    assert get(family.phone, "ui.theme").stale_override
    family.phone.prefs.clear_override("ui.theme")
    a = get(family.phone, "ui.theme")
    assert (a.value, a.source, a.stale_override) == ("dark", "explicit", False)


def test_override_in_a_context_with_its_own_belief_is_not_stale_before_anything_changed(family):
    family.laptop.prefs.configure("ui.theme", policy="reconfirm")
    for _ in range(3):
        family.laptop.prefs.observe("ui.theme", "dark", context=NIGHT)
    for _ in range(2):
        family.laptop.prefs.observe("ui.theme", "light", context=DAYTIME)
    family.meet()
    family.phone.prefs.override("ui.theme", "sepia")   # beside the overall belief, dark
    for context in (None, NIGHT, DAYTIME):
        a = get(family.phone, "ui.theme", context)
        assert (a.value, a.stale_override, a.uncertain) == ("sepia", False, False), context


def test_phone_override_only_votes_under_vote(family):
    family.laptop.prefs.configure("ui.theme", policy="vote")
    family.laptop.prefs.observe("ui.theme", "dark")
    family.meet()
    override = family.phone.prefs.override("ui.theme", "light")
    a = get(family.phone, "ui.theme")
    assert (a.value, a.source) == ("light", "override")   # nothing moved yet: the override answers
    for _ in range(2):
        family.laptop.prefs.observe("ui.theme", "sepia")
    family.meet()
    assert get(family.laptop, "ui.theme").value == "sepia"
    a = get(family.phone, "ui.theme")                     # light 3.0 (its vote) beats sepia 2.0, dark 1.0
    assert (a.value, a.source, a.stale_override) == ("light", "learned", True)
    assert dict(a.scores) == pytest.approx({"light": 3.0, "sepia": 2.0, "dark": 1.0}, abs=0.01)
    top = family.phone.prefs.explain("ui.theme").contributions[0]   # the vote decided: explain names it first
    assert (top.eid, top.kind, top.value, round(top.weight, 2)) == (override, "override.set", "light", 3.0)
    for _ in range(3):
        family.laptop.prefs.observe("ui.theme", "sepia")
    family.meet()
    a = get(family.phone, "ui.theme")                     # sepia 5.0 now outweighs the vote
    assert (a.value, a.source, a.stale_override) == ("sepia", "learned", True)
    assert dict(a.scores)["light"] == pytest.approx(3.0, abs=0.01)
    assert "light" not in dict(get(family.laptop, "ui.theme").scores)   # the vote is the phone's alone


# -- explain, default, explicit, forget ----------------------------------------------------

def test_explain_names_the_events_that_decided_strongest_first(family):
    weak = family.laptop.prefs.observe("ui.theme", "dark", weight=0.25)
    strong = family.phone.prefs.observe("ui.theme", "dark", weight=3.0)
    decision = family.phone.prefs.decide("ui.theme", "light", confidence=1.0)
    family.meet()
    correction = family.laptop.prefs.correct(decision, "dark")
    unrelated = family.laptop.prefs.observe("ui.font", "large")
    family.meet()
    for device in (family.laptop, family.phone):
        e = device.prefs.explain("ui.theme")
        assert e.answer.value == "dark" and e.answer.source == "learned"
        got = [(c.eid, c.kind, c.value, round(c.weight, 2)) for c in e.contributions]
        assert got == [(correction, "correction", "dark", 4.0), (strong, "observation", "dark", 3.0),
                       (correction, "correction", "light", -2.0), (decision, "decision", "light", 0.5),
                       (weak, "observation", "dark", 0.25)]
        assert unrelated not in [c.eid for c in e.contributions]
        assert {c.author for c in e.contributions} == {family.laptop.device, family.phone.device}
    stated = family.phone.prefs.set("ui.theme", "light")
    [c] = family.phone.prefs.explain("ui.theme").contributions
    assert (c.eid, c.kind, c.weight) == (stated, "pref.set", None)
    ov = family.phone.prefs.override("ui.theme", "sepia")
    [c] = family.phone.prefs.explain("ui.theme").contributions
    assert (c.eid, c.kind, c.author) == (ov, "override.set", family.phone.device)


def test_a_setting_never_seen_answers_default_with_no_value(family):
    family.laptop.prefs.observe("ui.theme", "dark")
    for context in (None, NIGHT):
        a = get(family.laptop, "never.seen", context)
        assert (a.value, a.source, a.confidence, a.uncertain, a.stale_override) == (None, "default", 0.0, False, False)
    e = family.laptop.prefs.explain("never.seen")
    assert e.answer.source == "default" and e.contributions == ()
    assert get(family.phone, "ui.theme").source == "default"   # not synced yet: not an error either


def test_explicit_statement_outranks_learned_evidence_until_a_later_one(family):
    family.laptop.prefs.set("ui.theme", "light")
    family.meet()
    for _ in range(10):
        family.phone.prefs.observe("ui.theme", "dark")
    decision = family.phone.prefs.decide("ui.theme", "light")
    family.phone.prefs.correct(decision, "dark")
    family.meet()
    for device in (family.laptop, family.phone):
        a = get(device, "ui.theme", NIGHT)
        assert (a.value, a.source, a.confidence, a.uncertain) == ("light", "explicit", 1.0, False)
    family.later(HOUR)
    family.phone.prefs.set("ui.theme", "dark")
    family.meet()
    for device in (family.laptop, family.phone):
        assert (get(device, "ui.theme").value, get(device, "ui.theme").source) == ("dark", "explicit")
    family.laptop.prefs.set("ui.theme", "sepia", context=NIGHT)   # a statement for nights only
    family.meet()
    assert get(family.phone, "ui.theme", NIGHT).value == "sepia"
    assert get(family.phone, "ui.theme", DAYTIME).value == "dark"


def test_forget_drops_learned_evidence_and_statements(family):
    for _ in range(3):
        family.laptop.prefs.observe("ui.theme", "dark", context=NIGHT)
    family.laptop.prefs.set("ui.theme", "dark", context=DAYTIME)
    concurrent = family.phone.prefs.observe("ui.theme", "dark")   # the phone has not synced: lower lamport
    family.laptop.prefs.forget("ui.theme")
    for context in (None, NIGHT, DAYTIME):
        assert get(family.laptop, "ui.theme", context).source == "default"
    assert family.laptop.prefs.explain("ui.theme", NIGHT).contributions == ()
    family.meet()
    assert family.phone.get(concurrent).header.lamport < max(e.header.lamport for e in family.laptop.events())
    assert get(family.laptop, "ui.theme").source == "default"   # it sorted before the forget: dropped too
    family.later(MINUTE)
    family.phone.prefs.observe("ui.theme", "light")
    family.meet()
    for device in (family.laptop, family.phone):
        a = get(device, "ui.theme", NIGHT)
        assert (a.value, a.source, a.bucket) == ("light", "learned", "")


def test_half_life_decides_whether_old_habits_fade(family):
    prefs = family.laptop.prefs
    for _ in range(4):
        prefs.observe("ui.theme", "light")
    family.later(60 * DAY)
    for _ in range(2):
        prefs.observe("ui.theme", "dark")
    a = get(family.laptop, "ui.theme")                       # 30-day half-life: light 4 x 1/4 = 1.0 < dark 2.0
    assert a.value == "dark"
    assert dict(a.scores) == pytest.approx({"dark": 2.0, "light": 1.0}, abs=0.01)
    family.phone.prefs.configure("ui.theme", half_life_ms=120 * DAY)   # configured on another device
    family.meet()
    for device in (family.laptop, family.phone):
        a = get(device, "ui.theme")                          # light 4 x 2^-0.5 = 2.83 > dark 2.0
        assert a.value == "light"
        assert dict(a.scores) == pytest.approx({"light": 2.83, "dark": 2.0}, abs=0.01)
    family.laptop.prefs.configure("ui.theme", half_life_ms=DAY)         # a later configuration wins
    family.meet()
    assert get(family.phone, "ui.theme").value == "dark"
    assert dict(get(family.phone, "ui.theme").scores)["light"] < 1e-10


# -- clock skew --------------------------------------------------------------------------

def test_a_device_clock_a_year_ahead_does_not_dominate(tmp_path, monkeypatch):
    family = Family(tmp_path, phone=YEAR)
    try:
        last_seen = family.now                  # the phone's clock says now + 1 year
        family.laptop.prefs.observe("ui.theme", "light")
        family.meet()
        phone_ids = [family.phone.prefs.observe("ui.theme", "dark") for _ in range(3)]
        family.later(5 * DAY)
        for _ in range(3):
            family.laptop.prefs.observe("ui.theme", "light")   # a few honest, recent observations
        family.meet()
        for device in (family.laptop, family.phone):
            a = get(device, "ui.theme", now=family.now)
            assert a.value == "light"
            scores = dict(a.scores)                    # dark counts a day after what the phone had seen
            assert scores["dark"] == pytest.approx(3 * 2 ** (-4 / 30), rel=0.01)
        by_id = {c.eid: c for c in family.laptop.prefs.explain("ui.theme", now_ms=family.now).contributions}
        for eid in phone_ids:
            assert by_id[eid].time_ms == last_seen + YEAR
            assert last_seen <= by_id[eid].effective_ms <= last_seen + DAY + MINUTE

        # Without the rule (its own clock taken as is) the phone's three would outweigh everything.
        monkeypatch.setattr(pr, "LEAD_MS", 10 * YEAR)
        family.laptop.rebuild_views()
        a = get(family.laptop, "ui.theme", now=family.now)
        assert a.value == "dark" and dict(a.scores)["dark"] > 1000 * dict(a.scores)["light"]
        monkeypatch.undo()
        family.laptop.rebuild_views()
        assert family.laptop.views()["pref"]["digest"] == family.phone.views()["pref"]["digest"]
    finally:
        family.close()


def test_a_founder_clock_a_year_ahead_writing_before_its_first_sync_does_not_dominate(tmp_path, monkeypatch):
    """The README's order: the founder writes before any other device has written. Nothing it had seen caps
    its clock; the phone's first event, which names it, does (issue 14, item 9)."""
    family = Family(tmp_path, laptop=YEAR)
    try:
        founder = family.laptop.prefs.observe("ui.theme", "dark")
        family.meet()
        for _ in range(50):
            family.phone.prefs.observe("ui.theme", "light")
            family.later(MINUTE)
        family.meet()
        for device in (family.laptop, family.phone):
            a = get(device, "ui.theme", now=family.now)
            assert a.value == "light" and dict(a.scores)["light"] > 40 * dict(a.scores)["dark"]
            by_id = {c.eid: c for c in device.prefs.explain("ui.theme", now_ms=family.now).contributions}
            assert by_id[founder].time_ms > family.now + YEAR - HOUR
            assert by_id[founder].effective_ms <= family.now + DAY
        family.laptop.rebuild_views()
        assert family.laptop.views()["pref"]["digest"] == family.phone.views()["pref"]["digest"]

        # Without the witness cap the founder's one observation outweighs the fifty.
        monkeypatch.setattr(pr, "witness_cap", lambda time_ms: pr.MAX_TIME_MS)
        family.laptop.rebuild_views()
        assert get(family.laptop, "ui.theme", now=family.now).value == "dark"
    finally:
        family.close()


def witnessed_by_an_honest_hub(family: Family) -> None:
    """A third device with a right clock names the laptop in its clock: with only a phone whose clock is
    behind to witness it, the laptop's evidence from before it met anyone would count at the phone's time
    (two clocks that disagree: the group cannot tell which is wrong; see docs/preferences.md)."""
    family.hub().prefs.observe("ui.font", "small")


def test_a_device_clock_behind_counts_its_evidence_as_old(tmp_path):
    family = Family(tmp_path, phone=-YEAR)
    try:
        witnessed_by_an_honest_hub(family)
        family.phone.prefs.observe("ui.theme", "dark", weight=5.0)
        family.laptop.prefs.observe("ui.theme", "light")
        family.meet()
        a = get(family.laptop, "ui.theme", now=family.now)
        assert a.value == "light" and dict(a.scores)["dark"] < 0.01
    finally:
        family.close()


def test_a_device_clock_far_behind_with_a_short_half_life_still_answers(tmp_path):
    """Evidence a thousand half-lives in the reader's future: read as of that evidence, not 2^1000 heavier."""
    family = Family(tmp_path, phone=-45 * DAY)
    try:
        witnessed_by_an_honest_hub(family)
        family.laptop.prefs.configure("ui.theme", half_life_ms=HOUR, policy="vote")
        for _ in range(2):
            family.laptop.prefs.observe("ui.theme", "dark")
        family.meet()
        family.phone.prefs.override("ui.theme", "light")
        family.phone.prefs.observe("ui.theme", "sepia", weight=50.0)   # counts 45 days ago: nothing
        family.laptop.prefs.observe("ui.theme", "auto", weight=3.0)
        family.meet()
        phone, laptop = get(family.phone, "ui.theme"), get(family.laptop, "ui.theme")
        assert laptop.value == "auto" and phone.stale_override
        assert phone.value == "auto" and dict(phone.scores)["light"] <= 3.0    # its vote weighs at most 3.0
        assert family.phone.prefs.explain("ui.theme").contributions[0].value == "auto"
    finally:
        family.close()


def test_evidence_that_cancels_out_does_not_block_later_learning(family):
    """Two observations of dark and a correction against dark in one decay step sum to exactly zero;
    the next evidence after the recent window used to fail every append with KeyError."""
    prefs = family.laptop.prefs
    decision = prefs.decide("ui.theme", "dark", confidence=0.0)     # weighs nothing itself
    prefs.observe("ui.theme", "dark")
    prefs.observe("ui.theme", "dark")
    prefs.correct(decision, "light")
    family.later(2 * DAY)
    prefs.observe("ui.theme", "light")
    assert get(family.laptop, "ui.theme").value == "light"
    family.meet()
    family.laptop.rebuild_views()
    assert family.laptop.views()["pref"]["digest"] == family.phone.views()["pref"]["digest"]


# -- bad input -----------------------------------------------------------------------------

def state(store: Store) -> tuple:
    return store.count(), store.views()["pref"]["digest"], store.heads()


BAD_NAMES = ["", "x" * (pr.MAX_SETTING_LEN + 1), "ui\ntheme", "ui\x00theme", "ui theme", "ui\ttheme", "\x1b[31m"]
BAD_CONTEXTS = [{"": "night"}, {"day part": "night"}, {"daypart": ""}, {"daypart": "x" * 65},
                {"daypart": "ni\nght"}, {f"k{i}": "v" for i in range(pr.MAX_CONTEXT_KEYS + 1)},
                [("daypart", "night"), ("daypart", "day")], {"k\x00": "v"}]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["empty", "too-long", "newline", "nul", "space", "tab", "escape"])
def test_invalid_setting_names_are_refused_and_change_nothing(family, name):
    prefs, before = family.laptop.prefs, state(family.laptop)
    calls = [lambda: prefs.observe(name, "dark"), lambda: prefs.decide(name, "dark"), lambda: prefs.set(name, "dark"),
             lambda: prefs.forget(name), lambda: prefs.configure(name, policy="vote"),
             lambda: prefs.override(name, "dark"), lambda: prefs.clear_override(name), lambda: prefs.confirm(name),
             lambda: prefs.get(name), lambda: prefs.explain(name)]
    for call in calls:
        with pytest.raises(InvalidValueError, match="setting name"):
            call()
    assert state(family.laptop) == before
    assert "128" in pr.setting_problem("x" * 129)


def test_the_longest_setting_name_is_accepted(family):
    name = "x" * pr.MAX_SETTING_LEN
    family.laptop.prefs.observe(name, "dark")
    assert get(family.laptop, name).value == "dark"


@pytest.mark.parametrize("context", BAD_CONTEXTS,
                         ids=["empty-key", "space-in-key", "empty-value", "long-value", "newline-value",
                              "too-many-keys", "key-twice", "nul-in-key"])
def test_malformed_context_is_refused_and_changes_nothing(family, context):
    prefs, before = family.laptop.prefs, state(family.laptop)
    for call in (lambda: prefs.observe("ui.theme", "dark", context=context),
                 lambda: prefs.decide("ui.theme", "dark", context=context),
                 lambda: prefs.set("ui.theme", "dark", context=context),
                 lambda: prefs.get("ui.theme", context=context)):
        with pytest.raises(InvalidValueError, match="context"):
            call()
    assert state(family.laptop) == before


def test_a_correction_naming_no_decision_is_refused_and_changes_nothing(family):
    observation = family.laptop.prefs.observe("ui.theme", "dark")
    decision = family.phone.prefs.decide("ui.theme", "dark")   # on the phone, not synced to the laptop
    before = state(family.laptop)
    for eid in (b"\x07" * 32, observation, decision, decision.hex()):
        with pytest.raises(InvalidValueError, match="names no decision"):
            family.laptop.prefs.correct(eid, "light")
    for eid in (b"short", b"", "ab" * 31, "xy" * 32):
        with pytest.raises(InvalidValueError, match="decision id .* is not 32 bytes or 64 hex digits"):
            family.laptop.prefs.correct(eid, "light")
    assert state(family.laptop) == before


def test_a_value_of_the_wrong_type_is_refused_and_changes_nothing(family):
    prefs = family.laptop.prefs
    prefs.configure("notify.sound", value_type="bool")
    decision = prefs.decide("notify.sound", "yes")            # typed yes is stored as true
    assert payloads.decode("decision", family.laptop.get(decision).payload).value == "true"
    before = state(family.laptop)
    for call in (lambda: prefs.observe("notify.sound", "maybe"), lambda: prefs.decide("notify.sound", "2"),
                 lambda: prefs.set("notify.sound", "loud"), lambda: prefs.override("notify.sound", "sometimes"),
                 lambda: prefs.correct(decision, "perhaps")):
        with pytest.raises(InvalidValueError, match="is not a bool"):
            call()
    assert state(family.laptop) == before
    prefs.configure("ui.size", value_type="choice", choices=["small", "large"])
    prefs.configure("ui.volume", value_type="number")
    before = state(family.laptop)
    with pytest.raises(InvalidValueError, match="is not one of small, large"):
        prefs.observe("ui.size", "medium")
    for bad in ("loud", "1E+1000000", "NaN", "1e-99999"):
        with pytest.raises(InvalidValueError, match="not a number"):
            prefs.set("ui.volume", bad)
    assert state(family.laptop) == before
    prefs.set("ui.volume", "20.50")
    assert get(family.laptop, "ui.volume").value == "20.5"
    prefs.set("ui.volume", "123456789012345678901234567890.10")      # every digit kept, none rounded away
    assert get(family.laptop, "ui.volume").value == "123456789012345678901234567890.1"


@pytest.mark.parametrize("call", [
    lambda p: p.observe("ui.theme", ""), lambda p: p.observe("ui.theme", "x" * (pr.MAX_VALUE_LEN + 1)),
    lambda p: p.observe("ui.theme", "da\nrk"), lambda p: p.observe("ui.theme", "dark", weight=0),
    lambda p: p.observe("ui.theme", "dark", weight=-1), lambda p: p.decide("ui.theme", "dark", confidence=1.5),
    lambda p: p.configure("ui.theme", policy="sometimes"), lambda p: p.configure("ui.theme", half_life_ms=1),
    lambda p: p.configure("ui.theme", value_type="colour"), lambda p: p.configure("ui.theme", value_type="choice"),
    lambda p: p.configure("ui.theme"), lambda p: p.clear_override("ui.theme"), lambda p: p.confirm("ui.theme"),
], ids=["empty-value", "long-value", "control-in-value", "zero-weight", "negative-weight", "confidence",
        "policy", "half-life", "type", "choice-without-choices", "nothing", "clear-without-override",
        "confirm-without-override"])
def test_other_bad_arguments_are_one_clear_error_and_change_nothing(family, call):
    family.laptop.prefs.observe("ui.theme", "dark")
    before = state(family.laptop)
    with pytest.raises(InvalidValueError) as raised:
        call(family.laptop.prefs)
    assert isinstance(raised.value, AgentlogError) and str(raised.value)
    assert state(family.laptop) == before
