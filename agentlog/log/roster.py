"""The roster reducer: which devices may write to the group, from when, until when. Pure.

Folds device.enroll and device.revoke events. A device may write from its
enrolment on (its first event's clock must cover the enrolling event) until the
seq a revocation names (the revoker's view of its head; the lowest one wins when
several revocations are concurrent). A revocation that arrives before the enrolment
it concerns is kept and applies once the enrolment is folded. The founder is enrolled by the group's
genesis event. The state is a function of the set of roster events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agentlog.errors import NotEnrolledError
from agentlog.log.event import Header
from agentlog.log.payloads import DeviceEnroll, DeviceRevoke


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an event sits: (author, epoch, seq) plus its id."""

    author: bytes
    epoch: int
    seq: int
    id: bytes


@dataclass(slots=True)
class Member:
    """A device the roster events name; it may write only once some enrolment names it."""

    device: bytes
    enrollments: list[tuple[Position, str]] = field(default_factory=list)
    until_seq: int | None = None
    revoked_by: list[Position] = field(default_factory=list)

    @property
    def enrolled_by(self) -> list[Position]:
        return [pos for pos, _ in self.enrollments]

    @property
    def name(self) -> str:
        return self.enrollments[0][1] if self.enrollments else self.device.hex()[:12]

    @property
    def enrolled(self) -> bool:
        return bool(self.enrollments)

    @property
    def active(self) -> bool:
        return self.enrolled and self.until_seq is None


VERSION = 2
"""Bumped whenever folding rules or `to_bytes` change; stores then rebuild the roster by replay."""


class Roster:
    """Group membership folded from roster events."""

    def __init__(self, founder: bytes | None = None):
        self.founder = founder
        self.members: dict[bytes, Member] = {}

    @classmethod
    def replay(cls, founder: bytes | None, events) -> Roster:
        """Fold (header, event id, payload) triples in lamport order: a causal order of any event set."""
        roster = cls(founder)
        for header, event_id, payload in sorted(events, key=lambda e: (e[0].lamport, e[0].author, e[0].seq)):
            roster.apply(header, event_id, payload)
        return roster

    def apply(self, header: Header, event_id: bytes, payload) -> bool:
        """Fold one roster event; returns True when the roster changed."""
        here = Position(header.author, header.epoch, header.seq, event_id)
        if not isinstance(payload, (DeviceEnroll, DeviceRevoke)):
            return False
        member = self.members.setdefault(payload.device, Member(payload.device))
        if isinstance(payload, DeviceEnroll):
            if here in member.enrolled_by:
                return False
            member.enrollments.append((here, payload.name))
            member.enrollments.sort()
            return True
        if isinstance(payload, DeviceRevoke):
            if here in member.revoked_by:
                return False
            member.revoked_by.append(here)
            member.revoked_by.sort()
            held = member.until_seq
            member.until_seq = payload.until_seq if held is None else min(held, payload.until_seq)
            return True
        return False

    def check_author(self, header: Header) -> None:
        """Raise NotEnrolledError unless the header's author may write this event."""
        member = self.members.get(header.author)
        if member is None or not member.enrolled:
            raise NotEnrolledError("device is not enrolled in this group", header.author, header.seq)
        if member.until_seq is not None and (header.seq > member.until_seq or header.epoch > 0):
            raise NotEnrolledError(f"device was revoked after seq {member.until_seq}", header.author, header.seq)
        if header.seq == 1 and header.epoch == 0 and header.author != self.founder:
            if not any(self._covers(header, by) for by in member.enrolled_by):
                raise NotEnrolledError("first event does not follow the device's enrolment (clock lacks it)",
                                       header.author, header.seq)

    @staticmethod
    def _covers(header: Header, by: Position) -> bool:
        if by.author == header.author:
            return False
        return any(e.author == by.author and (e.epoch, e.seq) >= (by.epoch, by.seq) for e in header.clock)

    def find(self, ref: str) -> Member | None:
        """A member by exact name, or by hex id or unique id prefix (8+ characters)."""
        ref_lower = ref.lower()
        named = [m for m in self.members.values() if m.enrolled and m.name == ref]
        if len(named) == 1:
            return named[0]
        if len(ref_lower) >= 8:
            by_id = [m for m in self.members.values() if m.device.hex().startswith(ref_lower)]
            if len(by_id) == 1:
                return by_id[0]
        return None

    def name_of(self, device: bytes) -> str:
        member = self.members.get(device)
        return member.name if member else device.hex()[:12]

    def enrolled_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.enrolled]

    def to_bytes(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace; equal rosters give equal bytes."""
        doc = {
            "founder": self.founder.hex() if self.founder else None,
            "members": [
                {
                    "device": m.device.hex(),
                    "enrollments": [_pos_json(p) + [name] for p, name in m.enrollments],
                    "until_seq": m.until_seq,
                    "revoked_by": [_pos_json(p) for p in m.revoked_by],
                }
                for m in sorted(self.members.values(), key=lambda m: m.device)
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Roster:
        doc = json.loads(raw)
        roster = cls(bytes.fromhex(doc["founder"]) if doc["founder"] else None)
        for m in doc["members"]:
            roster.members[bytes.fromhex(m["device"])] = Member(
                bytes.fromhex(m["device"]),
                [(_pos_from(p), p[4]) for p in m["enrollments"]],
                m["until_seq"],
                [_pos_from(p) for p in m["revoked_by"]],
            )
        return roster


def _pos_json(p: Position) -> list:
    return [p.author.hex(), p.epoch, p.seq, p.id.hex()]


def _pos_from(v: list) -> Position:
    return Position(bytes.fromhex(v[0]), v[1], v[2], bytes.fromhex(v[3]))
