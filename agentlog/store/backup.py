"""Backups of a home and restoring them: a consistent, compacted copy of the store beside the device key, and
putting one in place as a home that asks its peers for its own later events before they can fork it.

A backup is a directory holding `device.key` (mode 0600) and `store/` (LMDB's compacted copy, taken in one read
transaction, so `serve` and other writers go on meanwhile). A restored home is marked (agentlog.store.forks
mark_restored): replication pulls this device's events written after the backup before anything else; what it
writes before it reaches a peer forks its log, and the fork heals (docs/operations.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from agentlog.errors import HomeError, UsageError
from agentlog.store import forks, home
from agentlog.store.env import DATA_FILE
from agentlog.store.nudge import PORT_FILE


def backup(store, dest: Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """Copy `store` (open on its home) and the home's key into the new or empty directory `dest`."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty directory: give backup a new directory")
    started = time.perf_counter()
    key_path = store.path.parent / home.KEY_FILE
    if not key_path.is_file():
        raise HomeError(f"{store.path.parent} holds no device key to back up", str(store.path.parent))
    if progress:
        progress(0, 2)
    try:
        (dest / home.STORE_DIR).mkdir(mode=0o700, parents=True)
        store.environment.copy(dest / home.STORE_DIR)
        _sync(dest / home.STORE_DIR / DATA_FILE)
        if progress:
            progress(1, 2)
        _write_private(dest / home.KEY_FILE, key_path.read_bytes())
    except OSError as exc:
        raise HomeError(f"cannot write a backup at {dest}: {exc.strerror or exc}", str(dest)) from None
    if progress:
        progress(2, 2)
    size = (dest / home.STORE_DIR / DATA_FILE).stat().st_size
    return {"path": str(dest), "device": store.device.hex(), "events": store.count(), "bytes": size,
            "elapsed_s": round(time.perf_counter() - started, 3)}


def restore(src: Path, target: Path, force: bool = False) -> dict:
    """Put the backup at `src` in place as the home `target`, marked restored.

    Refuses a home where `serve` runs, and one that holds a device already unless `force`.
    """
    from agentlog.crypto import DeviceKey
    from agentlog.store.store import Store

    src, target = Path(src), Path(target)
    seed_path, data = src / home.KEY_FILE, src / home.STORE_DIR / DATA_FILE
    if not (seed_path.is_file() and data.is_file()):
        raise UsageError(f"{src} is not an agentlog backup: it needs {home.KEY_FILE} and {home.STORE_DIR}/{DATA_FILE}")
    _, seed = home.read_key(src)
    if serving(target):
        raise UsageError(f"agentlog serve is running on {target}: stop it before restoring into this home")
    live = (target / home.KEY_FILE).exists() or (target / home.STORE_DIR / DATA_FILE).exists()
    if live and not force:
        raise UsageError(f"{target} already holds a device: restore into a new --home, or give --force to replace it")
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (target / home.STORE_DIR).exists():
            shutil.rmtree(target / home.STORE_DIR)
        (target / home.STORE_DIR).mkdir(mode=0o700)
        shutil.copyfile(data, target / home.STORE_DIR / DATA_FILE)
        _sync(target / home.STORE_DIR / DATA_FILE)
        if (target / home.KEY_FILE).exists():
            (target / home.KEY_FILE).unlink()
        _write_private(target / home.KEY_FILE, seed.hex().encode() + b"\n")
    except OSError as exc:
        raise HomeError(f"cannot restore into {target}: {exc.strerror or exc}", str(target)) from None
    key = DeviceKey(seed)
    with Store(target / home.STORE_DIR, key, create=False) as store:
        if store.meta("device") not in (None, key.public):
            raise UsageError(f"{src}: its key and its store belong to different devices")
        forks.mark_restored(store)
        head = store.heads().get(key.public)
        return {"home": str(target), "device": key.public.hex(), "events": store.count(),
                "restored_at": {"epoch": head.epoch, "seq": head.seq} if head else None}


def serving(target: Path) -> bool:
    """Whether an `agentlog serve` holds this home: the nudge port it published is bound on loopback."""
    try:
        port = int((target / home.STORE_DIR / PORT_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _sync(path: Path) -> None:
    """Flush a written file to the disk: a backup that a crash can cut short is no backup."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
