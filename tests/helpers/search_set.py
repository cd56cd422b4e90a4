"""The labelled memory search set (tests/memory/data/search_set.json) and its recall@k, for the quality
test and tools/bench_search.py: a home holding the set's entries, searched by each ranking."""

from __future__ import annotations

import json
from pathlib import Path

from agentlog.store import home

DATA = Path(__file__).resolve().parent.parent / "memory" / "data" / "search_set.json"
RANKINGS = ("lexical", "vector", "hybrid")


def load() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def filled_home(path: Path, data: dict, embedder: str | None = None):
    """A new home at `path` holding the set's entries (and using `embedder`, if given); returns (store, key -> id)."""
    store = home.create(path, "bench")
    store.create_group("bench")
    if embedder:
        store.memory.use_embedder(embedder)
    ids = {key: store.memory.put(e["content"], tags=e["tags"]) for key, e in data["entries"].items()}
    return store, ids


def recall(store, ids: dict, data: dict, ranking: str, k: int = 3) -> tuple[float, list[str]]:
    """Mean over the queries of the share of expected entries (at most k) in the top k; and the queries missed."""
    total, missed = 0.0, []
    names = {v: key for key, v in ids.items()}
    for q in data["queries"]:
        found = [names[h.entry.id] for h in store.memory.search(q["query"], k, ranking=ranking, decay=False).hits]
        share = len(set(found) & set(q["expected"])) / min(k, len(q["expected"]))
        total += share
        if share < 1:
            missed.append(q["query"])
    return total / len(data["queries"]), missed
