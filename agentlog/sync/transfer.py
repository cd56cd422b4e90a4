"""A snapshot on the wire, both ends: an offer, then each view's state in ordered chunks. Pure.

docs/protocol.md section 8. The sender keeps at most a window of chunks unacked; the
receiver takes chunks strictly in order (view by view as the offer lists them, each at
the offset it has reached) and reassembles the states, so a garbled or reordered stream
is refused before anything is installed. Whether the states are the signed ones is for
compaction.bootstrap to check.
"""

from __future__ import annotations

from agentlog.errors import ProtocolError
from agentlog.sync.messages import SNAPSHOT_CHUNK, SnapshotChunk, SnapshotOffer


class Outgoing:
    """A snapshot being sent: its offer, then chunks of at most `chunk` bytes, at most `window` unacked."""

    def __init__(self, record: bytes, payload: bytes, states: dict[str, bytes], window: int,
                 chunk: int = SNAPSHOT_CHUNK):
        self.record, self.payload, self.states, self.window = record, payload, states, window
        self.pieces = [(name, at, min(at + chunk, len(state))) for name, state in states.items()
                       for at in range(0, len(state), chunk)]
        self.sent = self.acked = 0
        self.done = False                # the receiver acked the last chunk: it installed the snapshot

    def offer(self) -> SnapshotOffer:
        return SnapshotOffer(self.record, self.payload, tuple((n, len(s)) for n, s in self.states.items()))

    def chunks(self) -> list[SnapshotChunk]:
        """The chunks the window lets go now."""
        out = []
        while self.sent < len(self.pieces) and self.sent - self.acked < self.window:
            name, lo, hi = self.pieces[self.sent]
            out.append(SnapshotChunk(name, lo, self.states[name][lo:hi]))
            self.sent += 1
        return out

    def ack(self, n: int) -> None:
        """The receiver took chunk `n` (the last one: and installed the snapshot).

        Raises:
            ProtocolError: `n` is not the next chunk sent and unacked.
        """
        last = n == len(self.pieces) == self.sent
        if self.done or not (n == self.acked + 1 <= self.sent or last and n == self.acked):
            raise ProtocolError(f"snapshot ack of chunk {n}; chunk {self.acked + 1} of {self.sent} sent was due")
        self.acked = n
        self.done = last


class Incoming:
    """A snapshot being received: the offer's sizes, filled by chunks in order."""

    def __init__(self, offer: SnapshotOffer):
        self.offer = offer
        self.parts = {name: bytearray() for name, _ in offer.views}
        self.sizes = dict(offer.views)
        self.total = sum(self.sizes.values())
        self.received = 0
        self.chunks = 0

    def _current(self) -> str | None:
        return next((n for n, size in self.offer.views if len(self.parts[n]) < size), None)

    def take(self, chunk: SnapshotChunk) -> None:
        """Add the next chunk.

        Raises:
            ProtocolError: it is not the next piece of the view due, or runs past that view's size.
        """
        due = self._current()
        if due is None:
            raise ProtocolError("snapshot chunk after every view's state arrived")
        have = len(self.parts[due])
        if chunk.view != due or chunk.offset != have:
            raise ProtocolError(f"snapshot chunk of {chunk.view!r} at {chunk.offset}; {due!r} at {have} was due")
        if have + len(chunk.data) > self.sizes[due]:
            raise ProtocolError(f"snapshot chunk runs past the {self.sizes[due]} bytes offered for {due!r}",
                                code="too-large")
        self.parts[due] += chunk.data
        self.received += len(chunk.data)
        self.chunks += 1

    @property
    def complete(self) -> bool:
        return self.received == self.total

    def states(self) -> dict[str, bytes]:
        return {name: bytes(part) for name, part in self.parts.items()}
