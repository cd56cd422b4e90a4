"""Embeddings: the hashing embedder's vectors are stable across runs and processes, unit
length, and score shared words and word forms (not synonyms); vectors are checked on entry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from agentlog.errors import InvalidValueError
from agentlog.memory.embedding import (
    DEFAULT_EMBEDDER,
    HashingEmbedder,
    check_vector,
    embedder_for,
    normalized,
)

SENTENCE = "The user prefers dark mode at night, and darker themes généralement."


def cosine(a: str, b: str) -> float:
    vectors = HashingEmbedder().embed([a, b])
    return float(vectors[0] @ vectors[1])


def test_rows_are_unit_length_float32_and_empty_text_is_zero():
    texts = ["prefers dark mode at night", "", "book a table for two", "!!! ???", "a"]
    vectors = HashingEmbedder().embed(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[[0, 2, 4]], 1.0, atol=1e-6)
    assert not vectors[1].any() and not vectors[3].any()
    assert HashingEmbedder().embed([]).shape == (0, 384)


def test_same_text_gives_the_same_vector_wherever_it_sits_in_a_batch():
    first = HashingEmbedder().embed([SENTENCE])
    many = HashingEmbedder().embed(["other text"] * 700 + [SENTENCE])
    assert first.tobytes() == many[-1:].tobytes()
    assert cosine(SENTENCE, SENTENCE) == pytest.approx(1.0, abs=1e-6)


def test_vectors_are_the_same_in_another_process_with_another_hash_seed():
    script = textwrap.dedent(f"""
        import sys
        from agentlog.memory.embedding import HashingEmbedder
        sys.stdout.write(HashingEmbedder().embed([{SENTENCE!r}]).tobytes().hex())
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert bytes.fromhex(result.stdout) == HashingEmbedder().embed([SENTENCE]).tobytes()


def test_vectors_do_not_change_between_versions():
    """The name promises these vectors: a change here needs a new embedder name. Unigrams weigh
    1.0, the bigram 0.5, trigrams 0.35; two trigrams of "dark mode" cancel in a shared bucket."""
    vector = HashingEmbedder().embed(["dark mode"])[0]
    expected = {83: 0.2026, 128: -0.2026, 145: -0.2894, 209: 0.2026, 215: -0.2026,
                232: 0.2026, 253: 0.2026, 285: 0.5788, 352: -0.5788}
    assert np.flatnonzero(vector).tolist() == sorted(expected)
    assert vector[sorted(expected)].tolist() == pytest.approx([expected[i] for i in sorted(expected)], abs=1e-4)


def test_related_texts_score_clearly_above_unrelated():
    related = cosine("prefers dark mode at night", "dark mode in the evening")
    unrelated = cosine("prefers dark mode at night", "book a table for two")
    assert related > 0.25 and related > unrelated + 0.2


def test_word_forms_typos_and_case_match_partly():
    assert cosine("dark", "darker") > 0.1
    assert cosine("recieve", "receive") > 0.1
    assert cosine("Dark MODE", "dark mode") == pytest.approx(1.0, abs=1e-6)


def test_synonyms_do_not_match():
    """The limit of a lexical embedder: meaning without shared letters scores about zero."""
    assert abs(cosine("couch", "sofa")) < 0.15


def test_repeated_words_count_sublinearly():
    once = HashingEmbedder().embed(["dark mode"])[0]
    tripled = HashingEmbedder().embed(["dark dark dark mode"])[0]
    assert 0.5 < float(once @ tripled) < 1.0


def test_embed_refuses_a_bare_string_and_non_strings():
    with pytest.raises(InvalidValueError):
        HashingEmbedder().embed("dark mode")
    with pytest.raises(InvalidValueError):
        HashingEmbedder().embed(["dark", None])


def test_embedder_for_defaults_to_the_shared_hashing_embedder():
    assert embedder_for(None).name == DEFAULT_EMBEDDER == "agentlog-hash-384"
    assert embedder_for(None) is embedder_for(DEFAULT_EMBEDDER)
    assert embedder_for(None).dim == 384
    with pytest.raises(InvalidValueError):
        embedder_for("")


@pytest.mark.parametrize("vector, message", [
    ([0.1, 0.2], "has 2 dimensions, the model has 3"),
    ([0.1, float("nan"), 0.3], "NaN"),
    ([0.1, float("inf"), 0.3], "NaN or infinity"),
    ([1e39, 0.0, 0.0], "too large for float32"),
    ([[0.1, 0.2, 0.3]], "1-D"),
    ([], "empty"),
    (["0.1", "0.2", "0.3"], "numbers"),
    ([[0.1], [0.2, 0.3]], "not a sequence of numbers"),
])
def test_check_vector_refuses_bad_vectors_and_says_where(vector, message):
    with pytest.raises(InvalidValueError, match="memory entry 7") as raised:
        check_vector(vector, 3, "memory entry 7")
    assert message in str(raised.value)


def test_check_vector_returns_a_float32_copy():
    source = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    checked = check_vector(source, 3, "x")
    source[0] = 9.0
    assert checked.dtype == np.float32 and checked.tolist() == [1.0, 2.0, 3.0]
    assert check_vector((1, 2), None, "x").tolist() == [1.0, 2.0]


def test_normalized_scales_rows_and_keeps_zero_rows():
    result = normalized([[3.0, 4.0], [0.0, 0.0]])
    assert result.dtype == np.float32
    assert result.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [0.0, 0.0]]
    assert normalized(np.array([0.0, 2.0])).tolist() == [0.0, 1.0]

