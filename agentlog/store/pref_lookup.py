"""Preference lookups straight from the home's LMDB, for `agentlog pref get` and `pref list`.

Agents shell out for a lookup, so the process must not pay for what a read does not
need: this module imports lmdb (and agentlog.store.env's file check), the reducer and the
error classes, never the Store, events, payloads or schemas (those load pycapnp); it is in the
store part because only the store opens LMDB. It reads `views.pref`, `heads`, `meta` and the
roster view in one snapshot and answers exactly as `store.prefs` would.

When it cannot be sure of that it returns None and the caller opens the full Store,
which repairs what needs repairing: another layout, a view folded by another reducer
version (Store rebuilds it), or a join anchor the roster view has not folded yet (Store
applies it to name devices). The home's key file and store file get the same checks,
and the same one-line errors, as `agentlog.store.home.open_home` (a missing store is refused,
never created).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lmdb

from agentlog.errors import InvalidValueError
from agentlog.prefs import reducer as pr
from agentlog.store.env import check_data_file
from agentlog.store.home import STORE_DIR, read_key

# The store's layout, mirrored because importing agentlog.store.layout loads pycapnp;
# tests/cli/test_prefs.py checks every one against its source.
MAX_DBS = 64                                      # layout.MAX_DBS: what Store opens the environment with
LAYOUT = (1).to_bytes(4, "big")                   # layout.LAYOUT_VERSION
ROSTER_VERSION = (2).to_bytes(4, "big")           # roster.VERSION
PREF_VERSION_KEY = b"\0version"                   # pref_view.VERSION_KEY
SIG_LEN = 64                                      # crypto.SIG_LEN: a record is header ++ signature
_PREF_VERSION = pr.VERSION.to_bytes(4, "big")
_POS = struct.Struct(">IQ")                       # a head: epoch(4) seq(8) id(32)


def check_home(home: str | os.PathLike | None) -> Path:
    """The home's path after open_home's key-file checks (HomeError, same messages)."""
    return read_key(home)[0]


def checked_context(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """A lookup context checked and sorted as store.prefs does it (InvalidValueError if malformed)."""
    pairs = list(pairs)
    problem = pr.context_problem(pairs)
    if problem:
        raise InvalidValueError(problem)
    return tuple(sorted(pairs))


def get(home, setting: str, context: Iterable[tuple[str, str]] = (),
        now_ms: int | None = None) -> tuple[pr.Answer, dict[str, int]] | None:
    """What this device believes about `setting`, and the view's frontier by device name; None: use Store.

    Raises:
        HomeError: as open_home.
        InvalidValueError: a malformed setting name or context, as store.prefs.get.
    """
    path = check_home(home)
    problem = pr.setting_problem(setting)
    if problem:
        raise InvalidValueError(problem)
    ctx = checked_context(context)

    def read(txn, dbs, device):
        raw = txn.get(setting.encode(), db=dbs["views.pref"])
        if raw is None:
            return pr.default_answer(setting)
        return pr.answer(pr.Setting.for_answer(setting, bytes(raw), ctx), device, ctx, _now(now_ms))
    return _snapshot(path, read)


def list_all(home, now_ms: int | None = None) -> tuple[list[pr.Answer], dict[str, int]] | None:
    """Every setting's answer with no context, by name, and the frontier by device name; None: use Store."""
    path = check_home(home)

    def read(txn, dbs, device):
        now = _now(now_ms)
        out = []
        with txn.cursor(db=dbs["views.pref"]) as cur:
            for key, raw in cur:
                if key != PREF_VERSION_KEY:
                    out.append(pr.answer(pr.Setting.for_answer(bytes(key).decode(), bytes(raw), ()), device, (), now))
        return out
    return _snapshot(path, read)


def _now(now_ms: int | None) -> int:
    return time.time_ns() // 1_000_000 if now_ms is None else now_ms


def _snapshot(path: Path, read: Callable[[Any, dict, str], Any]) -> tuple[Any, dict[str, int]] | None:
    """read(txn, dbs, device hex) and the frontier by name, in one read snapshot; None if the
    store is not exactly as this module expects.

    Raises:
        StoreError: the store is missing, empty or cut short (agentlog.store.env.check_data_file).
    """
    store = path / STORE_DIR
    check_data_file(store)
    try:
        env = lmdb.open(str(store), max_dbs=MAX_DBS, readonly=True, create=False, subdir=True,
                        readahead=False, max_readers=126)
    except lmdb.Error:
        return None
    try:
        dbs = {name: env.open_db(name.encode(), create=False)
               for name in ("views.pref", "views.roster", "heads", "meta")}
        with env.begin() as txn:
            meta = dbs["meta"]
            device = txn.get(b"device", db=meta)
            if (txn.get(b"layout", db=meta) != LAYOUT or device is None or len(device) != 32
                    or txn.get(PREF_VERSION_KEY, db=dbs["views.pref"]) != _PREF_VERSION
                    or txn.get(b"version", db=dbs["views.roster"]) != ROSTER_VERSION):
                return None
            names = _names(txn.get(b"state", db=dbs["views.roster"]), txn.get(b"anchor", db=meta))
            if names is None:
                return None
            with txn.cursor(db=dbs["heads"]) as cur:
                frontier = {bytes(a): _POS.unpack_from(v)[1] for a, v in cur}
            result = read(txn, dbs, bytes(device).hex())
    except lmdb.Error:
        return None
    finally:
        env.close()
    return result, {names.get(a, a.hex()[:12]): seq for a, seq in sorted(frontier.items())}


def _names(state: bytes | None, anchor: bytes | None) -> dict[bytes, str] | None:
    """Device -> name as Roster.name_of gives it, from the roster view's bytes; None when a join
    anchor is not folded in the view yet (Store applies it on top, which may add a name)."""
    members = json.loads(bytes(state))["members"] if state else []
    if anchor:
        n = int.from_bytes(anchor[:4], "big")
        anchor_id = hashlib.blake2b(bytes(anchor[4 : 4 + n - SIG_LEN]), digest_size=32).hexdigest()
        if not any(e[3] == anchor_id for m in members for e in m["enrollments"]):
            return None
    return {bytes.fromhex(m["device"]): m["enrollments"][0][4] for m in members if m["enrollments"]}
