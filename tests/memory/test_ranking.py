"""Ranking: BM25 terms (stopwords out, word forms met), reciprocal rank fusion, decay by disuse, tidy pairs."""

from __future__ import annotations

import time

import pytest

from agentlog.errors import InvalidValueError
from agentlog.memory import lexical, ranking
from agentlog.memory.api import Memory

YEAR_MS = 365 * ranking.DAY_MS


def test_terms_drop_stopwords_and_meet_word_forms():
    assert lexical.terms("Prefers aisle seats on the flights") == ["prefer", "aisle", "seat", "flight"]
    assert lexical.terms("swimming planned parked 2019 B1") == ["swim", "plan", "park", "2019", "b1"]
    assert lexical.query_terms("the who") == ["the", "who"]            # stopwords alone are kept


def test_fusion_sums_reciprocal_ranks_and_breaks_ties_by_id():
    a, b, c = b"a" * 16, b"b" * 16, b"c" * 16
    fused = ranking.fuse([[(b, 9.0), (a, 1.0)], [(a, 0.9), (b, 0.5), (c, 0.1)]])
    k = ranking.RRF_K
    assert fused == [(a, 1 / (k + 2) + 1 / (k + 1)), (b, 1 / (k + 1) + 1 / (k + 2)), (c, 1 / (k + 3))]
    assert fused[0][1] == fused[1][1]                                   # equal: the smaller id first


def test_decay_halves_towards_its_floor_and_never_hides():
    assert ranking.decay(0) == 1.0
    assert ranking.decay(ranking.DECAY_HALF_LIFE_MS) == pytest.approx(0.75)
    assert ranking.decay(50 * YEAR_MS) == pytest.approx(ranking.DECAY_FLOOR)
    assert ranking.decay(ranking.DAY_MS - 1) == 1.0                      # whole days only


def test_an_entry_long_unused_loses_rank_unless_read_here(laptop):
    old = laptop.memory.put("The spare key is under the blue flowerpot")
    new = laptop.memory.put("The spare key is with the neighbour at number 12")
    later = time.time_ns() // 1_000_000 + 2 * YEAR_MS
    memory = Memory(laptop, now_ms=lambda: later)
    plain = [h.entry.id for h in memory.search("spare key", decay=False).hits]
    assert sorted(plain) == sorted([old, new])
    before = (laptop.frontier(), laptop.views()["memory"]["digest"])
    memory.note_read(plain[1])                                          # read two years on: a use
    assert (laptop.frontier(), laptop.views()["memory"]["digest"]) == before   # local: not in the log or view
    decayed = memory.search("spare key")
    assert [h.entry.id for h in decayed.hits] == [plain[1], plain[0]]   # never hidden, only lower
    assert decayed.hits[1].score == pytest.approx(plain_score(memory, plain[0]) * ranking.decay(2 * YEAR_MS), 1e-3)


def plain_score(memory, entry_id):
    return next(h.score for h in memory.search("spare key", decay=False).hits if h.entry.id == entry_id)


def test_duplicates_pair_near_restatements_in_a_stable_order(laptop):
    m = laptop.memory
    a = m.put("Prefers aisle seats on flights")
    b = m.put("Prefers an aisle seat on flights")
    m.put("Parked on level 2")
    m.put("Prefers aisle seats on flights", scope="device:other")      # another scope: never paired
    pairs = m.duplicates()
    assert [(x.id, y.id) for x, y, _ in pairs] == [tuple(sorted((a, b)))]
    assert 0.6 <= pairs[0][2] <= 1
    assert m.duplicates(0.999) == []
    with pytest.raises(InvalidValueError, match="threshold"):
        m.duplicates(1.5)
