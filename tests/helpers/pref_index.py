"""The preference reducer's pieces by hand: evidence rows and an in-memory index in LMDB's order."""

from __future__ import annotations

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

    def put(self, ev):
        self.rows[ev.eff, ev.eid, ev.role] = ev

    def delete(self, ev):
        del self.rows[ev.eff, ev.eid, ev.role]

    def everything(self):
        return self.scan(0, 2**64 - 1)


def evidence(eid: int, eff: int, value: str = "dark", context: str = "", weight: int = 1000, lamport: int = 1,
             role: int = 0, author: bytes = AUTHORS[0], kind: str = "observation") -> pr.Evidence:
    return pr.Evidence(eff, eid.to_bytes(32, "big"), role, kind, value, context, weight, lamport, author, eff)
