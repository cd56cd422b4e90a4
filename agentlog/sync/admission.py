"""Which devices a connection admits, from the roster (docs/protocol.md §4.1): the handshake's check of a peer,
and whether the replicator serves a connected peer or only receives from it."""

from __future__ import annotations

from agentlog.store.store import Store
from agentlog.sync.handshake import CheckPeer


def check_peer(store: Store) -> CheckPeer:
    """Accept a device that `admits` accepts; and, while this device has not received the group's history
    up to its own enrolment, any device its roster does not know, receive-only (docs/protocol.md §4.1)."""
    def check(device: bytes) -> str | None:
        if device == store.device:
            return "that is this device itself"
        member = store.roster().members.get(device)
        if _admitted(store, member, device) or member is None and not _has_history(store):
            return None
        if member is not None and member.enrolled:
            return f"device {device.hex()[:16]} was revoked from this group"
        return f"device {device.hex()[:16]} is not enrolled in this group"
    return check


def admits(store: Store, device: bytes) -> bool:
    """Whether the roster lets `device` read this device's log: enrolled and not revoked (or, until the roster
    knows them, the founder and the device whose token this one joined with: both named by the token)."""
    return _admitted(store, store.roster().members.get(device), device)


def _admitted(store: Store, member, device: bytes) -> bool:
    """`admits`, given the device's roster entry (None: the roster does not know it)."""
    if member is not None:
        return member.active
    anchor = store.anchor()
    return device == store.founder or anchor is not None and anchor[0].header.author == device


def _has_history(store: Store) -> bool:
    """Whether the store holds the group's history up to its own enrolment (a device that joined by token
    has only the token's enrolment until then, so its roster may lack devices enrolled before it)."""
    anchor = store.anchor()
    if anchor is None:
        return True
    h = anchor[0].header
    head = store.heads().get(h.author)
    return head is not None and (head.epoch, head.seq) >= (h.epoch, h.seq)
