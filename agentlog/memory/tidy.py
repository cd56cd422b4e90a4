"""Near-duplicate entries: pairs that say nearly the same thing, for `memory duplicates` and a merge.

A pair's similarity is the mean of its cosine (this home's embedder) and the Jaccard overlap of
its BM25 terms (agentlog.memory.lexical): the vector sees shared meaning or shared letters, the
terms make sure the same words carry it. Only entries of one scope pair (only those can merge).
"""

from __future__ import annotations

import numpy as np

from agentlog.memory.lexical import row_text, terms

DEFAULT_THRESHOLD = 0.35
_BLOCK = 512


def similarity(cosine: float, a: frozenset, b: frozenset) -> float:
    """The mean of the cosine (clipped at 0) and the terms' Jaccard overlap."""
    overlap = len(a & b) / len(a | b) if a or b else 0.0
    return (max(0.0, cosine) + overlap) / 2


def pairs(matrix, threshold: float = DEFAULT_THRESHOLD) -> list[tuple[bytes, bytes, float]]:
    """(id, id, similarity) of each pair at or over `threshold`, the smaller id first; most similar first,
    then by ids. A row without a usable vector counts a cosine of 0."""
    rows = matrix.rows
    live = [i for i in range(matrix.n) if rows[i] is not None]
    if len(live) < 2:
        return []
    vectors = matrix.vectors[live]
    bags = [frozenset(terms(row_text(rows[i]))) for i in live]
    scopes = [rows[i].scope for i in live]
    least_cosine = 2 * threshold - 1          # below it even identical terms cannot reach the threshold
    found = []
    for start in range(0, len(live), _BLOCK):
        block = np.einsum("ij,kj->ik", vectors[start:start + _BLOCK], vectors)
        for a, b in zip(*np.nonzero(block >= least_cosine)):
            x, y = start + int(a), int(b)
            if y <= x or scopes[x] != scopes[y]:
                continue
            score = similarity(float(block[a, b]), bags[x], bags[y])
            if score >= threshold:
                first, second = sorted((matrix.id_at(live[x]), matrix.id_at(live[y])))
                found.append((first, second, score))
    found.sort(key=lambda p: (-round(p[2], 6), p[0], p[1]))
    return found
