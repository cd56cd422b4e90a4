"""A snapshot's views in LMDB: dumping a view's databases to its canonical bytes, loading them back, and
the `snapshots` database that keeps the store's base snapshot (the pure format is agentlog.log.snapshot).

The `snapshots` database keeps, for the store's base snapshot (the newest it holds the state of):
  id(32) ++ view name   -> that view's state at the snapshot's frontier
  id(32) ++ b"\\0event" -> the snapshot event's record and payload (pack_anchor form), for bootstrap
  id(32) ++ b"\\0kept"  -> the events kept beside it, in key order, as its signed `retained` digest names
                           them (agentlog.store.retained): for each its key (author, epoch, seq), the length
                           of its fold context (4 bytes) and the context
and meta b"base" names it.
"""

from __future__ import annotations

from agentlog.log.snapshot import VIEWS, Bundle, rows

EVENT_KEY = b"\0event"
KEPT_KEY = b"\0kept"
_KEY_LEN = 44


def dump(txn, dbs: list) -> bytes:
    """A view's canonical bytes: every row of its databases in key order (what its digest hashes)."""
    out = bytearray()
    for db in dbs:
        out += b"\xff"
        with txn.cursor(db=db) as cur:
            for k, v in cur:
                out += len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v
    return bytes(out)


def load(txn, dbs: list, raw: bytes) -> None:
    """Replace a view's databases with the rows of its canonical bytes."""
    parsed = rows(raw, len(dbs))
    for db, found in zip(dbs, parsed):
        txn.drop(db, delete=False)
        if found:
            txn.cursor(db=db).putmulti(found, append=True)


def stored(txn, db, sid: bytes) -> Bundle | None:
    """The snapshot `sid` as the `snapshots` database `db` keeps it (None: its event is not there)."""
    raw = txn.get(sid + EVENT_KEY, db=db)
    if raw is None:
        return None
    raw = bytes(raw)
    n = int.from_bytes(raw[:4], "big")
    return Bundle(raw[4 : 4 + n], raw[4 + n :], {name: bytes(txn.get(sid + name.encode(), db=db) or b"")
                                                  for name in VIEWS})


def keep(txn, db, sid: bytes, bundle: Bundle, kept: list[tuple[bytes, bytes]] = ()) -> None:
    """Keep `bundle` as the only snapshot in the `snapshots` database `db`, under id `sid`, with the events kept
    beside it, (key, fold context)."""
    txn.drop(db, delete=False)
    for name, state in bundle.states.items():
        txn.put(sid + name.encode(), state, db=db)
    txn.put(sid + EVENT_KEY, len(bundle.record).to_bytes(4, "big") + bundle.record + bundle.payload, db=db)
    if kept:
        txn.put(sid + KEPT_KEY, b"".join(key + len(ctx).to_bytes(4, "big") + ctx for key, ctx in kept), db=db)


def kept_in(dbs: dict, txn, sid: bytes) -> dict[bytes, bytes]:
    """The events kept beside snapshot `sid`, key -> fold context, in key order (empty: none, or an older
    snapshot)."""
    raw, out, at = bytes(txn.get(sid + KEPT_KEY, db=dbs["snapshots"]) or b""), {}, 0
    while at < len(raw):
        n = int.from_bytes(raw[at + _KEY_LEN : at + _KEY_LEN + 4], "big")
        out[raw[at : at + _KEY_LEN]] = raw[at + _KEY_LEN + 4 : at + _KEY_LEN + 4 + n]
        at += _KEY_LEN + 4 + n
    return out


def base_in(dbs: dict, txn) -> Bundle | None:
    """The store's base snapshot in `txn` (None: it has none)."""
    sid = txn.get(b"base", db=dbs["meta"])
    return stored(txn, dbs["snapshots"], bytes(sid)) if sid is not None else None


def set_base(dbs: dict, txn, sid: bytes, bundle: Bundle, kept: list[tuple[bytes, bytes]] = ()) -> None:
    """Make `sid` the store's base snapshot (with the keys of the events kept beside it), dropping the previous
    base's states."""
    keep(txn, dbs["snapshots"], sid, bundle, kept)
    txn.put(b"base", sid, db=dbs["meta"])
