"""Erased bytes gone from the disk: overwrite what LMDB freed, rewrite live pages that still hold them,
then search every file under the home for them.

LMDB is copy-on-write: deleting a value frees its page without zeroing it, and a page rewritten after a
delete keeps the deleted bytes in its unused middle (mdb_node_del moves the other nodes over them only in
part; a page buffer reused from LMDB's in-memory pool is not cleared). So after an erasing commit:
  1. fill: write transactions put zero-filled single overflow pages (psize - 16 bytes, every byte of the
     page written) into a scratch database until LMDB stops reusing free pages (last_pgno grows); again in
     a few rounds, the filler kept, since a page freed by transaction T is reused only once no reader is
     older than T and T is not one of the last two; then the filler is dropped (its pages are free again,
     holding zeros);
  2. find: a plain byte search of every file under the home;
  3. touch: a live leaf or branch page of data.mdb that still holds a needle is copied by LMDB again
     (a put of one of its keys with the same value): the copy takes only the page's used parts, and the
     old copy is free, so the next fill overwrites it. Then fill and find again, a few times.
Only ordinary transactions: serve and other processes keep the environment open meanwhile. A needle still
found at the end (a long reader pins the pages, or a page this cannot touch) is reported; the caller
retries later (docs/erasure.md).
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import struct
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.store.env import DATA_FILE

FILLER_DB = "scrub.filler"
ROUNDS = 3                        # fill rounds: pages freed by the erasing commit become reusable within two
ATTEMPTS = 4                      # find and touch, then fill again, at most this many times
BATCH = 256                       # filler pages per write transaction while free pages are left
STEP = 8                          # then, until the file grows
MIN_NEEDLE = 8                    # shorter needles match by chance: the caller leaves them out
_PAGE_HEAD = struct.Struct("=QHHHH")      # pgno, pad, flags, lower, upper (64-bit LMDB page header)
_NODE_HEAD = struct.Struct("=HHHH")       # lo, hi, flags, key size
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META = 0x01, 0x02, 0x04, 0x08
FEW = 2                                   # more needles than this are searched for in one pass (_scan)
_LONG = 15                                # a needle this long covers an 8-byte-aligned word wherever it lies
_TABLE_BITS = 22
_MULTIPLIER = 0x9E3779B97F4A7C15           # Fibonacci hashing of a word into the bit table
_CHUNK = 1 << 21                          # 8-byte windows per numpy step (16 MiB of temporaries)
CONTENT_FIELDS = frozenset({"content", "value", "baseline", "reason"})
"""Text fields of erasable payloads that hold what the user said (not names shared with live events: a
setting, a type, a context key), searched for on their own besides the payload's stored bytes."""
STATUS_KEY = b"scrub"                     # meta: the last scrub's report, for every process of the home
FOUND_KEPT = 100                          # where needles were still found, at most this many kept in it


@dataclass
class ScrubReport:
    """What a scrub did: free pages overwritten (`pages`), fill rounds, live pages rewritten (`touched`),
    where needles were still found at the end (`found`, (path, offset)) and readers older than the erasure
    still open (`pinned`): either means pending."""

    pages: int = 0
    rounds: int = 0
    touched: int = 0
    found: list[tuple[Path, int]] = field(default_factory=list)
    pinned: int = 0                      # readers older than the erasure still open at the end
    seconds: float = 0.0

    @property
    def pending(self) -> bool:
        return bool(self.found) or self.pinned > 0

    def as_dict(self) -> dict:
        return {"pages": self.pages, "rounds": self.rounds, "touched": self.touched, "pending": self.pending,
                "pinned": self.pinned, "seconds": round(self.seconds, 3),
                "found": [{"file": str(path), "offset": offset} for path, offset in self.found]}


def needles_of(stored: bytes, decoded) -> list[bytes]:
    """What must be in no file once a payload is erased: its bytes as stored, and each text field of its
    decoded form (None: it does not read here) named in CONTENT_FIELDS, of at least MIN_NEEDLE bytes."""
    out = [bytes(stored)]
    pending = [decoded] if decoded is not None else []
    while pending:
        item = pending.pop()
        if dataclasses.is_dataclass(item):
            for f in dataclasses.fields(item):
                value = getattr(item, f.name)
                if isinstance(value, str) and f.name in CONTENT_FIELDS:
                    out.append(value.encode())
                elif dataclasses.is_dataclass(value) or isinstance(value, tuple):
                    pending.append(value)
        elif isinstance(item, tuple):
            pending.extend(x for x in item if dataclasses.is_dataclass(x))
    return [n for n in out if len(n) >= MIN_NEEDLE]


def find(root: Path, needles: Iterable[bytes]) -> list[tuple[Path, int]]:
    """Every (file, offset) under `root` (a home, a store directory or one file) where a needle occurs:
    a plain byte search of each regular file, memory-mapped. Files that vanish meanwhile are skipped; one
    that cannot be read is listed at offset -1 (nothing shows it clean)."""
    wanted = sorted({bytes(n) for n in needles if n})
    if not wanted:
        return []
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    many = [n for n in wanted if len(n) >= _LONG] if len(wanted) > FEW else []
    few = sorted(set(wanted) - set(many))
    found = []
    for path in files:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    continue
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    for needle in few:
                        at = data.find(needle)
                        while at >= 0:
                            found.append((path, at))
                            at = data.find(needle, at + 1)
                    found.extend((path, at) for at in _scan(data, many))
        except (FileNotFoundError, ValueError):          # removed meanwhile; emptied between stat and map
            continue
        except OSError:
            found.append((path, -1))
    return sorted(set(found))


def _scan(data, needles: list[bytes]) -> list[int]:
    """Offsets of many needles (each of _LONG bytes or more) in one pass over the data's 8-byte-aligned
    words. An occurrence of a needle that long covers such words whole, at one of 8 phases of the needle, so
    for each phase one word it covers goes into a bit table: the word fewest needles share, then the one with
    the most distinct bytes (structure shared by many payloads, and zero runs, abound in data.mdb). Every
    aligned word of the data is looked up in it (numpy), and each hit compared whole: as fast for a thousand
    needles as bytes.find is for a few."""
    if not needles or len(data) < _LONG:
        return []
    import numpy as np

    shared = Counter(w for n in needles for w in {n[i: i + 8] for i in range(len(n) - 7)})

    def rarity(needle: bytes, at: int) -> tuple[int, int]:
        word = needle[at: at + 8]
        return shared[word], -len(set(word))

    keys: dict[int, list[tuple[bytes, int]]] = {}
    for needle in needles:
        for phase in range(8):                            # the words an occurrence at this phase covers whole:
            at = min(range(phase, len(needle) - 7, 8), key=lambda i, n=needle: rarity(n, i))    # the rarest
            keys.setdefault(int.from_bytes(needle[at: at + 8], "little"), []).append((needle, at))
    shift, multiplier = np.uint64(64 - _TABLE_BITS), np.uint64(_MULTIPLIER)
    table = np.zeros(1 << _TABLE_BITS, dtype=bool)
    table[(np.fromiter(keys, dtype=np.uint64, count=len(keys)) * multiplier) >> shift] = True
    found = set()
    count = len(data) // 8
    for start in range(0, count, _CHUNK):
        part = np.frombuffer(data, dtype=np.uint64, count=min(_CHUNK, count - start), offset=8 * start)
        for i in np.flatnonzero(table[(part * multiplier) >> shift]).tolist():
            word = 8 * (start + i)
            for needle, offset in keys.get(int(part[i]), ()):
                at = word - offset
                if at >= 0 and data[at: at + len(needle)] == needle:
                    found.add(at)
        del part                                            # the map closes only once no array views it
    return sorted(found)


def scrub(store, needles: Iterable[bytes] = (), progress: Callable[[str, int, int], None] | None = None,
          *, rounds: int = ROUNDS, attempts: int = ATTEMPTS, since: int | None = None) -> ScrubReport:
    """Overwrite the free pages of `store`'s environment, rewrite live pages that still hold a needle, and
    report where needles are still found under the store's home (the directory holding the store), and
    how many readers older than transaction `since` (the erasing one) still pin pages it freed.

    `progress(stage, done, total)` hears of each fill round and each attempt.
    """
    started = time.perf_counter()
    needles = [bytes(n) for n in needles if len(n) >= MIN_NEEDLE]
    env = store.environment
    env.env.reader_check()                                  # readers of processes that died pin no pages
    report = ScrubReport()
    home = Path(store.path).parent
    filled, psize = 0, env.env.stat()["psize"]
    try:
        for attempt in range(attempts):
            for _ in range(rounds):                         # the filler stays: later rounds write what is new
                written = _fill(env, filled)
                filled += written
                report.pages += written
                report.rounds += 1
                if progress:
                    progress("fill", report.rounds, rounds * (attempt + 1))
            report.found = find(home, needles)
            if not report.found and filled:                 # search again after the drop, the last write
                _drop_filler(env)
                filled = 0
                report.found = find(home, needles)
            if progress:
                progress("find", attempt + 1, attempts)
            if not report.found:
                break
            pages = {offset // psize for path, offset in report.found
                     if path.name == DATA_FILE and path.parent == Path(store.path)}
            report.touched += _touch(store, pages)
            time.sleep(0.02 * attempt)                     # a short reader elsewhere ends meanwhile
    finally:
        if filled:
            _drop_filler(env)
    if since is not None:
        report.pinned = sum(1 for txnid in readers(env) if txnid < since)
    report.seconds = time.perf_counter() - started
    return report


def readers(env) -> list[int]:
    """The snapshot (transaction id) each open read transaction of any process reads."""
    out = []
    for line in env.env.readers().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            out.append(int(parts[2]))
    return out


class Scrubber:
    """A store's scrubs: collects the needles of what a write transaction erased (`erased`, called inside
    it), scrubs after the commit (`write`), keeps the needles of a pending scrub in memory for the next
    `run`, and keeps the last report in the store's meta for every process (`status`, `wanted`)."""

    def __init__(self, store):
        self._store = weakref.ref(store)         # no cycle: a store dropped unclosed still closes at once
        self._local = threading.local()
        self._lock = threading.Lock()
        self._running = threading.Lock()         # one scrub at a time in this process: they share the filler
        self._due: set[bytes] = set()
        self.last: ScrubReport | None = None     # this process's last scrub

    @property
    def store(self):
        return self._store()

    def erased(self, needles: Iterable[bytes]) -> None:
        """Inside a write transaction: these bytes go when it commits."""
        found = getattr(self._local, "needles", None)
        if found is not None:
            found.update(needles)

    def write(self, run, fn):
        """run(fn) (a write transaction), then the scrub of whatever it erased."""
        self._local.needles = set()
        try:
            result = run(fn)
            needles = self._local.needles
        finally:
            self._local.needles = None
        if needles:
            self.run(needles, self.store.last_txnid())
        return result

    def run(self, needles: Iterable[bytes] = (), since: int | None = None, progress=None) -> ScrubReport:
        """Scrub for these needles (and any still due), and for the erasure of transaction `since` (and any
        earlier one still pending in any process); record the report; keep the needles due while pending."""
        with self._lock:
            self._due.update(needles)
            due = set(self._due)
        earlier = self.status().get("since")
        if earlier is not None:
            since = earlier if since is None else min(since, earlier)
        with self._running:
            report = self.last = scrub(self.store, due, progress, since=since)
        with self._lock:
            if not report.pending:
                self._due -= due
        doc = report.as_dict()
        doc.update(found=doc["found"][:FOUND_KEPT], time_ms=self.store.now_ms(),
                   since=since if report.pending else None)
        self.store.set_meta({STATUS_KEY.decode(): json.dumps(doc, sort_keys=True).encode()})
        return report

    def wanted(self) -> bool:
        """Whether a scrub is due: needles of this process still found, or another process's scrub pending."""
        with self._lock:
            if self._due:
                return True
        return bool(self.status().get("pending"))

    def status(self) -> dict:
        """The last scrub's report in any process of this home ({} when none ran)."""
        raw = self.store.meta(STATUS_KEY.decode())
        return json.loads(bytes(raw)) if raw else {}


def _fill(env, first: int) -> int:
    """One round: zero-filled single overflow pages into FILLER_DB (keys from `first` on) until the file grows:
    one page first (the pages the last two transactions freed are not reusable yet), then about as many as
    the free pages in batches of BATCH, then STEP at a time, so the file grows by a few pages at most.
    Returns the filler pages written."""
    db = env.open_dbs([FILLER_DB])[FILLER_DB]
    value = bytes(env.env.stat()["psize"] - _PAGE_HEAD.size)      # one overflow page, every byte of it written
    start, written = env.info()["last_pgno"], 0
    free = _free_pages(env)
    free -= free // 64 + STEP                              # the filler's own leaf pages, the free list's pages

    def put(n):
        def write(txn):
            for i in range(first + written, first + written + n):
                txn.put(i.to_bytes(8, "big"), value, db=db)
        return write

    while written <= start:                                 # free pages are fewer than the file's
        n = 1 if not written else min(BATCH, free - written) if written < free else STEP
        env.write(put(n))
        written += n
        if env.info()["last_pgno"] > start:
            break
    return written


def _free_pages(env) -> int:
    """The data file's pages that no database uses (the free list's own pages and those the last two
    transactions freed included): an upper bound of what a fill can reuse."""
    names = _db_names(env)
    dbs = env.open_dbs(names, create=False).values()

    def used(txn):
        stats = [txn.stat(db) for db in dbs] + [env.env.stat()]
        return sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats)
    return max(0, env.info()["last_pgno"] + 1 - 2 - env.read(used))


def _db_names(env) -> list[str]:
    """Every named database of the environment (the keys of its main database)."""
    return env.read(lambda txn: [bytes(k).decode() for k in txn.cursor().iternext(values=False)])


def _drop_filler(env) -> None:
    """Empty FILLER_DB: its pages are free again, holding zeros."""
    db = env.open_dbs([FILLER_DB])[FILLER_DB]
    env.write(lambda txn: txn.drop(db, delete=False))


def _touch(store, pages: set[int]) -> int:
    """Have LMDB copy each live leaf or branch page among `pages` (data.mdb page numbers) again: a put of a
    key it holds (a branch: the first key under it) with the value it has, in every database holding it.
    Returns the pages touched."""
    keys = [key for key in (_page_key(store.path / DATA_FILE, page) for page in sorted(pages)) if key]
    if not keys:
        return 0
    env = store.environment
    dbs = env.open_dbs(_db_names(env), create=False).values()

    def touch(txn):
        done = 0
        for key in keys:
            hit = False
            for db in dbs:
                cursor = txn.cursor(db=db)
                if cursor.set_range(key):
                    hit = True
                    cursor.put(cursor.key(), cursor.value())
            done += hit
        return done
    return env.write(touch)


def _page_key(path: Path, page: int) -> bytes | None:
    """A key held in a leaf page, or the key of a branch page's second node (its first is empty); None for
    an overflow, meta or unreadable page."""
    try:
        with open(path, "rb") as f:
            psize = int.from_bytes(os.pread(f.fileno(), 44, 0)[40:44], "little") or 4096
            raw = os.pread(f.fileno(), psize, page * psize)
    except OSError:
        return None
    if len(raw) < _PAGE_HEAD.size:
        return None
    _, _, flags, lower, upper = _PAGE_HEAD.unpack_from(raw)
    if not flags & (_P_LEAF | _P_BRANCH) or flags & (_P_OVERFLOW | _P_META):
        return None
    count = (lower - _PAGE_HEAD.size) // 2
    for index in (range(count) if flags & _P_LEAF else range(1, count)):
        ptr = int.from_bytes(raw[_PAGE_HEAD.size + 2 * index: _PAGE_HEAD.size + 2 * index + 2], "little")
        if not upper <= ptr <= psize - _NODE_HEAD.size:
            return None
        ksize = _NODE_HEAD.unpack_from(raw, ptr)[3]
        key = raw[ptr + _NODE_HEAD.size: ptr + _NODE_HEAD.size + ksize]
        if key:
            return key
    return None
