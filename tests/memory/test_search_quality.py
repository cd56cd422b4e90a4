"""Search quality on the labelled set (tests/memory/data/search_set.json), with the built-in embedder:
hybrid ranking finds more of what a person expects in the top 3 than BM25 or the vectors alone, and the
plane-seat query finds the aisle-seat entry first. A quality test, not a timed one."""

from __future__ import annotations

import pytest

from tests.helpers import search_set


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    data = search_set.load()
    store, ids = search_set.filled_home(tmp_path_factory.mktemp("search-set") / "home", data)
    yield store, ids, data
    store.close()


def test_hybrid_recall_at_3_beats_lexical_and_vector_alone(labelled):
    store, ids, data = labelled
    assert 40 <= len(data["entries"]) <= 60 and 20 <= len(data["queries"]) <= 60
    recall = {r: search_set.recall(store, ids, data, r)[0] for r in search_set.RANKINGS}
    assert recall["hybrid"] > recall["lexical"] and recall["hybrid"] > recall["vector"], recall


def test_the_plane_seat_query_finds_the_aisle_seat_first(labelled):
    store, ids, _ = labelled
    found = store.memory.search("seat on the plane", 3)
    assert found.hits[0].entry.id == ids["aisle"]
    assert ids["parking"] not in [h.entry.id for h in found.hits[:1]]
    assert (found.mode, found.ranking) == ("lexical", "hybrid")      # the built-in embedder hashes words


def test_exact_names_and_numbers_are_found(labelled):
    store, ids, _ = labelled
    for query, key in (("4471", "passport"), ("PF3K9Q2", "laptop"), ("Priya", "manager"), ("555-0142", "oncall")):
        assert store.memory.search(query, 1).hits[0].entry.id == ids[key], query


def test_a_search_ranks_the_same_every_time_and_breaks_ties_by_id(labelled):
    store, _, _ = labelled
    first = [(h.entry.id, h.score) for h in store.memory.search("the on of", 50).hits]
    assert first == [(h.entry.id, h.score) for h in store.memory.search("the on of", 50).hits]
    for (a, score_a), (b, score_b) in zip(first, first[1:]):
        assert score_a > score_b or (score_a == score_b and a < b)
