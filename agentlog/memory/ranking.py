"""Hybrid ranking: reciprocal rank fusion of the BM25 and vector rankings, and decay by disuse. Pure.

Fusion (Cormack et al., 2009): an entry's score is the sum over the rankings that hold it of
1 / (RRF_K + rank), rank counted from 1. Ranks, not scores, are fused, so BM25's unbounded
scores and cosines need no common scale. RRF_K = 60 is the paper's constant: it keeps one
ranking's first place from outweighing an entry both rankings place well.

Decay: an entry's fused score is multiplied by
    DECAY_FLOOR + (1 - DECAY_FLOOR) * 0.5 ** (idle / DECAY_HALF_LIFE_MS)
where idle is the time since it was last written (on any device, by the log's times) or read
here, whichever is later, in whole days (so one search asked twice in a day ranks the same).
An entry idle for a half-life keeps 75% of its score; one idle for years keeps half, never
less, so it still ranks and is never hidden.

Every ordering ends with the entry id, so equal scores rank the same on every device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RRF_K = 60
POOL = 100                                # candidates each ranking contributes, at least k
DAY_MS = 86_400_000
DECAY_HALF_LIFE_MS = 180 * DAY_MS         # half a year
DECAY_FLOOR = 0.5


def fuse(rankings: Sequence[Sequence[tuple[bytes, float]]]) -> list[tuple[bytes, float]]:
    """Reciprocal rank fusion of rankings (each best first); all entries found, best first, ties by id."""
    scores: dict[bytes, float] = {}
    for ranking in rankings:
        for rank, (entry_id, _) in enumerate(ranking, 1):
            scores[entry_id] = scores.get(entry_id, 0.0) + 1.0 / (RRF_K + rank)
    return ordered(scores)


def decay(idle_ms: int) -> float:
    """The factor an entry idle for `idle_ms` keeps of its score: 1 when just used, falling to DECAY_FLOOR."""
    idle = max(0, idle_ms) // DAY_MS * DAY_MS
    return DECAY_FLOOR + (1.0 - DECAY_FLOOR) * 0.5 ** (idle / DECAY_HALF_LIFE_MS)


def ordered(scores: Mapping[bytes, float]) -> list[tuple[bytes, float]]:
    """(entry id, score) best first, equal scores by entry id."""
    return [(entry_id, score) for entry_id, score in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]
