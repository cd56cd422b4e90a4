"""Where a scope's payloads went, as far as this device knows: who authored events of each scope, and what
the replication ledger says was sent to each peer (and received from it), by scope and kind.

This is one device's knowledge, not the group's: a peer may have passed events on to devices this one never
talked to. `status` and the audit export show it beside each sealed scope's readers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agentlog import crypto
from agentlog.codec.decode import Reader
from agentlog.codec.schema import event as _schema
from agentlog.log.kinds import is_sealed_scope
from agentlog.store import ledger
from agentlog.store.layout import event_key

NOT_HELD = "?"          # the scope and kind of a ledger range's event this store no longer holds (compacted)
_SCOPE_KIND = Reader(_schema.Header, ("author", "scope", "kind"))


@dataclass(slots=True)
class Exposure:
    """Counts of events by who wrote them and where this device's ledger says they went."""

    authored: dict[str, set[bytes]] = field(default_factory=dict)   # scope -> devices that wrote events of it
    sent: Counter = field(default_factory=Counter)          # (peer, scope, kind) -> events sent to it
    received: Counter = field(default_factory=Counter)      # (peer, scope, kind) -> events stored here from it

    def holders(self, scope: str) -> dict[bytes, list[str]]:
        """Device -> why this device knows it holds events of `scope`: 'authored', 'sent', 'received'."""
        why: dict[bytes, list[str]] = {}
        for device in self.authored.get(scope, ()):
            why.setdefault(device, []).append("authored")
        for reason, counts in (("sent", self.sent), ("received", self.received)):
            for peer in sorted({p for p, s, _ in counts if s == scope}):
                why.setdefault(peer, []).append(reason)
        return why


def exposure(store, sealed_only: bool = False, authored: dict[str, set[bytes]] | None = None) -> Exposure:
    """What this store's events and ledger say of where events went; with `sealed_only`, only sealed scopes
    are counted (what `status` needs). `authored`, when the caller already read every event (the audit
    export), saves reading them again."""
    dbs = store.dbs

    def read(txn) -> Exposure:
        out = Exposure()
        events = dbs["events"]
        if authored is not None:
            out.authored = {scope: set(devices) for scope, devices in authored.items()
                            if not sealed_only or is_sealed_scope(scope)}
        else:
            with txn.cursor(db=events) as cur:
                for record in cur.iternext(keys=False):
                    author, scope, _ = _SCOPE_KIND.read_stored(bytes(record[:-crypto.SIG_LEN]), "header")
                    if not sealed_only or is_sealed_scope(scope):
                        out.authored.setdefault(scope, set()).add(author)
        for counts, db in ((out.sent, dbs["ledger.sent"]), (out.received, dbs["ledger.received"])):
            for r in ledger.ranges(txn, db):
                _count(txn, events, r, counts, sealed_only)
        return out
    return store.read(read)


def _count(txn, events, r: ledger.Range, counts: Counter, sealed_only: bool) -> None:
    """Add the events of one ledger range to `counts` by scope and kind; those no longer held as NOT_HELD."""
    held = 0
    with txn.cursor(db=events) as cur:
        if cur.set_range(event_key(r.author, r.epoch, r.lo)):
            end = event_key(r.author, r.epoch, r.hi)
            for key, record in cur.iternext():
                if key > end:
                    break
                held += 1
                _, scope, kind = _SCOPE_KIND.read_stored(bytes(record[:-crypto.SIG_LEN]), "header")
                if not sealed_only or is_sealed_scope(scope):
                    counts[r.peer, scope, kind] += 1
    missing = r.hi - r.lo + 1 - held
    if missing > 0 and not sealed_only:
        counts[r.peer, NOT_HELD, NOT_HELD] += missing
