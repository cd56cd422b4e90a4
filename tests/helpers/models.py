"""A tiny model2vec model written with model2vec's own save path: real loading and embedding, no download.

Its words lie in three directions: seats and flights, cars and parking, furniture (couch and sofa
share one), so a search by meaning has something to find. `dim` varies the size for mismatch tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GROUPS = {
    0: ("seat", "seats", "aisle", "plane", "flight", "flights", "window"),
    1: ("car", "parked", "parking", "level", "garage"),
    2: ("couch", "sofa", "settee", "chair"),
}


def tiny_model(path: Path, dim: int = 8, seed: int = 0) -> Path:
    """Save a model at `path` (a directory) and return it; skips the test when model2vec is not installed."""
    pytest.importorskip("model2vec", reason="model2vec is not installed (pip install 'agentlog[embeddings]')")
    from model2vec import StaticModel
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = ["[UNK]", "[PAD]", *(w for group in GROUPS.values() for w in group)]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = np.random.default_rng(seed)
    vectors = rng.normal(scale=0.05, size=(len(words), dim)).astype(np.float32)
    vectors[:2] = 0
    for group, members in GROUPS.items():
        for w in members:
            vectors[words.index(w), group % dim] += 1.0
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(str(path))
    return path
