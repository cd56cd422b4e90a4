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
from pathlib import Path
from typing import Protocol

import numpy as np

from agentlog.errors import InvalidValueError, UsageError
from agentlog.log import kinds

DEFAULT_EMBEDDER = "agentlog-hash-384"

_WORD = re.compile(r"\w+")
_DIM = 384
_PERSON = b"agentlog-hash"
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.35
_CHUNK = 512
MAX_DIM = kinds.MAX_EMBEDDING_DIM


class Embedder(Protocol):
    """Turns texts into unit-length float32 rows; `name` identifies the vectors it makes."""

    name: str
    dim: int
    meaning: bool                     # vectors close in meaning, not only in shared letters
    sparse: bool                      # a query's vector has few nonzero dims: the index is kept by dimension

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
    meaning = False
    sparse = True                     # a query of a few words fills a few dozen of the 384 dims

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


MODEL2VEC_PREFIX = "model2vec:"
_MODEL2VEC_FILES = ["config.json", "model.safetensors", "tokenizer.json", "README.md"]


class Model2VecEmbedder:
    """A model2vec static-embedding model: embeddings that capture meaning, without torch.

    Needs the optional extra (`pip install 'agentlog[embeddings]'`: numpy, tokenizers,
    safetensors). `spec` is `model2vec:` and a local model directory or a Hugging Face
    model id; an id is fetched once into `cache` and loaded from there afterwards. The
    vectors' name is `model2vec:` and the id, or for a directory its name and the BLAKE2b
    of its weights, so a changed model file never mixes its vectors with the old ones.
    """

    meaning = True
    sparse = False

    def __init__(self, spec: str, cache: Path | None = None):
        """Loads the model.

        Raises:
            UsageError: the model2vec package is not installed, or the model cannot be found, fetched or loaded.
        """
        try:
            from model2vec import StaticModel
        except ModuleNotFoundError as error:
            raise UsageError(
                f"the embedding model {spec} needs the optional extra: pip install 'agentlog[embeddings]'"
            ) from error
        where = spec[len(MODEL2VEC_PREFIX):]
        if not where:
            raise UsageError("model2vec: needs a model directory or a hub id, e.g. model2vec:minishlab/potion-base-8M")
        folder = Path(where).expanduser()
        if folder.is_dir():
            digest = _file_digest(folder / "model.safetensors")
            self.name = f"{MODEL2VEC_PREFIX}{folder.resolve().name}@{digest}"
        else:
            folder = _fetched(where, cache)
            self.name = spec
        try:
            self._model = StaticModel.from_pretrained(folder, normalize=True, force_download=False)
        except Exception as error:           # safetensors, tokenizers and json each raise their own
            raise UsageError(f"cannot load the embedding model {spec}: {_first_line(error)}") from None
        self.dim = int(self._model.dim)
        if not 0 < self.dim <= MAX_DIM:
            raise UsageError(f"the embedding model {spec} has {self.dim} dimensions, not 1 to {MAX_DIM}")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds each text with the model; a text with no known token gets an all-zero row."""
        if isinstance(texts, str):
            raise InvalidValueError("embed takes a sequence of texts, not one string")
        for text in texts:
            if not isinstance(text, str):
                raise InvalidValueError(f"embed takes strings, not {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), show_progress_bar=False)
        return normalized(np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _file_digest(path: Path) -> str:
    """The first 12 hex digits of the file's BLAKE2b (a missing file: the loader says so later)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        pass
    return h.hexdigest()[:12]


def _fetched(model_id: str, cache: Path | None) -> Path:
    """The model's directory in `cache`, fetched from the Hugging Face hub the first time.

    Raises:
        UsageError: no cache to fetch into, or the hub has no such model or cannot be reached.
    """
    if cache is None or model_id.count("/") != 1 or model_id.startswith(("/", ".", "~")):
        raise UsageError(f"no model directory {model_id}: give a model directory or a hub id such as "
                         "minishlab/potion-base-8M")
    folder = cache / model_id.replace("/", "--")
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    try:
        import huggingface_hub

        huggingface_hub.snapshot_download(model_id, repo_type="model", local_dir=folder,
                                          allow_patterns=_MODEL2VEC_FILES)
    except Exception as error:           # the hub client raises many kinds: not found, offline, refused
        raise UsageError(f"cannot fetch the embedding model {model_id}: {_first_line(error)}") from None
    return folder


_HASHING = HashingEmbedder()


@functools.lru_cache(maxsize=4)
def _model2vec(spec: str, cache: Path | None) -> Model2VecEmbedder:
    """Loads a model once per process: loading takes a while, embedding a query microseconds."""
    return Model2VecEmbedder(spec, cache)


def embedder_for(name: str | None, cache: Path | None = None) -> Embedder:
    """The embedder `name` chooses: None or DEFAULT_EMBEDDER, or `model2vec:` and a directory or hub id
    (fetched once into `cache`).

    Raises:
        InvalidValueError: `name` is empty or not a string.
        UsageError: `name` names no known embedder, or its model cannot be loaded.
    """
    if name is None or name == DEFAULT_EMBEDDER:
        return _HASHING
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"embedding model name must be a non-empty string, not {name!r}")
    if not name.startswith(MODEL2VEC_PREFIX):
        raise UsageError(f"unknown embedder {name!r}: use {DEFAULT_EMBEDDER} or model2vec:DIRECTORY_OR_HUB_ID")
    return _model2vec(name, cache)


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
