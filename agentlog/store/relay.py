"""The relay key: the content keys of the reserved sealed scope `relay`, whose readers are every enrolled device
of the group (docs/relay.md, "Keys").

`agentlog peers add nats://...` creates the scope (`create_scope`); enrolling a device and the replicator's
upkeep grant it to devices that lack it and rotate its key when a revoked device still holds the current one
(`upkeep`); `keys` gives what this device seals and opens relay messages with. A join token may carry relay keys
sealed to the new device (meta `relay_join`), so it can open relay messages before it holds any scope event.
Content keys are opened with the device key in memory and never written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from agentlog import crypto
from agentlog.errors import TokenError, UsageError
from agentlog.log.event import peek_record, record_id
from agentlog.log.kinds import RELAY_SCOPE, SCOPE_KINDS
from agentlog.store.append import new_scope_key
from agentlog.store.keyring import scopes_in
from agentlog.store.views import roster_in

JOIN_META = "relay_join"              # current key id(32) ‖ (key id(32) ‖ box(80))*: relay keys a join token gave
JOIN_ENTRY = crypto.ID_LEN + crypto.BOX_LEN
MAX_JOIN_KEYS = 1024
ROTATION_KINDS = SCOPE_KINDS | {"device.revoke"}   # what a rotation's author writes just before its scope.key
ROTATION_RUN_MAX = 64                              # of those, how many before it are sealed with the former key


class RelayKeys(Mapping):
    """Key id -> relay key, for every relay key this device holds, and `current`: the id of the key it seals with
    (None when it holds no current one: no relay yet, not granted yet, or revoked). `former`: event id -> id of the
    key that seals it instead of the current one (`sealing_key`)."""

    __slots__ = ("_keys", "current", "former")

    def __init__(self, keys: dict[bytes, bytes], current: bytes | None, former: dict[bytes, bytes] | None = None):
        self._keys = dict(keys)
        self.current = current if current in self._keys else None
        self.former = {eid: kid for eid, kid in (former or {}).items() if kid in self._keys}

    def sealing_key(self, event_id: bytes) -> bytes | None:
        """The id of the key event `event_id` is sealed with on the relay: for the scope.key that introduces a relay
        key (and the revocation and scope events its author wrote just before it), the key current before it, so
        that a device reached only through the relay can open the event that gives it the new key; for any other
        event, the current key."""
        return self.former.get(event_id, self.current)

    def __getitem__(self, key_id: bytes) -> bytes:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        shown = self.current.hex()[:16] if self.current else None
        return f"RelayKeys({len(self._keys)} keys, current {shown})"


def _state(store):
    return store.read(lambda txn: (scopes_in(store.dbs, txn), roster_in(store.dbs, txn)))


def keys(store) -> RelayKeys:
    """The relay keys this device holds: those sealed to it in the scope's events, and those its join token gave.
    The current one is the scope's current key when this device holds it; before this device holds any scope
    event, the one its token named current."""
    scopes, _ = _state(store)
    state = scopes.get(RELAY_SCOPE)
    relay_ids = {kid for kid, (name, _) in scopes.boxes_for(store.device).items() if name == RELAY_SCOPE}
    held = {kid: key for kid, key in store.keyring.keys(scopes).items() if kid in relay_ids}
    joined_current, joined = _joined(store)
    for kid, key in joined.items():
        held.setdefault(kid, key)
    current = state.current if state is not None else joined_current
    return RelayKeys(held, current, _former(store, state, held) if state is not None else {})


def _former(store, state, held: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Event id -> the relay key current before the rotation it belongs to: each scope.key that introduced a relay
    key after the first, and the run of revocation and scope events its author wrote just before it (the
    revocation that caused it comes first), for the keys whose predecessor this device holds. None of them holds
    anything a revoked device may not read: scope events hold boxes sealed to their readers."""
    by_epoch = {k.epoch: kid for kid, k in state.keys.items()}
    out = {}
    for kid, k in state.keys.items():
        before = by_epoch.get(k.epoch - 1)
        if before is None or before not in held:
            continue
        out[kid] = before
        found = store.get(kid)
        if found is None:
            continue
        h = found.header
        rows = store.read_range(h.author, h.epoch, max(1, h.seq - ROTATION_RUN_MAX), h.seq - 1, ROTATION_RUN_MAX)
        for _, record, _ in reversed(rows if len(rows) == min(ROTATION_RUN_MAX, h.seq - 1) else []):
            if peek_record(record)[2] not in ROTATION_KINDS:
                break
            out.setdefault(record_id(record), before)
    return out


def _joined(store) -> tuple[bytes | None, dict[bytes, bytes]]:
    """The relay keys a join token gave this device (opened in memory), and the id of the one it named current."""
    raw = store.meta(JOIN_META)
    if not raw or store.key is None:
        return None, {}
    raw = bytes(raw)
    out = {}
    for at in range(crypto.ID_LEN, len(raw) - JOIN_ENTRY + 1, JOIN_ENTRY):
        kid, box = raw[at : at + crypto.ID_LEN], raw[at + crypto.ID_LEN : at + JOIN_ENTRY]
        key = store.keyring.open(box)
        if key is not None:
            out[kid] = key
    return raw[: crypto.ID_LEN], out


def pack_join(current: bytes, boxes: list[tuple[bytes, bytes]]) -> bytes:
    """The relay keys of a join token as meta `relay_join` keeps them.

    Raises:
        TokenError: a key id or box of the wrong length, too many keys, or a current key not among them.
    """
    if len(boxes) > MAX_JOIN_KEYS:
        raise TokenError(f"join token carries {len(boxes)} relay keys, over the limit of {MAX_JOIN_KEYS}")
    if any(len(kid) != crypto.ID_LEN or len(box) != crypto.BOX_LEN for kid, box in boxes):
        raise TokenError(f"join token's relay keys must be {crypto.ID_LEN}-byte ids with {crypto.BOX_LEN}-byte boxes")
    if current not in {kid for kid, _ in boxes}:
        raise TokenError("join token's current relay key is not among the relay keys it carries")
    return current + b"".join(kid + box for kid, box in boxes)


def token_boxes(store, device: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """(current key id, [(key id, box)]) of every relay key this device holds, each sealed to `device`, in epoch
    order, for a join token; None when this device holds no current relay key."""
    held = keys(store)
    if held.current is None:
        return None
    scopes, _ = _state(store)
    state = scopes.get(RELAY_SCOPE)
    epoch = {kid: k.epoch for kid, k in state.keys.items()} if state is not None else {}
    order = sorted(held, key=lambda kid: (epoch.get(kid, 0), kid))
    return held.current, [(kid, crypto.seal_box(device, held[kid])) for kid in order]


def create_scope(store) -> bytes | None:
    """Create scope `relay` with every enrolled, non-revoked device as its reader; returns the scope.key event's
    id, or None when the scope exists already."""
    scopes, roster = _state(store)
    if scopes.get(RELAY_SCOPE) is not None:
        return None
    readers = {m.device for m in roster.enrolled_members() if m.active}
    if store.device not in readers:
        raise UsageError("this device is not an enrolled, active device of its group; it cannot create the relay key")
    return store.append(new_scope_key(RELAY_SCOPE, readers))


def upkeep(store, devices: list[bytes] | None = None) -> list[bytes]:
    """What a reader of scope `relay` does so every enrolled device holds the relay key and no revoked one holds the
    current key: a new key epoch when a revoked device (or a former reader) holds the current key, then a grant of
    every held relay key to each active device (of `devices`, or all) that is not a reader. Returns the ids of the
    new key and of the last grant written ([] when there is nothing to do, no scope, or this device does not
    read it)."""
    if store.key is None:
        return []
    scopes, roster = _state(store)
    state = scopes.get(RELAY_SCOPE)
    me = roster.members.get(store.device)
    if state is None or me is None or not me.active:
        return []
    readers = state.effective_readers(roster)
    if store.device not in readers:
        return []
    written = []
    current = state.keys.get(state.current)
    if current is None or set(current.boxes) - readers:
        written.append(store.append(new_scope_key(RELAY_SCOPE, readers)))
    wanted = devices if devices is not None else [m.device for m in roster.enrolled_members()]
    missing = sorted({d for d in wanted if d in roster.members and roster.members[d].active} - readers)
    if missing:
        written.append(store.scopes.grant(RELAY_SCOPE, missing))
    return written
