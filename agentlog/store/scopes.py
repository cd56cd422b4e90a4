"""Sealed scopes on one store (`store.scopes`): create, grant, revoke, list, and the rotation a device's
revocation from the group starts.

A reader of a scope may grant it to another device and revoke a reader: only a reader holds the key
to hand over, and the scope reducer ignores scope events by devices that are not readers at that point.
Revoking starts a new key epoch: what is written after it is unreadable to the revoked device; what it
already held stays readable to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentlog import crypto
from agentlog.errors import InvalidValueError, NotFoundError, UsageError
from agentlog.log import payloads
from agentlog.log.event import decode_record
from agentlog.log.kinds import RELAY_SCOPE, scope_name_problem
from agentlog.log.scopes import ScopeState
from agentlog.store.append import new_scope_key
from agentlog.store.keyring import scopes_in, unread_in
from agentlog.store.views import roster_in


@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """A sealed scope as this device sees it: its effective readers (id, name), key epoch, whether it reads it,
    and its former readers (id, name, the last key epoch sealed to them): what they were given stays readable
    to them."""

    name: str
    readers: list[tuple[bytes, str]]
    epoch: int
    can_read: bool
    former: tuple[tuple[bytes, str, int], ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "readers": [{"device": d.hex(), "name": n} for d, n in self.readers],
                "epoch": self.epoch, "can_read": self.can_read}


class Scopes:
    """The sealed scopes of a store's group (`store.scopes`)."""

    def __init__(self, store):
        self._store = store

    def _state(self):
        store = self._store
        return store.read(lambda txn: (scopes_in(store.dbs, txn), roster_in(store.dbs, txn)))

    def _reader_state(self, name: str) -> tuple[ScopeState, object]:
        """The scope and roster, after checking that this device reads the scope (to grant or revoke)."""
        _check_name(name)
        scopes, roster = self._state()
        state = scopes.get(name)
        if state is None:
            raise NotFoundError(f"no scope {name!r} in this group: see `agentlog scopes list`")
        if self._store.device not in state.effective_readers(roster):
            raise UsageError(f"this device does not read scope {name!r}; only a reader may grant or revoke it")
        return state, roster

    def _device(self, ref, roster) -> bytes:
        """A device of the group by name, hex id (or unique prefix) or 32 bytes."""
        member = None
        if isinstance(ref, (bytes, bytearray)):
            member = roster.members.get(bytes(ref))
        elif isinstance(ref, str):
            member = roster.find(ref)
        if member is None or not member.enrolled:
            shown = ref.hex()[:16] if isinstance(ref, (bytes, bytearray)) else ref
            raise NotFoundError(f"no enrolled device is named or has id {shown!r}: see `agentlog devices list`")
        if not member.active:
            raise UsageError(f"device {member.name!r} was revoked from the group")
        return member.device

    def create(self, name: str) -> bytes:
        """Create scope `name` with this device as its first reader; returns the scope.key event's id."""
        _check_name(name)
        if name == RELAY_SCOPE:
            raise UsageError(f"scope {RELAY_SCOPE!r} is reserved for the group's relay key: "
                             "`agentlog peers add nats://HOST:PORT` creates it")
        scopes, _ = self._state()
        if scopes.get(name) is not None:
            raise UsageError(f"scope {name!r} already exists: see `agentlog scopes list`")
        return self._store.append(new_scope_key(name, [self._store.device]))

    def grant(self, name: str, devices: list) -> bytes:
        """Make each device a reader of `name`, handing it every key of the scope this device holds (so it
        reads the scope's past); returns the id of the last scope.grant written."""
        state, roster = self._reader_state(name)
        targets = []
        for ref in devices:
            device = self._device(ref, roster)
            if device not in state.effective_readers(roster) and device not in targets:
                targets.append(device)
        if not targets:
            raise UsageError(f"every device named already reads scope {name!r}")
        scopes, _ = self._state()
        keys = self._store.keyring.keys(scopes)
        held = [(kid, keys[kid]) for kid in sorted(state.keys, key=lambda k: state.keys[k].epoch) if kid in keys]
        grants = [payloads.ScopeGrant(scope=name, device=d, keys=tuple(
            payloads.GrantedKey(key=kid, box=crypto.seal_box(d, key)) for kid, key in held)) for d in targets]
        return self._store.append_many(grants)[-1]

    def revoke(self, name: str, device) -> bytes:
        """Remove a reader of `name`: a new key epoch whose key the device does not get; returns its event id."""
        if name == RELAY_SCOPE:
            raise UsageError(f"the readers of scope {RELAY_SCOPE!r} are every enrolled device of the group: "
                             "revoke the device from the group instead (agentlog devices revoke)")
        state, roster = self._reader_state(name)
        member = roster.find(device) if isinstance(device, str) else roster.members.get(bytes(device))
        if member is None:
            raise NotFoundError(f"no device is named or has id {device!r}: see `agentlog devices list`")
        readers = state.effective_readers(roster)
        if member.device not in state.readers:
            raise UsageError(f"device {member.name!r} does not read scope {name!r}")
        remaining = readers - {member.device}
        if not remaining:
            raise UsageError(f"scope {name!r} would be left without a reader")
        return self._store.append(new_scope_key(name, remaining))

    def rotate_for(self, device: bytes) -> list[bytes]:
        """After `device` was revoked from the group: a new key for every scope this device reads that the
        revoked device could read. Returns the scope.key ids."""
        scopes, roster = self._state()
        me = self._store.device
        fresh = [new_scope_key(name, state.effective_readers(roster)) for name, state in sorted(scopes.scopes.items())
                 if device in state.readers and me in state.effective_readers(roster)]
        return self._store.append_many(fresh) if fresh else []

    def list(self) -> list[ScopeInfo]:
        """Every sealed scope of the group, by name."""
        scopes, roster = self._state()
        return [self._info(scopes.get(name), roster) for name in scopes.names()]

    def get(self, name: str) -> ScopeInfo:
        scopes, roster = self._state()
        state = scopes.get(name)
        if state is None:
            raise NotFoundError(f"no scope {name!r} in this group: see `agentlog scopes list`")
        return self._info(state, roster)

    def readable(self, name: str) -> bool:
        """Whether this device reads scope `name` (`user` and device overrides: always)."""
        if name == "user" or name.startswith("device:"):
            return True
        scopes, roster = self._state()
        state = scopes.get(name)
        return state is not None and self._store.device in state.effective_readers(roster)

    def unread(self) -> list[str]:
        """The scopes of the sealed events this store holds and could not read (as ciphertext, or as headers
        only: carry `readable`), by name."""
        return sorted(set(self.unread_counts()) | set(self._store.uncarried_counts()))

    def unread_counts(self) -> dict[str, int]:
        """How many sealed events this store holds and could not read, per scope, by name."""
        store = self._store

        def read(txn):
            counts: dict[str, int] = {}
            for key, _ in unread_in(store.dbs, txn):
                record = txn.get(key, db=store.dbs["events"])
                if record is not None:
                    scope = decode_record(bytes(record)).header.scope
                    counts[scope] = counts.get(scope, 0) + 1
            return dict(sorted(counts.items()))
        return store.read(read)

    def _info(self, state: ScopeState, roster) -> ScopeInfo:
        readers = state.effective_readers(roster)
        last: dict[bytes, int] = {}
        for key in state.keys.values():
            for device in key.boxes:
                last[device] = max(last.get(device, 0), key.epoch)
        former = tuple((d, roster.name_of(d), last[d]) for d in sorted(set(last) - readers, key=roster.name_of))
        return ScopeInfo(state.name, [(d, roster.name_of(d)) for d in sorted(readers, key=roster.name_of)],
                         state.epoch, self._store.device in readers, former)


def _check_name(name) -> None:
    problem = scope_name_problem(name)
    if problem:
        raise InvalidValueError(problem)
