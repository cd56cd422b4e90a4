"""Points in time as a user names them: --until TIME (epoch ms or ISO 8601) or --at AUTHOR:SEQ.

The fold at a point (agentlog.store.scratch) takes a Point; this module reads one from the command line.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agentlog.errors import UsageError
from agentlog.store.scratch import LiveLog, Point


def parse_time(text: str) -> int:
    """Epoch milliseconds from `text`: digits are epoch ms; else ISO 8601, UTC when no zone is given.

    Raises:
        UsageError: neither.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"time {text!r} is neither epoch milliseconds nor ISO 8601 "
                         "(e.g. 2025-05-03T14:00:00Z; UTC when no zone is given)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)




def resolve_point(live: LiveLog, until: str | None = None, at: str | None = None) -> Point:
    """The Point that --until TIME or --at AUTHOR:SEQ names (neither: everything held)."""
    if at is not None:
        ref, sep, seq = at.rpartition(":")
        if not sep or not ref or not seq.isdigit() or int(seq) < 1:
            raise UsageError(f"--at {at!r} must be AUTHOR:SEQ (a device name or id prefix, a seq from 1)")
        return Point(at=(live.device_named(ref), int(seq)), text=at)
    if until is not None:
        return Point(until=parse_time(until), text=until)
    return Point()


def point_of(live: LiveLog, text: str) -> Point:
    """A point given as one string (--diff): a TIME, else AUTHOR:SEQ."""
    try:
        return resolve_point(live, until=text)
    except UsageError:
        if ":" in text and text.rpartition(":")[2].isdigit():
            return resolve_point(live, at=text)
        raise
