"""The walk of the data file's structure (agentlog.store.structure) finds what py-lmdb's own walk finds, in the
same order, on a sound file and on copies damaged in their page headers, node pointers, node headers and keys."""

from __future__ import annotations

import random

import pytest

from agentlog.log import payloads
from agentlog.store import structure

lmdb_verify = pytest.importorskip("lmdb.verify")

PAGE = 4096


@pytest.fixture
def data_file(laptop, tmp_path):
    """A compacted copy of a store with events over many leaf pages; its data file's bytes."""
    for first in range(0, 600, 200):
        laptop.append_many([payloads.Observation(setting=f"s{i % 9}", value=f"value {i}" * (1 + i % 5))
                            for i in range(first, first + 200)])
    path = tmp_path / "copy"
    path.mkdir()
    laptop.env.copy(str(path), compact=True)
    return path, (path / "data.mdb").read_bytes()


def _walk(walker, path):
    try:
        return walker(str(path))
    except (lmdb_verify.VerifyError, OSError) as exc:
        return ["raised", type(exc).__name__, str(exc)]


def test_the_faster_walk_is_in_use():
    """On the py-lmdb release it was written against; a later one whose walker differs falls back to its own
    walk (slower, same findings: the tests below run on whichever is in use)."""
    import lmdb
    if not lmdb.__version__.startswith("3.0."):
        pytest.skip(f"py-lmdb {lmdb.__version__}: the faster walk was written against 3.0")
    assert structure._usable()


def test_a_sound_file_passes_both_walks(data_file):
    path, _ = data_file
    assert structure.structure_problems(str(path)) == lmdb_verify.verify(str(path)) == []


def test_damaged_copies_give_the_same_findings_in_the_same_order(data_file):
    path, raw = data_file
    rng, found = random.Random(21), 0
    for case in range(150):
        data = bytearray(raw)
        for _ in range(rng.choice((1, 1, 2, 4))):
            page = rng.randrange(2, len(data) // PAGE) * PAGE
            if case % 3 == 0:
                at = page + rng.randrange(64)                  # the page header and the first node pointers
            elif case % 3 == 1:
                at = page + PAGE - 1 - rng.randrange(PAGE // 2)   # nodes (headers, keys, values) grow from the end
            else:
                at = page + rng.randrange(PAGE)
            data[at] ^= 1 << rng.randrange(8)
        (path / "data.mdb").write_bytes(bytes(data))
        expected = _walk(lmdb_verify.verify, path)
        assert _walk(structure.structure_problems, path) == expected, f"case {case}"
        found += bool(expected)
    assert found >= 30                     # the damage did reach the structure, not only values


def test_a_cut_file_gives_the_same_findings(data_file):
    path, raw = data_file
    for size in (len(raw) - PAGE, len(raw) // 2, 3 * PAGE):
        (path / "data.mdb").write_bytes(raw[:size])
        expected = _walk(lmdb_verify.verify, path)
        assert expected and _walk(structure.structure_problems, path) == expected


def test_keys_out_of_order_are_found_as_lmdb_finds_them(data_file):
    path, raw = data_file
    with open(path / "data.mdb", "rb") as f:
        walker = lmdb_verify._Verifier(f, len(raw))
        walker.detect_engine()
    flags, pointers = walker.hdrsz - 6, walker.hdrsz
    data, swapped = bytearray(raw), 0
    for page in range(2 * PAGE, len(data), PAGE):
        if swapped < 3 and data[page + flags] == 0x02:               # a leaf page (P_LEAF alone)
            first, second = page + pointers, page + pointers + 2     # its first two nodes change places
            data[first : first + 2], data[second : second + 2] = data[second : second + 2], data[first : first + 2]
            swapped += 1
    (path / "data.mdb").write_bytes(bytes(data))
    expected = _walk(lmdb_verify.verify, path)
    assert swapped == 3 and any("out of order" in line for line in expected)
    assert _walk(structure.structure_problems, path) == expected


def test_without_the_faster_walk_lmdb_walks(data_file, monkeypatch):
    path, raw = data_file
    (path / "data.mdb").write_bytes(raw[: len(raw) // 2])
    monkeypatch.setattr(structure, "_usable", lambda: False)
    expected = lmdb_verify.verify(str(path))
    assert expected and structure.structure_problems(str(path)) == expected
