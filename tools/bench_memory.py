"""The memory figures of `make bench` (issue 4), run by tools/bench.py.

One home per bench is bulk-loaded with `mem_entries` memory entries (each with a random
384-dimensional unit vector from the home's model, so the index stores them as given and
embeds nothing), through `store.append_many` in batches of MemoryPut events; the first
search then builds the search index of all of them. On that home each run times single
durable `memory.put` calls, `memory.get` of random ids, top-10 searches (semantic, with a
type filter, lexical) and a cold start in a new process (open the home, first search,
and the resident memory it takes). The semantic searches run while the paced
writer (tools/bench_writer.py) appends to the same home, memory entries among its events:
a search ranks the ones not yet indexed in memory, and a thread of the searching process
indexes them durably behind the writer.
Every time is wall clock, in process, with the store warm unless said otherwise.

Run as a script (`bench_memory.py --cold HOME QUERY`) it is that cold-start process:
it prints one JSON line of its timings.
"""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from agentlog.log import payloads
from agentlog.memory.embedding import DEFAULT_EMBEDDER
from agentlog.store import home

DIM = 384
TYPES = (("fact", 40), ("preference", 20), ("decision", 15), ("finding", 12), ("context", 8), ("conversation", 5))
FILTER_TYPE = "decision"
"""The type filter of the filtered searches: about 15 % of the entries."""
TAGS = tuple(f"topic-{i}" for i in range(40))
SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou"))


def vocabulary(rng: random.Random, n: int = 4000) -> list[str]:
    """n distinct made-up words of two or three syllables."""
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3)))))
    return sorted(words)


def content(rng: random.Random, vocab: list[str]) -> str:
    """A sentence-like entry of 6 to 24 words, some words far more common than others."""
    return " ".join(vocab[min(int(rng.paretovariate(0.6)) - 1, len(vocab) - 1)] if rng.random() < 0.3
                    else rng.choice(vocab) for _ in range(rng.randint(6, 24))).capitalize() + "."


def entry_kind(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """A type and zero to two tags."""
    kind = rng.choices([t for t, _ in TYPES], [w for _, w in TYPES])[0]
    return kind, tuple(rng.sample(TAGS, rng.choice((0, 1, 1, 2))))


def queries(rng: random.Random, vocab: list[str], n: int, words: tuple[int, int]) -> list[str]:
    """n query strings of words[0] to words[1] vocabulary words."""
    return [" ".join(rng.sample(vocab, rng.randint(*words))) for _ in range(n)]


def timed_ns(fn, calls) -> list[int]:
    """The wall time of each call fn(*args), in nanoseconds."""
    times = []
    for args in calls:
        start = time.perf_counter_ns()
        fn(*args)
        times.append(time.perf_counter_ns() - start)
    return times


def interleaved(steps: dict, calls) -> dict[str, list[int]]:
    """The wall time in ns of each step on each call's arguments, the steps taking turns call by call, so
    that a primitive and the operation built on it see the same load. `calls` holds one args tuple per step."""
    times: dict[str, list[int]] = {name: [] for name in steps}
    for args in calls:
        for (name, step), arg in zip(steps.items(), args):
            start = time.perf_counter_ns()
            step(*arg)
            times[name].append(time.perf_counter_ns() - start)
    return times


def build(path: Path, entries: int, batch: int, rng: random.Random, vocab: list[str]) -> tuple[list[bytes], dict]:
    """A new home at path holding `entries` memory entries with stored embeddings; returns their ids and
    the load's figures. Only the append_many calls are timed, not making the payloads."""
    vectors = np.random.default_rng(rng.randrange(1 << 32))
    store = home.create(path, "bench")
    ids, elapsed = [], 0.0
    try:
        store.create_group("bench")
        for start in range(0, entries, batch):
            n = min(batch, entries - start)
            units = vectors.standard_normal((n, DIM), dtype=np.float32)
            units /= np.linalg.norm(units, axis=1, keepdims=True)
            items = []
            for vector in units.tolist():
                kind, tags = entry_kind(rng)
                items.append(payloads.MemoryPut(
                    entry=os.urandom(16), type=kind, content=content(rng, vocab), tags=tags,
                    confidence_bp=rng.randrange(5000, 10001),
                    embedding=payloads.Embedding(model=DEFAULT_EMBEDDER, vector=tuple(vector))))
            began = time.perf_counter()
            store.append_many(items)
            elapsed += time.perf_counter() - began
            ids.extend(item.entry for item in items)
        first = queries(rng, vocab, 1, (3, 3))[0]
        began = time.perf_counter()
        result = store.memory.search(first)
        index_seconds = time.perf_counter() - began
        store_bytes = sum(f.stat().st_size for f in (path / home.STORE_DIR).iterdir())
        with store.raw_txn() as txn:
            entry_bytes = round(np.mean([len(txn.get(i, db=store.db("views.memory"))) for i in ids[:1000]]))
    finally:
        store.close()
    if result.searched != entries or result.excluded or result.reembedded:
        raise RuntimeError(f"the index holds {result.searched} usable rows of {entries} "
                           f"({result.reembedded} re-embedded, {result.excluded} excluded)")
    return ids, {"entries": entries, "load_seconds": elapsed, "index_seconds": index_seconds,
                 "store_mb": store_bytes / 1e6, "entry_bytes": entry_bytes}


def rss_kb(field: str = "RssAnon") -> int:
    """A field of /proc/self/status in kB (RssAnon: the process's own heap, not mapped files);
    the peak RSS where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cold_start(path: Path, query: str) -> dict:
    """In this (new) process: import, open the home, run the first search (which scans the index's
    stored blocks in place and reads its terms' postings), and the anonymous memory it holds afterwards."""
    began = time.perf_counter()
    from agentlog.memory import api, index  # noqa: F401  (what opening a home and a search import on first use)
    from agentlog.store import store as _store  # noqa: F401
    imported = time.perf_counter()
    gc.collect()
    before = rss_kb()
    store = home.open_home(path)
    opened = time.perf_counter()
    result = store.memory.search(query)
    searched = time.perf_counter()
    gc.collect()
    after = rss_kb()
    store.close()
    return {"import_ms": (imported - began) * 1000, "open_ms": (opened - imported) * 1000,
            "search_ms": (searched - opened) * 1000, "rss_mb": (after - before) / 1024,
            "searched": result.searched, "hits": len(result.hits)}


def evict(path: Path) -> bool:
    """Drop the home's store files from the page cache (posix_fadvise DONTNEED: those files only, and
    their pages are clean once written durably); False where the platform cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for file in (path / home.STORE_DIR).iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def run_cold(path: Path, query: str) -> dict:
    """cold_start in a new interpreter."""
    done = subprocess.run([sys.executable, __file__, "--cold", str(path), query], check=False, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the cold-start process failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


WRITER_MEMORY_EVERY = 50
"""While the semantic searches are timed, the paced writer of tools/bench_writer.py appends to the same
home, every WRITER_MEMORY_EVERY-th event a memory entry that the next search indexes."""


def memory_run(path: Path, ids: list[bytes], sizes, rng: random.Random, vocab: list[str], percentile,
               info: dict, writer) -> dict[str, float]:
    """One run of the memory figures on the bulk-loaded home at path (percentile: nearest rank, of ns;
    writer: (start, stop) of the paced writer, as tools/bench.py runs it)."""
    def p50_p99(times: list[int], scale: float) -> tuple[float, float]:
        return percentile(times, 50) / scale, percentile(times, 99) / scale

    out: dict[str, float] = {}
    store = home.open_home(path)
    try:
        memory = store.memory
        singles = []
        for _ in range(sizes.mem_puts):
            kind, tags = entry_kind(rng)
            singles.append((content(rng, vocab), kind, tags))
        began = time.perf_counter()
        for text, kind, tags in singles:
            memory.put(text, type=kind, tags=tags)
        out["mem_put"] = sizes.mem_puts / (time.perf_counter() - began)
        semantic = queries(rng, vocab, sizes.mem_queries, (2, 5))
        lexical = queries(rng, vocab, sizes.mem_lexical, (1, 2))
        began = time.perf_counter()
        memory.search(semantic[0])           # syncs the single puts into the index (embedding them)
        info["put_sync_ms"].append((time.perf_counter() - began) * 1000)
        memory.search(semantic[1], type=FILTER_TYPE)      # builds the filter's mask
        began = time.perf_counter()
        memory.search(lexical[0], lexical=True)           # BM25's index: built by the first (hybrid) search
        info["lexical_warmup_ms"].append((time.perf_counter() - began) * 1000)

        db = store.db("views.memory")

        def lmdb_get(entry_id: bytes) -> bytes | None:
            with store.raw_txn() as txn:
                return txn.get(entry_id, db=db)
        sample = [((i,), (i,)) for i in rng.choices(ids, k=sizes.mem_gets)]
        steps = {"mem_lmdb_get": lmdb_get, "mem_get": lambda i: store.memory.get(i)}
        times, again = interleaved(steps, sample), interleaved(steps, sample)
        for name, spent in times.items():
            out[f"{name}_p50"], out[f"{name}_p99"] = p50_p99(spent, 1e3)
        out["mem_get_best_p99"] = percentile([min(a, b) for a, b in zip(times["mem_get"], again["mem_get"])], 99) / 1e3

        embedder, matrix = memory.embedder, memory.matrix()
        vectors = np.ascontiguousarray(matrix.vectors[: matrix.n])      # row-major, as the primitives scan it
        hits = []
        synced: dict[str, list[bool]] = {"mem_search": [], "mem_search_lexical": [], "mem_search_type": []}
        unindexed = store.memory_cache.setdefault(("pending", embedder.name, embedder.dim), {})

        def search(query: str, name: str = "mem_search", **filters) -> None:
            hits.append(len(store.memory.search(query, k=10, **filters).hits))
            synced[name].append(bool(unindexed))          # it ranked writer's entries not yet indexed
        steps = {"mem_embed": lambda q: embedder.embed([q]), "mem_matmul": lambda v: vectors @ v,
                 "mem_einsum": lambda v: np.einsum("ij,j->i", vectors, v),
                 "mem_search": search, "mem_search_type": lambda q: search(q, "mem_search_type", type=FILTER_TYPE)}
        start_writer, stop_writer = writer
        proc = start_writer(path, sizes, "--memory-every", str(WRITER_MEMORY_EVERY))
        try:
            times = interleaved(steps, [((q,), (v,), (v,), (q,), (q,))
                                        for q, v in zip(semantic, embedder.embed(semantic))])
        finally:
            info["writer"].append(stop_writer(proc))
        out["mem_embed_p50"] = percentile(times["mem_embed"], 50) / 1e6
        for name in ("mem_matmul", "mem_einsum", "mem_search", "mem_search_type"):
            out[f"{name}_p50"], out[f"{name}_p99"] = p50_p99(times[name], 1e6)
        for name in ("mem_search", "mem_search_type"):
            quiet = [t for t, s in zip(times[name], synced[name]) if not s]
            info["synced"].setdefault(name, []).append((sum(synced[name]), len(quiet)))
            info["quiet_p99"].setdefault(name, []).append(percentile(quiet, 99) / 1e6 if quiet else float("nan"))
        if min(hits) < 10:
            info["notes"].append(f"a semantic search found {min(hits)} hits, not 10")
        hits.clear()
        out["mem_search_lexical_p50"], out["mem_search_lexical_p99"] = p50_p99(
            timed_ns(lambda q: search(q, "mem_search_lexical", lexical=True), [(q,) for q in lexical]), 1e6)
        info["lexical_hits"].append(sum(hits) / len(hits))
        out["mem_vector_mb"] = vectors.nbytes / 1e6
        info["indexed"] = matrix.n
    finally:
        store.close()
    cold = run_cold(path, semantic[-1])
    if cold["hits"] != 10:
        info["notes"].append(f"the cold-start search found {cold['hits']} hits, not 10")
    info["cold"].append(cold)
    out["mem_cold"] = cold["open_ms"] + cold["search_ms"]
    out["mem_rss"] = cold["rss_mb"]
    return out


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--cold":
        sys.exit("usage: bench_memory.py --cold HOME QUERY   (tools/bench.py runs it)")
    print(json.dumps(cold_start(Path(sys.argv[2]), sys.argv[3])))
