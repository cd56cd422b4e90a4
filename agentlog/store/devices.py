"""Device provisioning: enrol a new device, hand it a join token, let it join, revoke.

The token carries the group id, the founder and genesis id (the root the group's
history must reach), and the signed device.enroll event; the group secret in it is
sealed to the new device's key so only that device can read it. When the group has a
relay, it also carries the relay's address and the relay keys sealed to the new device,
so the device can join through the relay alone (agentlog.store.relay).
"""

from __future__ import annotations

import base64
import binascii
import re

from agentlog import crypto
from agentlog.codec.schema import token as _schema
from agentlog.codec.wire import build, reader
from agentlog.errors import EventError, NotFoundError, TokenError, UsageError
from agentlog.log import payloads
from agentlog.log.event import check_ranges, decode_record
from agentlog.log.validate import check_payload
from agentlog.store import relay
from agentlog.store.layout import pack_anchor
from agentlog.store.peers import RELAY_SCHEME
from agentlog.store.store import Store

TOKEN_PREFIX = "agentlog-join:"
MAX_TOKEN_BYTES = 64 * 1024
MAX_DEVICES = 200
"""A group's size limit: a header's clock names at most MAX_CLOCK_ENTRIES (256) other authors."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def parse_device_id(text: str) -> bytes:
    """A device id as printed by `agentlog init --join`: 64 hex digits of an Ed25519 key."""
    try:
        device = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageError(f"device id {text!r} is not hexadecimal") from None
    if not crypto.is_valid_public_key(device):
        raise UsageError(f"device id {text!r} is not a 64-digit Ed25519 device key")
    return device


def enroll(store: Store, device: bytes, name: str) -> str:
    """Append a device.enroll for `device` and return the join token for it.

    For a device already enrolled under this name that has not written yet (its token
    was lost), the token for the existing enrolment is printed again instead.
    """
    roster = store.roster()
    known = roster.members.get(device)
    if known is not None and known.active and known.name == name and device not in store.heads():
        event = store.get(known.enrolled_by[0].id)
        relay.upkeep(store, [device])
        return _token(store, event, device, name)
    if known is not None and (known.enrolled or known.until_seq is not None):
        raise UsageError(f"device {device.hex()[:16]} is already known to this group as {known.name!r}")
    check_new_name(store, name, roster)
    event = store.get(store.append(payloads.DeviceEnroll(device=device, name=name)))
    relay.upkeep(store, [device])
    return _token(store, event, device, name)


def check_new_name(store: Store, name: str, roster=None) -> None:
    """Refuse (UsageError) a name a new device cannot be enrolled under, or a group that is full."""
    roster = roster or store.roster()
    if len(roster.members) >= MAX_DEVICES:
        raise UsageError(f"this group already has {len(roster.members)} devices, the most it can hold")
    if not name or len(name) > 64 or not name.isprintable():
        raise UsageError("device name must be 1 to 64 printable characters")
    if any(m.name == name for m in roster.enrolled_members()):
        raise UsageError(f"a device of this group is already named {name!r} (revoked devices keep their names); "
                         "choose another --name")


def enroll_with_scopes(store: Store, device: bytes, name: str, scopes: list[str]) -> str:
    """`enroll`, then grant the sealed `scopes` to the new device; its join token. The scopes are checked
    first (`check_grantable`), so a bad one changes nothing."""
    for scope in scopes:
        check_grantable(store, scope)
    token = enroll(store, device, name)
    for scope in scopes:
        if device not in {reader for reader, _ in store.scopes.get(scope).readers}:
            store.scopes.grant(scope, [device])
    return token


def check_grantable(store: Store, scope: str) -> None:
    """Refuse a scope this device could not grant: an unknown scope (NotFoundError), or one it does not
    read (UsageError), since only a reader holds the keys to hand over."""
    if not store.scopes.get(scope).can_read:
        raise UsageError(f"this device cannot read scope {scope!r}, so it cannot grant it: "
                         "enrol the device from one of its readers (agentlog scopes list)")


def _token(store: Store, event, device: bytes, name: str) -> str:
    """The join token for `device`, carrying its signed enrolment `event`, and the group's relay when it has one."""
    fields = dict(
        formatVersion=1, group=store.group, founder=store.founder, genesis=store.genesis, device=device,
        name=name, enrollHeader=event.record, enrollPayload=event.payload,
        sealedGroupKey=crypto.seal_to(device, store.meta("group_key")),
    )
    boxes = relay.token_boxes(store, device)
    if boxes is not None:
        fields["relay"] = (next(iter(store.peer_book.relays()), ""), *boxes)
    raw = build(_schema.JoinToken, _fill_token, fields)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _fill_token(msg, fields: dict) -> None:
    for name, value in fields.items():
        if name != "relay":
            setattr(msg, name, value)
    if "relay" in fields:
        address, current, boxes = fields["relay"]
        r = msg.init("relay")
        r.address, r.current = address, current
        for slot, (kid, box) in zip(r.init("keys", len(boxes)), boxes):
            slot.id, slot.box = kid, box


def join(store: Store, token: str, inviter: bytes | None = None) -> payloads.DeviceEnroll:
    """Accept a join token on the new device: check it, open its secret, record the group. With `inviter`
    (pairing: the device that proved the code), the enrolment must be that device's."""
    if store.group is not None:
        raise UsageError("this device already belongs to a group")
    text = token.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise TokenError(f"join token must start with {TOKEN_PREFIX!r}")
    try:
        body = text[len(TOKEN_PREFIX):]
        if not _BASE64URL.fullmatch(body):
            raise ValueError("not base64url")
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("join token is not valid unpadded base64url") from None
    try:
        with reader(_schema.JoinToken, raw, MAX_TOKEN_BYTES, "join token") as msg:
            t = {k: getattr(msg, k) for k in ("formatVersion", "group", "founder", "genesis", "device", "name",
                                                "enrollHeader", "enrollPayload", "sealedGroupKey")}
            r = msg.relay
            t["relay"] = (r.address, r.current, [(k.id, k.box) for k in r.keys])
    except EventError as exc:
        raise TokenError(str(exc)) from None
    if t["formatVersion"] != 1:
        raise TokenError(f"join token version {t['formatVersion']} is not supported")
    if t["device"] != store.device:
        raise TokenError(f"join token is for device {t['device'].hex()[:16]}, not this one ({store.device.hex()[:16]})")
    try:
        event = decode_record(t["enrollHeader"], t["enrollPayload"])
        check_ranges(event.header)
        enrolment = check_payload(event)
    except EventError as exc:
        raise TokenError(f"join token's enrolment event is invalid: {exc}") from None
    h = event.header
    if not isinstance(enrolment, payloads.DeviceEnroll) or enrolment.device != store.device or h.group != t["group"]:
        raise TokenError("join token's enrolment event does not enrol this device in that group")
    if not crypto.verify(h.author, event.id, event.signature):
        raise TokenError("join token's enrolment event is not signed by its author")
    if inviter is not None and h.author != inviter:
        raise TokenError("join token's enrolment event is not the inviting device's")
    try:
        group_key = store.key.open_sealed(t["sealedGroupKey"])
    except ValueError as exc:
        raise TokenError(f"join token's group key: {exc}") from None
    meta = {
        "group": t["group"], "founder": t["founder"], "genesis": t["genesis"], "group_key": group_key,
        "name": enrolment.name.encode(), "anchor": pack_anchor(event.record, event.payload),
        "lamport": h.lamport.to_bytes(8, "big"),
    }
    address, current, boxes = t["relay"]
    if current or boxes or address:
        meta[relay.JOIN_META] = _relay_from_token(store, address, current, boxes)
    store.set_meta(meta)
    if address and address not in store.peer_book.relays():
        store.peer_book.add_relay(address, {})
    return enrolment


def _relay_from_token(store: Store, address: str, current: bytes, boxes: list[tuple[bytes, bytes]]) -> bytes:
    """The relay part of a join token, checked (every key opens with this device's key), as meta keeps it."""
    if address and (not address.startswith(RELAY_SCHEME) or len(address) > 300 or not address.isprintable()):
        raise TokenError("join token's relay address is not nats://HOST:PORT")
    packed = relay.pack_join(current, boxes)
    if any(store.key.open_box(box) is None for _, box in boxes):
        raise TokenError("join token's relay keys are not sealed to this device")
    return packed


def revoke(store: Store, ref: str, reason: str = "") -> payloads.DeviceRevoke:
    """Append a device.revoke for the device named or id'd by `ref`, up to the seq seen of it."""
    roster = store.roster()
    member = roster.find(ref)
    if member is None:
        raise NotFoundError(f"no enrolled device is named or has id {ref!r}: see `agentlog devices list`")
    if member.device == store.device:
        raise UsageError("a device cannot revoke itself; revoke it from another enrolled device")
    if not member.active:
        raise UsageError(f"device {member.name!r} is already revoked (after seq {member.until_seq})")
    head = store.heads().get(member.device)
    payload = payloads.DeviceRevoke(device=member.device, until_seq=head.seq if head else 0, reason=reason)
    store.append(payload)
    store.scopes.rotate_for(member.device)
    return payload
