"""Erased bytes gone from the disk: overwrite what LMDB freed, rewrite live pages that still hold them,
then search every file under the home for them.

LMDB is copy-on-write: deleting a value frees its page without zeroing it, and a page rewritten after a
delete keeps the deleted bytes in its unused middle (mdb_node_del moves the other nodes over them only in
part; a page buffer reused from LMDB's in-memory pool is not cleared). So after an erasing commit:
  1. fill: write transactions put zero-filled single overflow pages (psize - 16 bytes, every byte of the
     page written) into a scratch database until LMDB stops reusing free pages (last_pgno grows), over a
     few rounds, since a page freed by transaction T is reused only once no reader is older than T and T
     is not one of the last two; then the filler is dropped (its pages are free again, holding zeros);
  2. find: a plain byte search of every file under the home;
  3. touch: a live leaf or branch page of data.mdb that still holds a needle is copied by LMDB again
     (a put of one of its keys with the same value): the copy takes only the page's used parts, and the
     old copy is free, so the next fill overwrites it. Then fill and find again, a few times.
Only ordinary transactions: serve and other processes keep the environment open meanwhile. A needle still
found at the end (a long reader pins the pages, or a page this cannot touch) is reported; the caller
retries later (docs/erasure.md).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.store.env import DATA_FILE

FILLER_DB = "scrub.filler"
ROUNDS = 3                        # fill rounds: pages freed by the erasing commit become reusable within two
ATTEMPTS = 4                      # find and touch, then fill again, at most this many times
BATCH = 256                       # filler pages per write transaction
MIN_NEEDLE = 8                    # shorter needles match by chance: the caller leaves them out
_PAGE_HEAD = struct.Struct("=QHHHH")      # pgno, pad, flags, lower, upper (64-bit LMDB page header)
_NODE_HEAD = struct.Struct("=HHHH")       # lo, hi, flags, key size
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META = 0x01, 0x02, 0x04, 0x08


@dataclass
class ScrubReport:
    """What a scrub did: free pages overwritten (`pages`), fill rounds, live pages rewritten (`touched`),
    and where needles were still found at the end (`found`, (path, offset)): non-empty means pending."""

    pages: int = 0
    rounds: int = 0
    touched: int = 0
    found: list[tuple[Path, int]] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return bool(self.found)

    def as_dict(self) -> dict:
        return {"pages": self.pages, "rounds": self.rounds, "touched": self.touched, "pending": self.pending,
                "found": [{"file": str(path), "offset": offset} for path, offset in self.found]}


def find(root: Path, needles: Iterable[bytes]) -> list[tuple[Path, int]]:
    """Every (file, offset) under `root` (a home, a store directory or one file) where a needle occurs:
    a plain byte search of each regular file, memory-mapped. Files that vanish meanwhile are skipped."""
    wanted = sorted({bytes(n) for n in needles if n})
    if not wanted:
        return []
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    found = []
    for path in files:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    continue
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    for needle in wanted:
                        at = data.find(needle)
                        while at >= 0:
                            found.append((path, at))
                            at = data.find(needle, at + 1)
        except (FileNotFoundError, ValueError):          # removed meanwhile; emptied between stat and map
            continue
    return sorted(set(found))


def scrub(store, needles: Iterable[bytes] = (), progress: Callable[[str, int, int], None] | None = None,
          *, rounds: int = ROUNDS, attempts: int = ATTEMPTS) -> ScrubReport:
    """Overwrite the free pages of `store`'s environment, rewrite live pages that still hold a needle, and
    report where needles are still found under the store's home (the directory holding the store).

    `progress(stage, done, total)` hears of each fill round and each attempt.
    """
    needles = [bytes(n) for n in needles if len(n) >= MIN_NEEDLE]
    env = store.environment
    env.env.reader_check()                                  # readers of processes that died pin no pages
    report = ScrubReport()
    home = Path(store.path).parent
    for attempt in range(attempts):
        for _ in range(rounds):
            report.pages += _fill(env)
            report.rounds += 1
            if progress:
                progress("fill", report.rounds, rounds * (attempt + 1))
        report.found = find(home, needles)
        if progress:
            progress("find", attempt + 1, attempts)
        if not report.found:
            break
        pages = {offset // env.env.stat()["psize"] for path, offset in report.found
                 if path.name == DATA_FILE and path.parent == Path(store.path)}
        report.touched += _touch(store, pages)
    return report


def _fill(env) -> int:
    """One round: zero-filled single overflow pages into FILLER_DB until the file grows, then drop them.
    Returns the filler pages written."""
    db = env.open_dbs([FILLER_DB])[FILLER_DB]
    psize = env.env.stat()["psize"]
    value = bytes(psize - _PAGE_HEAD.size)                  # one overflow page, every byte of it written
    start, written = env.info()["last_pgno"], 0
    limit = start + 2 * BATCH                               # free pages are at most the file's pages

    def put(txn):
        for i in range(written, written + BATCH):
            txn.put(i.to_bytes(8, "big"), value, db=db)

    while written < limit:
        env.write(put)
        written += BATCH
        if env.info()["last_pgno"] > start:
            break
    env.write(lambda txn: txn.drop(db, delete=False))
    return written


def _touch(store, pages: set[int]) -> int:
    """Have LMDB copy each live leaf or branch page among `pages` (data.mdb page numbers) again: a put of a
    key it holds (a branch: the first key under it) with the value it has, in every database holding it.
    Returns the pages touched."""
    keys = [key for key in (_page_key(store.path / DATA_FILE, page) for page in sorted(pages)) if key]
    if not keys:
        return 0
    env = store.environment
    names = env.read(lambda txn: [bytes(k).decode() for k in txn.cursor().iternext(values=False)])
    dbs = env.open_dbs(names, create=False).values()

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
