"""The scope reducer: which devices read each sealed scope, and its content keys sealed to them. Pure.

Folds scope.key and scope.grant events (always plain, in scope `user`). The state is a function of the
set of scope events (and of the roster's revocation limits): each scope's events are kept and folded
again in the order (lamport, author, epoch, seq) whenever one arrives, so a late arrival lands where it
belongs. An event applies only when its author is a reader at that point (the first scope.key creates
the scope; its author must be among its readers); otherwise it is recorded as ignored. A scope.key sets
the readers to its list and makes its key current; a scope.grant adds a device and its boxes of the keys
it names. A key's id is the id of the scope.key event that introduced it; its epoch counts the
scope.key events applied up to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agentlog.errors import ScopeError
from agentlog.log.event import Header
from agentlog.log.kinds import SCOPE_KINDS, USER_SCOPE, is_sealed_scope
from agentlog.log.payloads import GrantedKey, ScopeGrant, ScopeKey, SealedKey
from agentlog.log.roster import Roster

VERSION = 1
"""Bumped whenever folding rules or `to_bytes` change; stores then fold the scopes again from the log."""


class ScopeEvent(NamedTuple):
    """A scope event as the reducer folds it: its fold order fields, id and payload."""

    lamport: int
    author: bytes
    epoch: int
    seq: int
    eid: bytes
    payload: ScopeKey | ScopeGrant

    @classmethod
    def of(cls, h: Header, eid: bytes, payload: ScopeKey | ScopeGrant) -> ScopeEvent:
        return cls(h.lamport, h.author, h.epoch, h.seq, eid, payload)


@dataclass(slots=True)
class KeyEpoch:
    """One content key of a scope: its epoch and its boxes, device -> the key sealed to that device."""

    epoch: int
    boxes: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class ScopeState:
    """One sealed scope as its events fold."""

    name: str
    readers: set[bytes] = field(default_factory=set)
    keys: dict[bytes, KeyEpoch] = field(default_factory=dict)
    current: bytes | None = None
    ignored: list[bytes] = field(default_factory=list)
    named: set[bytes] = field(default_factory=set)        # every device any of its events named as a reader
    events: list[ScopeEvent] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return self.keys[self.current].epoch if self.current in self.keys else 0

    def effective_readers(self, roster: Roster) -> set[bytes]:
        """The readers less the devices the roster has revoked from the group."""
        return {d for d in self.readers if not _revoked(roster, d)}

    def needs_new_key(self, roster: Roster) -> bool:
        """Whether the current key's sealed set differs from the effective readers: a revoked device or a
        removed reader still holds it, or a reader lacks it. A writer then writes a new scope.key first."""
        if self.current not in self.keys:
            return True
        return set(self.keys[self.current].boxes) != self.effective_readers(roster)


def _revoked(roster: Roster, device: bytes) -> bool:
    member = roster.members.get(device)
    return member is not None and member.until_seq is not None


def fold_scope(name: str, events: list[ScopeEvent], limits: dict[bytes, int]) -> ScopeState:
    """The state of scope `name` from its events (any order), leaving out a revoked device's events past its
    revocation seq."""
    state = ScopeState(name, events=sorted(events, key=lambda e: (e.lamport, e.author, e.epoch, e.seq)))
    applied_keys = 0
    for e in state.events:
        p = e.payload
        state.named.update([r.device for r in p.readers] if isinstance(p, ScopeKey) else [p.device])
        if e.seq > limits.get(e.author, e.seq):
            state.ignored.append(e.eid)
            continue
        exists = state.current is not None
        if isinstance(p, ScopeKey):
            if not (e.author in state.readers if exists else any(r.device == e.author for r in p.readers)):
                state.ignored.append(e.eid)
                continue
            applied_keys += 1
            state.readers = {r.device for r in p.readers}
            state.keys[e.eid] = KeyEpoch(applied_keys, {r.device: r.box for r in p.readers})
            state.current = e.eid
        else:
            if not exists or e.author not in state.readers:
                state.ignored.append(e.eid)
                continue
            state.readers.add(p.device)
            for granted in p.keys:
                if granted.key in state.keys:
                    state.keys[granted.key].boxes[p.device] = granted.box
    return state


class Scopes:
    """Every sealed scope of the group, folded from its scope events."""

    def __init__(self, limits: dict[bytes, int] | None = None):
        self.limits: dict[bytes, int] = dict(limits or {})
        self.scopes: dict[str, ScopeState] = {}

    def get(self, name: str) -> ScopeState | None:
        return self.scopes.get(name)

    def names(self) -> list[str]:
        return sorted(self.scopes)

    def add(self, event: ScopeEvent) -> bool:
        """Fold one scope event (its scope folded again); True when it was new."""
        name = event.payload.scope
        state = self.scopes.get(name)
        held = state.events if state else []
        if any(e.eid == event.eid for e in held):
            return False
        self.scopes[name] = fold_scope(name, [*held, event], self.limits)
        return True

    def set_limits(self, limits: dict[bytes, int]) -> bool:
        """Take the roster's revocation limits (device -> its last seq that counts); True when they changed
        what folds."""
        if limits == self.limits:
            return False
        self.limits = dict(limits)
        for name, state in self.scopes.items():
            self.scopes[name] = fold_scope(name, state.events, self.limits)
        return True

    def boxes_for(self, device: bytes) -> dict[bytes, tuple[str, bytes]]:
        """Key id -> (scope, box) of every key sealed to `device` in any held scope event, applied or not:
        whatever the device can open, it may read."""
        out: dict[bytes, tuple[str, bytes]] = {}
        for name in sorted(self.scopes):
            for e in self.scopes[name].events:
                p = e.payload
                if isinstance(p, ScopeKey):
                    out.update((e.eid, (name, r.box)) for r in p.readers if r.device == device)
                elif p.device == device:
                    out.update((g.key, (name, g.box)) for g in p.keys)
        return out

    # -- the rules at ingest ----------------------------------------------------------------------------

    def check(self, h: Header, payload: Any, roster: Roster) -> None:
        """Raise ScopeError unless the scope rules accept this event (a scope event, or a sealed one)."""
        if h.kind in SCOPE_KINDS:
            self._check_scope_event(h, payload, roster)
        elif h.payload_codec == "plain" and is_sealed_scope(h.scope):
            raise ScopeError(f"a plain payload in scope {h.scope!r}: every scope but user and device:* is sealed, "
                             "and its writers seal what they write", h.author, h.seq)
        elif h.payload_codec != "plain":
            if not is_sealed_scope(h.scope):
                raise ScopeError(f"a sealed payload in scope {h.scope!r}, which is never sealed", h.author, h.seq)
            state = self.scopes.get(h.scope)
            if state is None or h.author not in state.named:
                raise ScopeError(f"sealed event in scope {h.scope!r} by a device that was never its reader",
                                 h.author, h.seq)

    def _check_scope_event(self, h: Header, payload: Any, roster: Roster) -> None:
        where = (h.author, h.seq)
        if h.scope != USER_SCOPE:
            raise ScopeError(f"{h.kind} events belong in scope user, not {h.scope!r}", *where)
        if h.payload_codec != "plain":
            raise ScopeError(f"{h.kind} events must have a plain payload", *where)
        if not isinstance(payload, (ScopeKey, ScopeGrant)):
            raise ScopeError(f"{h.kind} event arrived without its payload", *where)
        devices = [r.device for r in payload.readers] if isinstance(payload, ScopeKey) else [payload.device]
        for device in devices:
            member = roster.members.get(device)
            if member is None or not member.enrolled:
                raise ScopeError(f"{h.kind} of scope {payload.scope!r} seals a key to device {device.hex()[:16]}, "
                                 "which is not enrolled in this group", *where)
        state = self.scopes.get(payload.scope)
        if isinstance(payload, ScopeKey):
            if h.author not in devices and (state is None or h.author not in state.named):
                raise ScopeError(f"scope.key of scope {payload.scope!r} by a device that is not among its readers "
                                 "and was never a reader of it", *where)
        elif state is None:
            raise ScopeError(f"scope.grant of scope {payload.scope!r}, which no scope.key created", *where)
        elif h.author not in state.named:
            raise ScopeError(f"scope.grant of scope {payload.scope!r} by a device that was never its reader", *where)

    # -- canonical bytes --------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace, hex; equal event sets (and limits) give equal bytes."""
        doc = {
            "limits": {d.hex(): s for d, s in sorted(self.limits.items())},
            "scopes": {name: _state_json(self.scopes[name]) for name in sorted(self.scopes)},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Scopes:
        doc = json.loads(raw)
        scopes = cls({bytes.fromhex(d): s for d, s in doc["limits"].items()})
        for name, s in doc["scopes"].items():
            scopes.scopes[name] = fold_scope(name, [_event_from(e, name) for e in s["events"]], scopes.limits)
        return scopes


def _state_json(s: ScopeState) -> dict:
    return {
        "readers": sorted(d.hex() for d in s.readers),
        "current": s.current.hex() if s.current else None,
        "keys": {k.hex(): {"epoch": v.epoch, "boxes": {d.hex(): b.hex() for d, b in sorted(v.boxes.items())}}
                 for k, v in sorted(s.keys.items())},
        "ignored": [e.hex() for e in s.ignored],
        "events": [_event_json(e) for e in s.events],
    }


def _event_json(e: ScopeEvent) -> list:
    p = e.payload
    if isinstance(p, ScopeKey):
        body = ["scope.key", [[r.device.hex(), r.box.hex()] for r in p.readers]]
    else:
        body = ["scope.grant", p.device.hex(), [[g.key.hex(), g.box.hex()] for g in p.keys]]
    return [e.lamport, e.author.hex(), e.epoch, e.seq, e.eid.hex(), *body]


def _event_from(v: list, scope: str) -> ScopeEvent:
    lamport, author, epoch, seq, eid, kind, *body = v
    if kind == "scope.key":
        payload = ScopeKey(scope=scope, readers=tuple(SealedKey(device=bytes.fromhex(d), box=bytes.fromhex(b))
                                                       for d, b in body[0]))
    else:
        payload = ScopeGrant(scope=scope, device=bytes.fromhex(body[0]),
                             keys=tuple(GrantedKey(key=bytes.fromhex(k), box=bytes.fromhex(b)) for k, b in body[1]))
    return ScopeEvent(lamport, bytes.fromhex(author), epoch, seq, bytes.fromhex(eid), payload)
