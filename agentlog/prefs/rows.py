"""The preference view's evidence rows (views.pref.evidence) and one setting's index over them in LMDB.

A row's key is skey(16) eff(8) event id(32) role(1), skey the BLAKE2b-128 of the setting's name; its value is
`Evidence.to_bytes`. The same few (value, context) pairs repeat across a log, so bulk packing keeps a packer of
the whole value for each pair seen.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from functools import lru_cache

from agentlog.prefs import reducer as pr

KEY = struct.Struct(">16sQ32sB")
ROLE_BYTE = tuple(bytes((i,)) for i in range(256))
_U64 = struct.Struct(">Q")
_PACK_U64 = _U64.pack
_PACKERS: dict[tuple[str, str], tuple] = {}      # (value, context) -> (packer of the value, value's length, tail)
_MAX_PACKERS = 4096


@lru_cache(maxsize=4096)
def setting_key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


def evidence_key(skey: bytes, ev: pr.Evidence) -> bytes:
    return skey + _PACK_U64(ev.eff) + ev.eid + ROLE_BYTE[ev.role]


def evidence_from(key: bytes, value: bytes) -> pr.Evidence:
    _, eff, eid, role = KEY.unpack(key)
    return pr.Evidence.from_bytes(eff, eid, role, bytes(value))


def evidence_rows(skey: bytes, evs: Iterable[pr.Evidence]) -> list[tuple[bytes, bytes]]:
    """(key, value) of each of `evs`, the evidence of the setting whose key is `skey`, in the order given."""
    packers, key, codes = _PACKERS, KEY.pack, pr.KIND_CODES
    if len(packers) > _MAX_PACKERS:
        packers.clear()
    out = []
    for eff, eid, role, kind, value, context, weight, lamport, author, time_ms in evs:
        packer = packers.get((value, context))
        if packer is None:
            packer = _packer(value, context)
        out.append((key(skey, eff, eid, role), packer[0](codes[kind], weight, lamport, time_ms, author, packer[1],
                                                          packer[2])))
    return out


def _packer(value: str, context: str) -> tuple:
    n, tail = len(value.encode()), value.encode() + context.encode()
    packer = _PACKERS[value, context] = (struct.Struct(f">BqQQ32sH{len(tail)}s").pack, n, tail)
    return packer


class Index:
    """One setting's evidence in LMDB, for the reducer (pr.Index); `waiting` holds a batch's evidence
    for the setting not yet folded (PrefView._flush folds it in one go)."""

    def __init__(self, txn, db, skey: bytes):
        self.txn, self.db, self.skey = txn, db, skey
        self.waiting: list[pr.Evidence] = []

    def scan(self, lo: int, hi: int) -> Iterator[pr.Evidence]:
        lo, hi = max(lo, 0), max(hi, 0)
        if lo >= hi:
            return
        end = self.skey + _PACK_U64(hi)
        with self.txn.cursor(db=self.db) as cur:
            if not cur.set_range(self.skey + _PACK_U64(lo)):
                return
            for key, value in cur:
                if key >= end:
                    break
                yield evidence_from(key, value)

    def first(self, lo: int) -> int | None:
        with self.txn.cursor(db=self.db) as cur:
            if not cur.set_range(self.skey + _PACK_U64(max(lo, 0))):
                return None
            key = cur.key()
        return _U64.unpack_from(key, 16)[0] if key[:16] == self.skey else None

    def everything(self) -> list[pr.Evidence]:
        return list(self.scan(0, 2**64 - 1))

    def put(self, ev: pr.Evidence) -> None:
        self.txn.put(evidence_key(self.skey, ev), ev.to_bytes(), db=self.db)

    def put_many(self, evs: list[pr.Evidence]) -> None:
        rows = evidence_rows(self.skey, evs)
        rows.sort()
        with self.txn.cursor(db=self.db) as cur:
            cur.putmulti(rows)

    def delete(self, ev: pr.Evidence) -> None:
        self.txn.delete(evidence_key(self.skey, ev), db=self.db)
