"""`memory merge`: B folded into A the same way on every device (tags join, B deleted pointing at A, A found
by what found B), equal memory digests after syncing; concurrent edits and deletes; refusals that change nothing."""

from __future__ import annotations

import pytest

from agentlog.errors import InvalidValueError, NotFoundError
from tests.helpers.sync import converged, meet, sync


def hit_ids(store, query: str) -> list[bytes]:
    return [h.entry.id for h in store.memory.search(query, 5, decay=False).hits]


def test_a_merge_on_one_device_points_every_device_at_a(laptop, phone, tablet):
    a = laptop.memory.put("Prefers aisle seats on flights", tags=["travel"])
    b = laptop.memory.put("Always books the seat next to the corridor on trains", tags=["trains", "booking"])
    laptop.memory.put("Parked on level 2")
    meet(laptop, phone, tablet)
    for store in (laptop, phone, tablet):
        assert hit_ids(store, "corridor trains")[0] == b
    laptop.memory.merge(a, b)
    meet(laptop, phone, tablet)
    converged(laptop, phone, tablet)
    for store in (laptop, phone, tablet):
        assert hit_ids(store, "corridor trains")[0] == a, store.name
        assert b not in hit_ids(store, "corridor trains")
        gone, kept = store.memory.get(b), store.memory.get(a)
        assert gone.is_deleted and gone.merged_into == a and gone.to_json()["merged_into"] == a.hex()
        assert kept.tags == ("booking", "trains", "travel") and kept.content == "Prefers aisle seats on flights"
        assert hit_ids(store, "trains")[0] == a          # by B's tag, which A holds now


def test_a_merge_with_new_content_rewrites_a(laptop, phone):
    a = laptop.memory.put("Likes tea")
    b = laptop.memory.put("Drinks green tea in the morning")
    sync(laptop, phone)
    phone.memory.merge(a, b, content="Drinks green tea, mostly in the morning")
    sync(phone, laptop)
    converged(laptop, phone)
    assert laptop.memory.get(a).content == "Drinks green tea, mostly in the morning"
    assert hit_ids(laptop, "morning") == [a]


def test_concurrent_merge_update_and_delete_converge(laptop, phone, tablet):
    """The merge meets an update of B, a tag added to A and a delete of A made offline: every order folds alike."""
    a = laptop.memory.put("Runs on Tuesdays", tags=["sport"])
    b = laptop.memory.put("Goes running every Tuesday evening")
    meet(laptop, phone, tablet)
    laptop.memory.merge(a, b)
    phone.memory.update(b, content="Goes running on Tuesday and Friday evenings", add_tags=["evening"])
    phone.memory.update(a, add_tags=["weekly"])
    meet(laptop, phone, tablet)
    converged(laptop, phone, tablet)
    assert laptop.memory.get(a).tags == ("sport", "weekly")
    tablet.memory.delete(a)
    laptop.memory.update(a, add_tags=["health"])
    meet(laptop, phone, tablet)
    converged(laptop, phone, tablet)
    assert laptop.memory.get(a).is_deleted and laptop.memory.search("Tuesday", 5).hits == ()


@pytest.mark.parametrize("which, error, message", [
    ("same", InvalidValueError, "cannot be merged into itself"),
    ("deleted", InvalidValueError, "was deleted"),
    ("merged", InvalidValueError, "was merged into"),
    ("unknown", NotFoundError, "no memory"),
    ("scope", InvalidValueError, "only entries of one scope merge"),
])
def test_refused_merges_change_nothing(laptop, which, error, message):
    a = laptop.memory.put("Likes tea")
    other = {
        "same": lambda: a,
        "deleted": lambda: (laptop.memory.delete(b := laptop.memory.put("x")), b)[1],
        "merged": lambda: (laptop.memory.merge(a, b := laptop.memory.put("y")), b)[1],
        "unknown": lambda: bytes(16),
        "scope": lambda: laptop.memory.put("Likes coffee", scope="device:laptop"),
    }[which]()
    before = (laptop.frontier(), laptop.views()["memory"]["digest"])
    with pytest.raises(error, match=message):
        laptop.memory.merge(a, other)
    assert (laptop.frontier(), laptop.views()["memory"]["digest"]) == before
