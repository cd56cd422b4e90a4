"""The preference reducer's pieces by hand: evidence rows, an in-memory index in LMDB's order, and a state as
reducer version 3 stored it."""

from __future__ import annotations

import json

from agentlog.prefs import reducer as pr

NOW = 1_750_000_000_000
AUTHORS = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)


class MemoryIndex:
    """pr.Index over a sorted list, in the order LMDB keeps it (effective time, id, role)."""

    def __init__(self):
        self.rows: dict[tuple, pr.Evidence] = {}

    def scan(self, lo, hi):
        lo, hi = max(lo, 0), max(hi, 0)
        return [ev for key, ev in sorted(self.rows.items()) if lo <= key[0] < hi]

    def first(self, lo):
        return min((key[0] for key in self.rows if key[0] >= max(lo, 0)), default=None)

    def put(self, ev):
        self.rows[ev.eff, ev.eid, ev.role] = ev

    def delete(self, ev):
        del self.rows[ev.eff, ev.eid, ev.role]

    def everything(self):
        return self.scan(0, 2**64 - 1)


def evidence(eid: int, eff: int, value: str = "dark", context: str = "", weight: int = 1000, lamport: int = 1,
             role: int = 0, author: bytes = AUTHORS[0], kind: str = "observation") -> pr.Evidence:
    return pr.Evidence(eff, eid.to_bytes(32, "big"), role, kind, value, context, weight, lamport, author, eff)


def whole_json(s: pr.Setting) -> bytes:
    """The state as reducer version 3 stored it (JSON), which a compaction base may still hold."""
    sums = {b: {v: t for v, t in vals.items() if t[0] or t[1]} for b, vals in s.sums.items()}
    doc = {"config": s.config, "forget": s.forget, "tmax": s.tmax, "anchor": s.anchor,
           "sums": {b: vals for b, vals in sums.items() if vals}, "explicit": s.explicit, "overrides": s.overrides}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
