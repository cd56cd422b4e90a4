"""The scopes view in the store's transactions, the content keys this device opens, and the opener every fold
path uses for sealed payloads.

Databases:
  views.scopes   b"state" -> the scope reducer's canonical bytes (agentlog.log.scopes); b"version"
  sealed.unread  author(32) epoch(4) seq(8) -> key id(32) (b"" when none): sealed events this device holds
                 and did not fold, because it holds no key that opens them
Content keys are opened with the device key in memory, per process, and never written.
"""

from __future__ import annotations

from agentlog import crypto
from agentlog.errors import EventError
from agentlog.log import payloads, sealing
from agentlog.log import scopes as scope_reducer
from agentlog.log.event import decode_header, peek_record
from agentlog.log.kinds import SCOPE_KINDS
from agentlog.log.scopes import ScopeEvent, Scopes

DBS = ("views.scopes", "sealed.unread")
VERSION = scope_reducer.VERSION.to_bytes(4, "big")
_PARSED: dict[bytes, Scopes] = {}


def scopes_in(dbs: dict, txn) -> Scopes:
    """The scopes view in `txn` (parsed once per state; the caller gets its own copy to change)."""
    raw = bytes(txn.get(b"state", db=dbs["views.scopes"]) or b"")
    found = _PARSED.get(raw)
    if found is None:
        found = Scopes.from_bytes(raw) if raw else Scopes()
        if len(_PARSED) > 16:
            _PARSED.clear()
        _PARSED[raw] = found
    copy = Scopes(found.limits)
    copy.scopes = dict(found.scopes)
    return copy


def has_scopes(dbs: dict, txn) -> bool:
    """Whether the group has any sealed scope (one read; false on a store without the view)."""
    raw = txn.get(b"state", db=dbs["views.scopes"])
    return raw is not None and bytes(raw) != Scopes().to_bytes()


def save_scopes(dbs: dict, txn, scopes: Scopes) -> None:
    txn.put(b"state", scopes.to_bytes(), db=dbs["views.scopes"])
    txn.put(b"version", VERSION, db=dbs["views.scopes"])


def rebuild_scopes(dbs: dict, txn, limits: dict[bytes, int]) -> Scopes:
    """Fold the scopes view again from every scope event in the log, and save it."""
    scopes = Scopes(limits)
    with txn.cursor(db=dbs["events"]) as cur:
        for key, record in cur:
            try:
                if peek_record(record)[2] not in SCOPE_KINDS:
                    continue
                raw = txn.get(key, db=dbs["payloads"])
                if raw is None:
                    continue
                header = decode_header(bytes(record[: -crypto.SIG_LEN]))
                payload = payloads.decode(header.kind, bytes(raw))
            except EventError:                 # the store validated it; a record it cannot read folds nothing
                continue
            scopes.add(ScopeEvent.of(header, crypto.blake2b256(bytes(record[: -crypto.SIG_LEN])), payload))
    save_scopes(dbs, txn, scopes)
    return scopes


class Keyring:
    """The content keys sealed to one device, opened with its key in memory (each box once per process)."""

    def __init__(self, key: crypto.DeviceKey | None):
        self.key = key
        self._opened: dict[bytes, bytes | None] = {}

    def keys(self, scopes: Scopes) -> dict[bytes, bytes]:
        """Key id -> content key, for every box sealed to this device that opens."""
        if self.key is None:
            return {}
        out = {}
        for kid, (_, box) in scopes.boxes_for(self.key.public).items():
            key = self.open(box)
            if key is not None:
                out[kid] = key
        return out

    def open(self, box: bytes) -> bytes | None:
        """The content key in a box sealed to this device, or None (no device key, not sealed to it, damaged)."""
        if self.key is None:
            return None
        if box not in self._opened:
            self._opened[box] = self.key.open_box(box)
        return self._opened[box]


class Opener:
    """Opens sealed payloads while a fold reads the log; remembers what it could not open (`unread`:
    (event key, key id or b"", whether this device holds that key id))."""

    def __init__(self, keys: dict[bytes, bytes]):
        self.keys = keys
        self.unread: list[tuple[bytes, bytes, bool]] = []

    def __call__(self, key: bytes, header_bytes: bytes, envelope: bytes) -> bytes | None:
        h = decode_header(bytes(header_bytes))
        plain = sealing.open_envelope(self.keys, envelope, sealing.ad(h.group, h.author, h.scope, h.kind))
        if plain is None:
            kid = sealing.key_id(envelope) or b""
            self.unread.append((bytes(key), kid, kid in self.keys))
        return plain


def opener_in(store, txn) -> Opener | None:
    """The opener for folding `store`'s log in `txn`, or None when the group has no sealed scope."""
    if not has_scopes(store.dbs, txn):
        return None
    return Opener(store.keyring.keys(scopes_in(store.dbs, txn)))


def save_unread(dbs: dict, txn, opener: Opener | None) -> None:
    """Set sealed.unread to what a fold of the whole log could not open."""
    txn.drop(dbs["sealed.unread"], delete=False)
    if opener is not None and opener.unread:
        txn.cursor(db=dbs["sealed.unread"]).putmulti(sorted((k, kid) for k, kid, _ in opener.unread))


def unread_in(dbs: dict, txn) -> list[tuple[bytes, bytes]]:
    """(event key, key id) of every sealed event held and not folded."""
    with txn.cursor(db=dbs["sealed.unread"]) as cur:
        return [(bytes(k), bytes(v)) for k, v in cur]

