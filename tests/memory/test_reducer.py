"""The memory reducer without LMDB: facts built by hand, each with its explicit causal past.

Three authors A < B < C (by key bytes). `past` names, per author, the highest seq the
writer had seen; each fact's own position is added to it, as the view does.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest

from agentlog.log.payloads import Embedding, MemoryDelete, MemoryField, MemoryPut, MemoryUpdate, kind_of
from agentlog.memory import reducer as mr
from agentlog.memory.reducer import Entry, Fact, Write, before

A, B, C = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
ID = bytes(range(16))


def fact(author: bytes, seq: int, lamport: int, payload, seen: dict | None = None, *, scope: str = "user") -> Fact:
    """A memory event of `author` at `seq` that had seen `seen` (author -> seq, epoch 0)."""
    past = {a: (0, s) for a, s in (seen or {}).items()}
    past[author] = (0, seq)
    eid = hashlib.blake2b(author + seq.to_bytes(8, "big"), digest_size=32).digest()
    return Fact(author, 0, seq, lamport, 1_000 * lamport, scope, kind_of(payload), eid, payload, past)


def put(content="first", *, type="fact", tags=(), confidence_bp=10000, embedding=None, entry=ID) -> MemoryPut:
    return MemoryPut(entry=entry, type=type, content=content, tags=tuple(tags), confidence_bp=confidence_bp,
                     embedding=embedding)


def update(*, content=None, type=None, confidence_bp=None, embedding=None, add=(), remove=(), entry=ID) -> MemoryUpdate:
    fields = []
    if type is not None:
        fields.append(MemoryField(type=type))
    if content is not None:
        fields.append(MemoryField(content=content))
    if confidence_bp is not None:
        fields.append(MemoryField(confidence_bp=confidence_bp))
    if embedding is not None:
        fields.append(MemoryField(embedding=embedding))
    return MemoryUpdate(entry=entry, fields=tuple(fields), tags_add=tuple(add), tags_remove=tuple(remove))


def delete(reason="", entry=ID) -> MemoryDelete:
    return MemoryDelete(entry=entry, reason=reason)


def folded(facts, entry_id: bytes = ID) -> Entry:
    entries: dict[bytes, Entry] = {}
    mr.fold(entries, list(facts), lambda _: None)
    return entries[entry_id]


def values(entry: Entry, name: str) -> list:
    """The standing values of a field, shown one first."""
    return [w.value for w in entry.fields.get(name, [])]


def causal_orders(facts: list[Fact]):
    """Every permutation of `facts` in which no fact comes before one in its causal past."""
    dots = {(f.author, f.epoch, f.seq) for f in facts}
    assert len(dots) == len(facts)
    deps = [{d for d in dots if d != (f.author, f.epoch, f.seq) and before(d, f.past)} for f in facts]
    for perm in itertools.permutations(range(len(facts))):
        done: set = set()
        for i in perm:
            if not deps[i] <= done:
                break
            done.add((facts[i].author, facts[i].epoch, facts[i].seq))
        else:
            yield [facts[i] for i in perm]


def the_same_in_every_causal_order(facts: list[Fact], entry_id: bytes = ID) -> tuple[Entry, int]:
    """Fold every causal order of `facts`; all must give the same canonical bytes.

    Returns one entry and the orders tried."""
    results = {}
    for order in causal_orders(facts):
        results.setdefault(folded(order, entry_id).to_bytes(), order)
    assert len(results) == 1, f"{len(results)} different states from one set of facts"
    orders = sum(1 for _ in causal_orders(facts))
    return folded(facts, entry_id), orders


# -- before ------------------------------------------------------------------------------

def test_before_reads_a_dot_or_a_write_against_a_clock():
    past = {A: (0, 3), B: (1, 0)}
    assert before((A, 0, 3), past) and before((A, 0, 1), past)
    assert not before((A, 0, 4), past)
    assert before((B, 0, 9), past)               # an earlier epoch comes before
    assert not before((B, 1, 1), past)
    assert not before((C, 0, 0), past)           # an author never seen
    w = Write(5, A, 0, 2, 0, b"e" * 32, "x")
    assert before(w, past) and not before(w._replace(seq=4), past)


# -- fields: a multi-value register per field --------------------------------------------

def test_a_causally_later_write_replaces_the_earlier():
    e = folded([fact(A, 1, 1, put("first")), fact(B, 1, 2, update(content="second"), {A: 1})])
    assert e.value("content") == "second"
    assert values(e, "content") == ["second"]
    assert e.conflicts == {}
    assert e.value("type") == "fact" and e.value("confidence") == 10000
    assert e.visible and e.scope == "user" and e.origin.author == A


def test_concurrent_writes_both_stand_and_the_greatest_lamport_then_author_is_shown():
    p = fact(A, 1, 1, put("first"))
    a = fact(A, 2, 2, update(content="from A"), {A: 1})
    b = fact(B, 1, 2, update(content="from B"), {A: 1})
    for order in ([p, a, b], [p, b, a]):
        e = folded(order)
        assert values(e, "content") == ["from B", "from A"]      # same lamport: the greater author wins
        assert e.value("content") == "from B"
        assert list(e.conflicts) == ["content"]
        assert [w.value for w in e.conflicts["content"]] == ["from A"]

    a_later = fact(A, 2, 7, update(content="from A"), {A: 1})   # a greater lamport beats a greater author
    e = folded([p, b, a_later])
    assert values(e, "content") == ["from A", "from B"]
    assert [w.author for w in e.conflicts["content"]] == [B]


def test_a_write_that_follows_both_clears_the_conflict():
    p = fact(A, 1, 1, put("first", confidence_bp=5000))
    a = fact(A, 2, 2, update(content="from A", confidence_bp=6000), {A: 1})
    b = fact(B, 1, 2, update(content="from B", confidence_bp=7000), {A: 1})
    assert sorted(folded([p, a, b]).conflicts) == ["confidence", "content"]
    c = fact(C, 1, 3, update(content="settled"), {A: 2, B: 1})
    e = folded([p, a, b, c])
    assert values(e, "content") == ["settled"]
    assert list(e.conflicts) == ["confidence"]                   # only the field written again is settled
    assert values(e, "confidence") == [7000, 6000]
    # A write that saw only one side replaces that side and stands beside the other.
    d = fact(C, 1, 3, update(content="half"), {A: 2})
    e = folded([p, a, b, d])
    assert values(e, "content") == ["half", "from B"]


def test_each_field_is_its_own_register():
    p = fact(A, 1, 1, put("first", type="fact"))
    a = fact(A, 2, 2, update(type="decision"), {A: 1})
    b = fact(B, 1, 2, update(content="edited"), {A: 1})
    e = folded([p, a, b])
    assert (e.value("type"), e.value("content")) == ("decision", "edited")
    assert e.conflicts == {}


def test_embeddings_are_registers_of_the_model_name():
    vec = Embedding(model="m-one", vector=(1.0, 0.0))
    p = fact(A, 1, 1, put("x", embedding=vec))
    a = fact(A, 2, 2, update(embedding=Embedding(model="m-two", vector=(0.0, 1.0))), {A: 1})
    b = fact(B, 1, 2, update(embedding=Embedding(model="m-three", vector=(0.5, 0.5))), {A: 1})
    e = folded([p, a, b])
    assert values(e, "embedding") == ["m-three", "m-two"]
    assert [w.eid for w in e.embedding_writes()] == [b.eid, a.eid]
    assert list(e.conflicts) == ["embedding"]
    assert values(folded([p]), "embedding") == ["m-one"]
    assert folded([fact(A, 1, 1, put("no vector"))]).embedding_writes() == []


# -- tags: add wins ----------------------------------------------------------------------

def test_a_concurrent_add_and_remove_of_a_tag_add_wins():
    p = fact(A, 1, 1, put(tags=["x"]))
    remove = fact(A, 2, 2, update(remove=["x"]), {A: 1})
    add = fact(B, 1, 2, update(add=["x"]), {A: 1})
    for order in ([p, remove, add], [p, add, remove]):
        e = folded(order)
        assert e.tag_set == ("x",)
        assert e.tags["x"] == [(B, 0, 1)]                   # the put's add was observed and removed


def test_a_remove_removes_only_the_adds_it_observed():
    p = fact(A, 1, 1, put(tags=["x", "y"]))
    add_b = fact(B, 1, 2, update(add=["x"]), {A: 1})
    add_c = fact(C, 1, 2, update(add=["x"]), {A: 1})
    remove = fact(A, 2, 3, update(remove=["x"]), {A: 1, B: 1})   # saw the put's and B's add, not C's
    e = folded([p, add_b, add_c, remove])
    assert e.tags["x"] == [(C, 0, 1)]
    assert e.tag_set == ("x", "y")
    later = fact(B, 2, 4, update(remove=["x"]), {A: 2, B: 1, C: 1})
    e = folded([p, add_b, add_c, remove, later])
    assert e.tag_set == ("y",)
    assert "x" not in e.tags


def test_a_tag_removed_then_added_again_is_back():
    p = fact(A, 1, 1, put(tags=["x"]))
    remove = fact(A, 2, 2, update(remove=["x"]), {A: 1})
    again = fact(B, 1, 3, update(add=["x"]), {A: 2})
    assert folded([p, remove]).tag_set == ()
    assert folded([p, remove, again]).tag_set == ("x",)


# -- delete is final ---------------------------------------------------------------------

def test_a_delete_clears_the_entry_and_concurrent_and_later_updates_are_ignored():
    p = fact(A, 1, 1, put("first", tags=["x"]))
    concurrent = fact(B, 1, 2, update(content="edited offline", add=["y"]), {A: 1})
    gone = fact(A, 2, 2, delete("obsolete"), {A: 1})
    after = fact(C, 1, 3, update(content="too late"), {A: 2})
    for order in ([p, concurrent, gone, after], [p, gone, concurrent, after], [p, gone, after, concurrent]):
        e = folded(order)
        assert not e.visible
        assert e.fields == {} and e.tags == {} and e.conflicts == {}
        assert [(w.author, w.value) for w in e.deleted] == [(A, "obsolete")]
        assert e.origin is not None and e.origin.author == A   # the entry is still known, as deleted


def test_two_concurrent_deletes_keep_both_tombstones_in_order():
    p = fact(A, 1, 1, put())
    da = fact(A, 2, 2, delete("a"), {A: 1})
    db = fact(B, 1, 2, delete("b"), {A: 1})
    one, two = folded([p, db, da]), folded([p, da, db])
    assert [w.value for w in one.deleted] == ["a", "b"]
    assert one.to_bytes() == two.to_bytes()


# -- orphans: updates and deletes folded before their put ------------------------------------

def test_an_update_concurrent_with_its_put_merges_into_a_conflict_in_any_order():
    p = fact(A, 1, 1, put("from the put", tags=["x"]))
    orphan = fact(B, 1, 1, update(content="from the orphan", add=["y"]))   # never saw the put
    first, second = folded([orphan, p]), folded([p, orphan])
    assert first.to_bytes() == second.to_bytes()
    assert not folded([orphan]).visible                        # no put yet: nothing to show
    assert values(first, "content") == ["from the orphan", "from the put"]   # lamport tie: B > A
    assert list(first.conflicts) == ["content"]
    assert first.tag_set == ("x", "y")
    assert first.visible and first.origin.author == A


def test_an_orphan_delete_still_wins_over_a_later_put():
    orphan = fact(B, 1, 1, delete("never wanted"))
    p = fact(A, 1, 1, put("x"))
    for order in ([orphan, p], [p, orphan]):
        e = folded(order)
        assert not e.visible and e.fields == {} and e.origin.author == A
    assert folded([orphan, p]).to_bytes() == folded([p, orphan]).to_bytes()


# -- one state for every causal order ------------------------------------------------------

def test_every_causal_order_of_concurrent_field_and_tag_writes_gives_the_same_bytes():
    e1 = Embedding(model="m", vector=(1.0,))
    facts = [
        fact(A, 1, 1, put("first", tags=["x", "y"], confidence_bp=5000), scope="work"),
        fact(A, 2, 2, update(content="A's edit", embedding=e1), {A: 1}),
        fact(B, 1, 2, update(content="B's edit", remove=["x"]), {A: 1}),
        fact(C, 1, 3, update(type="decision", add=["z", "x"]), {A: 1, B: 1}),
        fact(B, 2, 3, update(confidence_bp=7000, add=["y", "z"]), {A: 2, B: 1}),
        fact(C, 2, 4, update(remove=["y"], content="C's edit"), {A: 1, B: 1, C: 1}),
        fact(A, 3, 4, update(embedding=Embedding(model="n", vector=(0.0, 1.0))), {A: 2, B: 2}),
    ]
    e, orders = the_same_in_every_causal_order(facts)
    assert orders >= 10
    assert e.scope == "work"
    assert values(e, "content") == ["C's edit", "A's edit"]     # C's saw B's edit, not A's
    assert values(e, "type") == ["decision"]
    assert values(e, "confidence") == [7000]
    assert values(e, "embedding") == ["n"]
    # x: the put's add removed by B, C's add stands; y: C removed the put's add, not B's concurrent one.
    assert e.tags == {"x": [(C, 0, 1)], "y": [(B, 0, 2)], "z": [(B, 0, 2), (C, 0, 1)]}   # z: two concurrent adds


def test_every_causal_order_with_a_delete_and_orphans_gives_the_same_bytes():
    facts = [
        fact(B, 1, 1, update(content="orphan edit", add=["t"])),
        fact(A, 1, 1, put("first", tags=["t"])),
        fact(C, 1, 2, update(content="C edit"), {A: 1}),
        fact(A, 2, 3, delete("done"), {A: 1, B: 1}),
        fact(B, 2, 4, update(content="after the delete"), {A: 2, B: 1}),
        fact(C, 2, 3, update(remove=["t"]), {A: 1, C: 1}),
    ]
    e, orders = the_same_in_every_causal_order(facts)
    assert orders >= 10
    assert not e.visible and e.fields == {} and e.tags == {}
    assert [w.value for w in e.deleted] == ["done"]


def test_every_causal_order_of_several_entries_gives_the_same_bytes():
    other = bytes(16)
    facts = [
        fact(A, 1, 1, put("one")),
        fact(B, 1, 1, put("two", entry=other, tags=["a"])),
        fact(A, 2, 2, update(content="one, edited", entry=ID), {A: 1, B: 1}),
        fact(B, 2, 2, update(remove=["a"], entry=other), {B: 1}),
        fact(C, 1, 3, update(add=["a"], content="two, edited", entry=other), {A: 1, B: 1}),
        fact(C, 2, 4, delete(entry=ID), {A: 2, B: 1, C: 1}),
    ]
    states = set()
    for order in causal_orders(facts):
        entries: dict[bytes, Entry] = {}
        touched = mr.fold(entries, order, lambda _: None)
        assert touched == {ID, other}
        states.add(tuple((i, entries[i].to_bytes()) for i in sorted(entries)))
    assert len(states) == 1
    entries = dict(states.pop())
    two = Entry.from_bytes(other, entries[other])
    assert two.tag_set == ("a",) and two.value("content") == "two, edited"
    assert not Entry.from_bytes(ID, entries[ID]).visible


def test_folding_in_batches_through_stored_bytes_equals_one_fold():
    """The view folds batch by batch, storing each entry's bytes between them."""
    facts = [
        fact(A, 1, 1, put("first", tags=["x"])),
        fact(B, 1, 2, update(content="B", add=["y"]), {A: 1}),
        fact(A, 2, 2, update(content="A", remove=["x"]), {A: 1}),
        fact(C, 1, 3, update(confidence_bp=1), {A: 2, B: 1}),
    ]
    whole = folded(facts).to_bytes()
    for cut in range(1, len(facts)):
        stored: dict[bytes, bytes] = {}
        for batch in (facts[:cut], facts[cut:]):
            entries: dict[bytes, Entry] = {}
            mr.fold(entries, batch, lambda i, held=stored: Entry.from_bytes(i, held[i]) if i in held else None)
            stored.update({i: e.to_bytes() for i, e in entries.items()})
        assert stored[ID] == whole


# -- canonical bytes ---------------------------------------------------------------------

def test_to_bytes_and_from_bytes_round_trip():
    facts = [
        fact(A, 1, 1, put("naïve café ☕ \"quoted\" \n", tags=["ünïcode", "x"], confidence_bp=1234,
                          embedding=Embedding(model="m", vector=(1.0,))), scope="project:é"),
        fact(B, 1, 2, update(content="other", type="finding"), {A: 1}),
        fact(A, 2, 2, update(content="mine"), {A: 1}),
    ]
    e = folded(facts)
    raw = e.to_bytes()
    back = Entry.from_bytes(ID, raw)
    assert back == e
    assert back.to_bytes() == raw
    assert back.value("content") == "other" and back.scope == "project:é"
    assert back.tag_set == ("x", "ünïcode")
    assert "ünïcode".encode() in raw                         # not \u-escaped: one canonical form

    gone = folded([*facts, fact(C, 1, 3, delete("reason ✓"), {A: 2, B: 1})])
    assert Entry.from_bytes(ID, gone.to_bytes()) == gone
    assert Entry.from_bytes(ID, gone.to_bytes()).to_bytes() == gone.to_bytes()

    empty = Entry(ID)
    assert Entry.from_bytes(ID, empty.to_bytes()) == empty


def test_write_json_round_trip():
    w = Write(3, A, 1, 7, 123, b"\xee" * 32, "value")
    assert Write.from_json(w.to_json()) == w


@pytest.mark.parametrize("problem, text", [
    (mr.content_problem, "   "),
    (mr.content_problem, "x" * (mr.MAX_CONTENT_BYTES + 1)),
    (mr.content_problem, "é" * (mr.MAX_CONTENT_BYTES // 2 + 1)),   # bytes, not characters
    (mr.tag_problem, ""),
    (mr.tag_problem, "two words"),
    (mr.tag_problem, "x" * (mr.MAX_TAG_LEN + 1)),
    (mr.type_problem, "note"),
])
def test_the_checks_name_a_problem(problem, text):
    assert problem(text)


def test_the_checks_pass_good_values():
    assert mr.content_problem("x" * mr.MAX_CONTENT_BYTES) is None
    assert mr.tag_problem("project:agentlog") is None
    assert all(mr.type_problem(t) is None for t in mr.TYPES)
