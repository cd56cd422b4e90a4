"""One LMDB environment used safely by any number of threads and processes.

LMDB changes a map's size only while the process has no transaction open on it: every
transaction here holds a shared gate, and a resize (growing a full map, or adopting one
another process grew) holds it alone. The map reserves RESERVED_MAP of address space up
front (without writemap the file grows only as pages are written), so resizes are rare.

A data file shorter than its newest meta page says faults (SIGBUS) on the first read of a
missing page, so it is refused before it is mapped; every lmdb error is a StoreError naming
the store. Imports only lmdb and the errors: the fast preference lookup uses it too.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from agentlog.errors import StoreError

RESERVED_MAP = 1 << 40 if sys.maxsize > 1 << 32 else 1 << 30
_FALLBACK_MAP = 64 << 20               # where the address space is limited (ulimit -v)
DATA_FILE = "data.mdb"
_MAGIC = 0xBEEFC0DE
_META_END = 152                         # a meta page's header and MDB_meta, through mm_txnid (64-bit LMDB)
_DAMAGED = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError, lmdb.InvalidError)
# what reading a damaged file raises: lmdb's errors, and a stored view state that no longer parses
_UNDECODABLE = (lmdb.Error, ValueError, struct.error, IndexError)


def check_data_file(store_dir: Path) -> None:
    """Refuse a store directory or data file that is missing or empty, a data file that is not LMDB's,
    and one shorter than its newest meta page says.

    Raises:
        StoreError: naming the file and what is wrong with it.
    """
    data = Path(store_dir) / DATA_FILE
    if not data.is_file() or data.stat().st_size == 0:
        gone = f"the store at {store_dir} is missing" if not Path(store_dir).is_dir() else \
            f"{data} is {'empty' if data.is_file() else 'missing'}"
        raise StoreError(f"{gone}: restore it from a backup, or init a new home and sync it from another device")
    try:
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = f.read(_META_END)
            psize = int.from_bytes(first[40:44], sys.byteorder) if len(first) == _META_END else 0
            second = os.pread(f.fileno(), _META_END, psize) if psize else b""
    except OSError as exc:
        raise StoreError(f"cannot read {data}: {exc.strerror or exc}") from None
    metas = [m for m in (_meta(first), _meta(second)) if m is not None]
    if not metas:
        raise StoreError(f"{data} is not an LMDB data file (no valid meta page): restore it from a backup")
    _, last_page, page_size = max(metas)
    needed = (last_page + 1) * page_size
    if size < needed:
        raise StoreError(f"{data} is {size} bytes but its last transaction wrote {needed}: the file was cut short; "
                         "restore it from a backup, or init a new home and sync it from another device")


def _meta(raw: bytes) -> tuple[int, int, int] | None:
    """(txnid, last page, page size) of a meta page, or None if it is not one."""
    if len(raw) < _META_END or int.from_bytes(raw[16:20], sys.byteorder) != _MAGIC:
        return None
    page_size = int.from_bytes(raw[40:44], sys.byteorder)
    last_page, txnid = struct.unpack_from("=QQ", raw, 136)
    return (txnid, last_page, page_size) if page_size else None


class _Depth(threading.local):
    depth = 0                                   # transactions open in this thread


class Env:
    """An lmdb.Environment (`env`) whose transactions share a gate that a map resize takes alone.

    `what` names the store in errors ("the store at PATH"). Options go to lmdb.open.
    """

    def __init__(self, path: Path, what: str, *, map_size: int = RESERVED_MAP, **options):
        self.path, self.what = Path(path), what
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)
        self._open = 0                          # transactions open in this process
        self._resizing = False
        self._mine = _Depth()
        if (self.path / DATA_FILE).exists():
            check_data_file(self.path)
        try:
            self.env = self._open_env(map_size, options)
        except lmdb.Error as exc:
            raise self._failed("open", exc) from None

    def _open_env(self, map_size: int, options: dict) -> lmdb.Environment:
        """lmdb.open, again when another process grew the map between reading its size and the first
        transaction of the open (MDB_MAP_RESIZED: a new open adopts the grown size)."""
        for _ in range(8):
            try:
                return lmdb.open(str(self.path), map_size=map_size, subdir=True, **options)
            except lmdb.MapResizedError:
                continue
            except lmdb.MemoryError:
                if map_size <= _FALLBACK_MAP:
                    raise
                map_size = _FALLBACK_MAP
        raise StoreError(f"{self.what} keeps being resized while it is opened")

    def open_dbs(self, names, create: bool = True) -> dict:
        """Name -> handle of each named database (lmdb.NotFoundError if one is missing and not `create`).

        Opened inside a transaction of our own: py-lmdb's open_db without one waits for the writer lock while
        holding the GIL, which deadlocks against another thread of this process committing a write. (A
        read-only environment's open_db takes a read transaction, which waits for nothing; and a handle opened
        in a read transaction of ours would be lost, as py-lmdb resets rather than commits one.)"""
        for _ in range(8):
            self._enter()
            try:
                if self.env.flags()["readonly"]:
                    return {name: self.env.open_db(name.encode(), create=False) for name in names}
                with self.env.begin(write=True) as txn:
                    return {name: self.env.open_db(name.encode(), txn=txn, create=create) for name in names}
            except lmdb.MapResizedError:
                pass
            except lmdb.NotFoundError:
                raise
            except lmdb.Error as exc:
                raise self._failed("open", exc) from None
            finally:
                self._leave()
            self._resize(0)
        raise StoreError(f"{self.what} keeps resizing under this reader")

    def read(self, fn, buffers: bool = False):
        """fn(txn) in one read transaction; with `buffers`, values are memoryviews of the map, valid in it only."""
        return self._run(fn, write=False, buffers=buffers)

    def write(self, fn):
        """fn(txn) in one write transaction, growing the map when it is full."""
        return self._run(fn, write=True)

    def _run(self, fn, write: bool, buffers: bool = False):
        failures = lmdb.Error if write else _UNDECODABLE       # in a write, a ValueError is the input
        for _ in range(32):
            self._enter()
            try:
                with self.env.begin(write=write, buffers=buffers) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                size = self.env.info()["map_size"]
                grow = (2 * size, size)
            except lmdb.MapResizedError:
                grow = (0, None)
            except failures as exc:
                raise self._failed("write to" if write else "read", exc) from None
            finally:
                self._leave()
            self._resize(*grow)
        raise StoreError(f"{self.what} could not grow its map or keeps being resized under this process")

    @contextmanager
    def txn(self, write: bool = False, buffers: bool = False) -> Iterator[lmdb.Transaction]:
        """A transaction held open across the `with` block (a generator's, a tool's)."""
        for _ in range(8):
            self._enter()
            try:
                txn = self.env.begin(write=write, buffers=buffers)
            except lmdb.MapResizedError:
                self._leave()
                self._resize(0)
                continue
            except lmdb.Error as exc:
                self._leave()
                raise self._failed("use", exc) from None
            try:
                with txn:
                    yield txn
                return
            except _UNDECODABLE as exc:
                raise self._failed("use", exc) from None
            finally:
                self._leave()
        raise StoreError(f"{self.what} keeps resizing under this reader")

    def structure_problems(self) -> list[str]:
        """What LMDB's offline walk (lmdb.verify) finds wrong in the data file: pages reached twice or never,
        keys out of order, a broken free list. A commit by another process during the walk moves the file
        on under it: then it walks again, and gives up (finding nothing) after three."""
        from agentlog.store.structure import VerifyError, structure_problems
        for _ in range(3):
            before = self.info()["last_txnid"]
            try:
                found = structure_problems(str(self.path))
            except (VerifyError, OSError) as exc:
                found = [str(exc)]
            if not found or self.info()["last_txnid"] == before:
                return [f"{self.path / DATA_FILE}: {line}" for line in found]
        return []

    def _failed(self, verb: str, exc: Exception) -> StoreError:
        damaged = not isinstance(exc, lmdb.Error) or isinstance(exc, _DAMAGED)
        what = exc if isinstance(exc, lmdb.Error) else f"a stored record does not decode ({type(exc).__name__}: {exc})"
        return StoreError(f"cannot {verb} {self.what}: {what}" + (
            ": the file is damaged; run agentlog verify, restore it from a backup or sync a new home from another "
            "device" if damaged else ""))

    def copy(self, path: Path) -> None:
        """Write a consistent, compacted copy of the environment into the empty directory `path` (one read
        transaction: writers in any process go on meanwhile)."""
        self._enter()
        try:
            self.env.copy(str(path), compact=True)
        except lmdb.Error as exc:
            raise self._failed("copy", exc) from None
        finally:
            self._leave()

    def info(self) -> dict:
        self._enter()
        try:
            return self.env.info()
        finally:
            self._leave()

    def close(self) -> None:
        self.env.close()

    def _enter(self) -> None:
        mine = self._mine
        with self._lock:
            if self._resizing and not mine.depth:      # a thread already inside may open more (nested reads)
                while self._resizing:
                    self._gate.wait()
            self._open += 1
        mine.depth += 1

    def _leave(self) -> None:
        self._mine.depth -= 1
        with self._lock:
            self._open -= 1
            if self._resizing and not self._open:
                self._gate.notify_all()

    def _resize(self, size: int, seen: int | None = None) -> None:
        """set_mapsize(size) with no transaction open in this process (0: adopt the size another process
        set); skipped when another thread already grew the map past `seen`."""
        if self._mine.depth:
            raise StoreError(f"{self.what} needs its map resized while this thread holds a transaction open")
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._resizing = True
            while self._open:
                self._gate.wait()
        try:
            if seen is None or self.env.info()["map_size"] <= seen:
                self.env.set_mapsize(size)
        except lmdb.Error as exc:
            raise StoreError(f"cannot resize the map of {self.what}: {exc}") from None
        finally:
            with self._gate:
                self._resizing = False
                self._gate.notify_all()
