"""What this device carries of sealed scopes it does not read: every payload (`all`, the default), or headers
only (`readable`, for a storage-constrained device). The mode is kept in the home, so every ingest path
(`serve`, `sync`, the API) honours it.

Databases:
  uncarried  author(32) epoch(4) seq(8) -> the key id its payload names (b"" when it arrived without one): sealed
             events held without their payload by choice, because this device cannot open them. Unlike
             `withheld` they are not asked of peers and are no problem for `verify`; when a key that opens
             them arrives (a grant), they move to `withheld`, so replication fetches their payloads.
  meta       b"carry" -> b"readable" (absent: all)
"""

from __future__ import annotations

from agentlog import crypto
from agentlog.errors import UsageError
from agentlog.log.event import decode_header
from agentlog.log.kinds import is_sealed_scope
from agentlog.log.scopes import Scopes
from agentlog.store.keyring import scopes_in

DBS = ("uncarried",)
MODES = ("all", "readable")


def mode_in(dbs: dict, txn) -> str:
    raw = txn.get(b"carry", db=dbs["meta"])
    return bytes(raw).decode() if raw else "all"


def key_scopes(scopes: Scopes, device: bytes, keys: dict[bytes, bytes]) -> dict[bytes, str]:
    """Key id -> scope name of each key in `keys` (what this device opens)."""
    return {kid: scope for kid, (scope, _) in scopes.boxes_for(device).items() if kid in keys}


def _scope_of(dbs: dict, txn, key: bytes) -> str | None:
    record = txn.get(key, db=dbs["events"])
    return None if record is None else decode_header(bytes(record[: -crypto.SIG_LEN])).scope


def want_opened(dbs: dict, txn, opened: dict[bytes, str]) -> int:
    """Move the uncarried events that the keys `opened` (key id -> scope) open into `withheld`, so replication
    asks peers for their payloads: those naming one of the keys, and those of its scopes whose key is not
    known (they arrived without a payload). Returns how many moved."""
    if not opened or not txn.stat(dbs["uncarried"])["entries"]:
        return 0
    scopes = set(opened.values())
    with txn.cursor(db=dbs["uncarried"]) as cur:
        held = [(bytes(k), bytes(v)) for k, v in cur]
    wanted = [k for k, kid in held if kid in opened or (not kid and _scope_of(dbs, txn, k) in scopes)]
    return _move(dbs, txn, wanted, "uncarried", "withheld")


def drop_unopened(dbs: dict, txn, keys: dict[bytes, bytes]) -> int:
    """Stop carrying the payloads of sealed events held unread whose key this device does not hold (one it holds
    that does not open a payload stays carried: `verify` names it). Returns how many were dropped."""
    with txn.cursor(db=dbs["sealed.unread"]) as cur:
        dropped = [(bytes(k), bytes(kid)) for k, kid in cur if bytes(kid) not in keys]
    for key, kid in dropped:
        txn.delete(key, db=dbs["payloads"])
        txn.delete(key, db=dbs["sealed.unread"])
        txn.put(key, kid, db=dbs["uncarried"])
    return len(dropped)


def set_mode(store, mode: str) -> dict[str, int]:
    """Keep `mode` in the home. To `readable`: drop the payloads held that this device cannot open, and stop
    asking peers for withheld ones of scopes it holds no key of. To `all`: every uncarried event is wanted
    again (`withheld`). Returns the counts of events `dropped` and `wanted`."""
    if mode not in MODES:
        raise UsageError(f"carry mode must be one of {', '.join(MODES)}, not {mode!r}")
    dbs = store.dbs

    def write(txn) -> dict[str, int]:
        txn.put(b"carry", mode.encode(), db=dbs["meta"])
        if mode == "all":
            with txn.cursor(db=dbs["uncarried"]) as cur:
                keys = [bytes(k) for k in cur.iternext(values=False)]
            return {"dropped": 0, "wanted": _move(dbs, txn, keys, "uncarried", "withheld")}
        scopes = scopes_in(dbs, txn)
        keys = store.keyring.keys(scopes)
        readable = set(key_scopes(scopes, store.device, keys).values())
        with txn.cursor(db=dbs["withheld"]) as cur:
            held = [bytes(k) for k in cur.iternext(values=False)]
        unwanted = []
        for key in held:
            scope = _scope_of(dbs, txn, key)
            if scope is not None and is_sealed_scope(scope) and scope not in readable:
                unwanted.append(key)
        dropped = _move(dbs, txn, unwanted, "withheld", "uncarried") + drop_unopened(dbs, txn, keys)
        return {"dropped": dropped, "wanted": 0}
    return store.write(write)


def settle_filled(store, txn) -> None:
    """After payloads were filled in (and the views folded again): in `readable` mode, stop carrying the ones
    this device turned out not to open."""
    dbs = store.dbs
    if mode_in(dbs, txn) == "readable" and txn.stat(dbs["sealed.unread"])["entries"]:
        drop_unopened(dbs, txn, store.keyring.keys(scopes_in(dbs, txn)))


def counts_in(dbs: dict, txn) -> dict[str, int]:
    """How many events are held uncarried, per scope."""
    counts: dict[str, int] = {}
    with txn.cursor(db=dbs["uncarried"]) as cur:
        for key in cur.iternext(values=False):
            scope = _scope_of(dbs, txn, bytes(key))
            if scope is not None:
                counts[scope] = counts.get(scope, 0) + 1
    return dict(sorted(counts.items()))


def _move(dbs: dict, txn, keys: list[bytes], source: str, target: str) -> int:
    for key in keys:
        txn.delete(key, db=dbs[source])
        txn.put(key, b"", db=dbs[target])
    return len(keys)
