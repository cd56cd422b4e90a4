"""Text embeddings for the memory view's semantic search.

Every embedder returns float32 rows of unit length (an all-zero row for text with no
words), so a dot product is a cosine. Vectors are stored next to the embedder's `name`:
vectors of different names must never be compared. The hashing embedder's output is part
of its name: changing its tokens, features, weights or hash changes every vector, and
must come with a new name.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from agentlog.errors import InvalidValueError, UsageError

DEFAULT_EMBEDDER = "agentlog-hash-384"

_WORD = re.compile(r"\w+")
_DIM = 384
_PERSON = b"agentlog-hash"
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.35
_CHUNK = 512


class Embedder(Protocol):
    """Turns texts into unit-length float32 rows; `name` identifies the vectors it makes."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns an array of shape (len(texts), dim), each row unit length or all zero."""
        ...


@functools.lru_cache(maxsize=1 << 16)
def _bucket(feature: str) -> tuple[int, float]:
    """The bucket and sign of one feature, both from one BLAKE2b digest (stable everywhere)."""
    value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8, person=_PERSON).digest(), "little")
    return value % _DIM, -1.0 if value >> 63 else 1.0


@functools.lru_cache(maxsize=1 << 15)
def _word_features(word: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The buckets and signed weights of a word's unigram and its boundary-padded trigrams."""
    weights: dict[int, float] = {}
    bucket, sign = _bucket("w " + word)
    weights[bucket] = sign * _UNIGRAM_WEIGHT
    padded = f"<{word}>"
    for i in range(len(padded) - 2):
        bucket, sign = _bucket("c " + padded[i:i + 3])
        weights[bucket] = weights.get(bucket, 0.0) + sign * _TRIGRAM_WEIGHT
    return tuple(weights), tuple(weights.values())


class HashingEmbedder:
    """Feature hashing of words, word pairs and character trigrams into 384 signed buckets.

    Good for lexical and near-lexical similarity: shared words and phrases, word forms
    ("dark", "darker"), typos, any script; offline, no model, the same vectors in every
    process on every machine. Blind to meaning without shared letters: synonyms,
    paraphrase and other languages score about 0 ("couch" against "sofa").

    Text is NFKC-normalized and lowercased, words are `\\w+` runs. Features: each word
    (weight 1.0), each pair of neighbouring words (0.5), each trigram of the word
    between `<` and `>` (0.35). A word or pair seen tf times in a text counts 1 + ln(tf).
    """

    name = DEFAULT_EMBEDDER
    dim = _DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds each text; a text with no words gets an all-zero row.

        Raises:
            InvalidValueError: `texts` is a single string, or holds something not a string.
        """
        if isinstance(texts, str):
            raise InvalidValueError("embed takes a sequence of texts, not one string")
        out = np.empty((len(texts), _DIM), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start:start + _CHUNK]
            out[start:start + len(chunk)] = _embed_chunk(chunk)
        return out


def _embed_chunk(texts: Sequence[str]) -> np.ndarray:
    """Embeds a few hundred texts with one bincount over all their features."""
    buckets: list[int] = []
    weights: list[float] = []
    counts: list[int] = []
    for text in texts:
        if not isinstance(text, str):
            raise InvalidValueError(f"embed takes strings, not {type(text).__name__}")
        start = len(buckets)
        words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
        for word, tf in _counted(words):
            word_buckets, word_weights = _word_features(word)
            buckets.extend(word_buckets)
            weights.extend(word_weights if tf == 1 else [w * (1.0 + math.log(tf)) for w in word_weights])
        for pair, tf in _counted([f"b {a} {b}" for a, b in zip(words, words[1:])]):
            bucket, sign = _bucket(pair)
            buckets.append(bucket)
            weights.append(sign * _BIGRAM_WEIGHT * (1.0 + math.log(tf)))
        counts.append(len(buckets) - start)
    rows = np.repeat(np.arange(len(counts)), counts)
    flat = rows * _DIM + np.asarray(buckets, dtype=np.int64)
    matrix = np.bincount(flat, weights=weights, minlength=len(counts) * _DIM).reshape(len(counts), _DIM)
    return normalized(matrix)


def _counted(items: list[str]):
    """(item, count) for each distinct item; skips building a Counter when nothing repeats (the usual case)."""
    if len(set(items)) == len(items):
        return zip(items, itertools.repeat(1))
    return Counter(items).items()


class SentenceTransformerEmbedder:
    """A sentence-transformers model: embeddings that capture meaning, not only shared words.

    Needs the optional extra (`pip install 'agentlog[embeddings]'`) and the model's
    files, which sentence-transformers downloads on first use.
    """

    def __init__(self, model: str = "sentence-transformers/all-MiniLM-L6-v2"):
        """Loads `model`.

        Raises:
            UsageError: the sentence_transformers package is not installed.
        """
        try:
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as error:
            if error.name != "sentence_transformers":
                raise
            raise UsageError(
                f"the embedding model {model} needs the optional extra: pip install 'agentlog[embeddings]'"
            ) from error
        self.name = model
        self._model = SentenceTransformer(model)
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds each text with the model, rows normalized by the model."""
        if isinstance(texts, str):
            raise InvalidValueError("embed takes a sequence of texts, not one string")
        vectors = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


_HASHING = HashingEmbedder()


@functools.lru_cache(maxsize=4)
def _sentence_transformer(name: str) -> SentenceTransformerEmbedder:
    """Loads a model once per process: loading takes seconds, embedding a query milliseconds."""
    return SentenceTransformerEmbedder(name)


def embedder_for(name: str | None) -> Embedder:
    """The embedder that makes vectors named `name`; None means DEFAULT_EMBEDDER.

    Raises:
        InvalidValueError: `name` is empty or not a string.
        UsageError: `name` is a sentence-transformers model and the package is not installed.
    """
    if name is None or name == DEFAULT_EMBEDDER:
        return _HASHING
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"embedding model name must be a non-empty string, not {name!r}")
    return _sentence_transformer(name)


def check_vector(vector, dim: int | None, where: str) -> np.ndarray:
    """A copy of `vector` as a 1-D float32 array, checked before it is stored or searched with.

    Raises:
        InvalidValueError: naming `where`, when the vector is not 1-D numbers, is empty,
            holds NaN or infinity (also after rounding to float32), or has not `dim` values.
    """
    try:
        raw = np.asarray(vector)
    except (TypeError, ValueError) as error:
        raise InvalidValueError(f"{where}: embedding is not a sequence of numbers ({error})") from error
    if raw.dtype.kind not in "iuf":
        raise InvalidValueError(f"{where}: embedding must hold numbers, not {raw.dtype}")
    with np.errstate(over="ignore"):
        array = raw.astype(np.float32)
    if array.ndim != 1:
        raise InvalidValueError(f"{where}: embedding must be 1-D, not of shape {array.shape}")
    if array.size == 0:
        raise InvalidValueError(f"{where}: embedding is empty")
    if not np.isfinite(array).all():
        raise InvalidValueError(f"{where}: embedding holds NaN or infinity (or a value too large for float32)")
    if dim is not None and array.size != dim:
        raise InvalidValueError(f"{where}: embedding has {array.size} dimensions, the model has {dim}")
    return array


def normalized(matrix) -> np.ndarray:
    """`matrix` as float32 with each row (the last axis) scaled to unit length; zero rows stay zero."""
    array = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0).astype(np.float32)
