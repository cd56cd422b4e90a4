"""A device's home directory: its key file and its store.

Layout: `device.key` (hex Ed25519 seed, mode 0600) and `store/` (the LMDB
environment). The home comes from --home, else AGENTLOG_HOME, else
~/.local/share/agentlog.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agentlog.errors import HomeError, NoHomeError

KEY_FILE = "device.key"
STORE_DIR = "store"


def resolve(home: str | os.PathLike | None = None) -> Path:
    """The home directory to use, from the argument, AGENTLOG_HOME or the default."""
    if home:
        return Path(home).expanduser()
    if os.environ.get("AGENTLOG_HOME"):
        return Path(os.environ["AGENTLOG_HOME"]).expanduser()
    return Path("~/.local/share/agentlog").expanduser()


def create(home: str | os.PathLike | None, name: str, key=None):
    """Create a home with a new device key (or `key`, a DeviceKey made before: pairing) and an empty store;
    the caller starts or joins a group."""
    from agentlog.crypto import DeviceKey
    from agentlog.store.store import Store
    path = resolve(home)
    if (path / KEY_FILE).exists():
        raise HomeError(f"{path} already holds an agentlog device; use another --home", str(path))
    if not name or len(name) > 64 or not name.isprintable():
        raise HomeError("device name must be 1 to 64 printable characters", str(path))
    if path.exists() and not path.is_dir():
        raise HomeError(f"{path} is a file, not a directory: give --home a directory", str(path))
    key = key or DeviceKey.generate()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.seed.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise HomeError(f"cannot create a home at {path}: {exc.strerror or exc}", str(path)) from None
    store = Store(path / STORE_DIR, key)
    store.set_meta({"device": key.public, "name": name.encode()})
    return store


def open_home(home: str | os.PathLike | None = None):
    """Open an existing home's store (an agentlog.store.store.Store) with its device key.

    Raises:
        HomeError: no home there, or its key file is unreadable or open to others.
        StoreError: the store is missing, empty, cut short or unreadable (it is never created again here).
    """
    from agentlog.crypto import DeviceKey
    from agentlog.store.store import Store
    path, seed = read_key(home)
    return Store(path / STORE_DIR, DeviceKey(seed), create=False)


def read_key(home: str | os.PathLike | None = None) -> tuple[Path, bytes]:
    """The home's path and its device key seed, after checking the key file is there and private.

    Cheap (no store, no crypto): the fast lookup path uses it too.

    Raises:
        HomeError: no home there, or its key file is unreadable, open to others or holds no key.
    """
    path = resolve(home)
    key_path = path / KEY_FILE
    if not key_path.is_file():
        raise NoHomeError(f"no agentlog device at {path}: run `agentlog init --name NAME` first", str(path))
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HomeError(f"{key_path} is readable by others (mode {mode & 0o777:o}): chmod 600 it", str(key_path))
    try:
        seed = bytes.fromhex(key_path.read_text().strip())
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise HomeError(f"{key_path} does not hold a device key", str(key_path))
    return path, seed
