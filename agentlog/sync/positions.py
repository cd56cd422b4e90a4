"""Where the events of a received batch sit in their authors' logs, read from the records' headers alone: the
protocol asks while the batch is still being stored, so as not to push those events back to the peer that sent
them (protocol.Connection.local_changed)."""

from __future__ import annotations

from agentlog import crypto
from agentlog.codec.decode import Reader
from agentlog.codec.schema import event as _schema
from agentlog.errors import EventError
from agentlog.sync.messages import Frontier, WireEvent

_POSITION = Reader(_schema.Header, ("author", "epoch", "seq"))


def batch_heads(events: tuple[WireEvent, ...]) -> Frontier:
    """The newest (epoch, seq) per author among `events`; a record that does not decode is left out (storing
    the batch refuses it, which ends the connection)."""
    out: Frontier = {}
    for event in events:
        try:
            author, epoch, seq = _POSITION.read(event.record[:-crypto.SIG_LEN], len(event.record), "event header")
        except EventError:
            continue
        if out.get(author, (-1, -1)) < (epoch, seq):
            out[author] = (epoch, seq)
    return out
