"""Search quality for `make bench` (issue 23): recall@3 on the labelled set that ships with the tests
(tests/memory/data/search_set.json: 50 entries a person would keep, 40 queries with the entries they
expect first) for BM25 alone, the embedder's vectors alone and the two fused (hybrid), with the built-in
embedder, and with a model2vec model when one is on this machine (AGENTLOG_BENCH_MODEL2VEC=DIRECTORY, or
minishlab/potion-base-8M in the Hugging Face cache; never downloaded here). Recall does not vary between
runs; the time of one hybrid query (median of `runs` passes over the 40 queries) is printed beside
BLAKE2b-256 of 200 B measured in the same run. Run alone: `python tools/bench_search.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                       # the set and its scoring live with the tests

from tests.helpers import search_set  # noqa: E402

HUB_MODEL = "minishlab/potion-base-8M"


def local_model2vec() -> tuple[str | None, str]:
    """A model2vec model already on this machine as an embedder spec, or None and why not."""
    try:
        import model2vec  # noqa: F401
    except ModuleNotFoundError:
        return None, "model2vec is not installed (pip install 'agentlog[embeddings]')"
    given = os.environ.get("AGENTLOG_BENCH_MODEL2VEC")
    if given:
        return f"model2vec:{given}", ""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(HUB_MODEL, "model.safetensors")
    if isinstance(found, str):
        return f"model2vec:{Path(found).parent}", ""
    return None, f"no model2vec model on this machine (set AGENTLOG_BENCH_MODEL2VEC, or cache {HUB_MODEL})"


def blake2b_per_s(n: int = 20_000) -> float:
    data = os.urandom(200)
    start = time.perf_counter()
    for _ in range(n):
        hashlib.blake2b(data, digest_size=32).digest()
    return n / (time.perf_counter() - start)


def measure(embedder: str | None, runs: int) -> dict:
    """Recall@3 per ranking and the hybrid query time on a fresh home holding the set."""
    data = search_set.load()
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-search-") as tmp:
        store, ids = search_set.filled_home(Path(tmp) / "home", data, embedder)
        try:
            out = {"model": store.memory.embedder.name}
            for ranking in search_set.RANKINGS:
                out[ranking], out[f"{ranking}_missed"] = search_set.recall(store, ids, data, ranking)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                for q in data["queries"]:
                    store.memory.search(q["query"], 3)
                times.append((time.perf_counter() - start) / len(data["queries"]) * 1e6)
            out["query_us"] = statistics.median(times)
        finally:
            store.close()
    return out


def run(sizes, runs: int, quick: bool = False) -> tuple[list, dict]:
    """Every embedder available; for bench.py (no figures of the shared table: recall is printed in the notes)."""
    info = {"load_average": os.getloadavg()[0], "blake2b": blake2b_per_s(), "rows": [measure(None, runs)]}
    spec, why = local_model2vec()
    if spec:
        info["rows"].append(measure(spec, runs))
    else:
        info["skipped"] = why
    return [], info


def print_notes(info: dict, figures, runs: int) -> None:
    data = search_set.load()
    print(f"\nsearch quality: recall@3 on the labelled set ({len(data['entries'])} entries, "
          f"{len(data['queries'])} queries), {runs} timing run{'s' * (runs != 1)}, 1-minute load average "
          f"{info['load_average']:.1f} on {os.cpu_count()} cpus")
    print(f"{'embedder':<40} {'lexical':>8} {'vector':>8} {'hybrid':>8} {'hybrid query':>13}")
    for row in info["rows"]:
        print(f"{row['model'][:40]:<40} {row['lexical']:>8.3f} {row['vector']:>8.3f} {row['hybrid']:>8.3f} "
              f"{row['query_us']:>10,.0f} µs")
    print(f"{'BLAKE2b-256 of 200 B, same run':<40} {info['blake2b']:>35,.0f} ops/s")
    if info.get("skipped"):
        print(f"model2vec row skipped: {info['skipped']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print_notes(run(None, args.runs)[1], {}, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
