"""The one exception hierarchy of agentlog.

Every error says what was wrong and where. Facts are attributes (`author`, `seq`,
`path`, `peer`) so callers and logs can use them without parsing messages.
Exceptions from lmdb, capnp and nacl are translated into these where they enter.
"""

from __future__ import annotations

ERROR_TEXT_MAX = 300            # characters of an exception's text in a log line


class AgentlogError(Exception):
    """Root of every error agentlog raises on purpose."""


class UsageError(AgentlogError):
    """The user asked for something that cannot be done as asked (bad argument, no home)."""


class InvalidValueError(UsageError):
    """A value handed to agentlog cannot be written: wrong type, length or range."""


class NotFoundError(InvalidValueError):
    """What was named does not exist here: a memory entry, decision, device or home (CLI exit code 4)."""


class HomeError(AgentlogError):
    """The home directory is missing, incomplete or unsafe."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class NoHomeError(HomeError, NotFoundError):
    """No agentlog device lives at the home path: no key file there."""


class StoreError(AgentlogError):
    """The LMDB store could not be opened or written."""


class EventError(AgentlogError):
    """An event failed validation. Subclasses follow docs/format.md's validation steps, in check order."""

    check = "event"

    def __init__(self, message: str, author: bytes | None = None, seq: int | None = None):
        super().__init__(message)
        self.author = author
        self.seq = seq

    def __str__(self) -> str:
        where = []
        if self.author is not None:
            where.append(f"author {self.author.hex()[:16]}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        prefix = f"{' '.join(where)}: " if where else ""
        return f"{prefix}{self.args[0]}"


class SizeLimitError(EventError):
    check = "size"


class DecodeError(EventError):
    check = "decode"


class GroupMismatchError(EventError):
    check = "group"


class NotEnrolledError(EventError):
    check = "enrolment"


class SequenceError(EventError):
    check = "seq"


class CausalGapError(SequenceError):
    """The event's clock names events of other authors this store does not hold yet."""


class ChainError(EventError):
    check = "prev"


class SignatureError(EventError):
    check = "signature"


class EpochError(EventError):
    """An event that opens a new epoch without being an epoch.start that names real branch heads of a fork."""

    check = "epoch"


class PayloadHashError(EventError):
    check = "payload"


class ScopeError(EventError):
    """A scope event or sealed event the scope rules refuse: a key sealed to a device not enrolled, a writer
    who was never a reader of the scope, a scope event outside scope user or sealed itself."""

    check = "scope"


class ForkError(EventError):
    """A second, different event at one (author, epoch, seq): both are kept as proof."""

    check = "fork"

    def __init__(self, message: str, author: bytes, seq: int, existing: bytes, incoming: bytes):
        super().__init__(message, author, seq)
        self.existing = existing
        self.incoming = incoming


class TokenError(AgentlogError):
    """A join token could not be read, opened or accepted."""


class PeerError(AgentlogError):
    """Something went wrong with a peer connection; `peer` names the remote address or device."""

    def __init__(self, message: str, peer: str = ""):
        super().__init__(f"{peer}: {message}" if peer else message)
        self.peer = peer
        self.reason = message


class HandshakeError(PeerError):
    """The handshake failed: wrong group, bad signature, timeout, or a malformed handshake frame.

    `reply` is the frame body (a refusal) to send the peer before closing, if any.
    """

    def __init__(self, message: str, peer: str = "", *, reply: bytes | None = None):
        super().__init__(message, peer)
        self.reply = reply


class PeerRefused(HandshakeError):
    """One side refused the other (not enrolled, revoked, wrong group); `reason` says why.

    `by_peer` is True when the peer refused us, False when we refused the peer.
    """

    def __init__(self, reason: str, peer: str = "", *, by_peer: bool = False, reply: bytes | None = None):
        super().__init__(f"{'the peer refused us' if by_peer else 'refused'}: {reason}", peer, reply=reply)
        self.reason = reason
        self.by_peer = by_peer


class ProtocolError(PeerError):
    """A peer broke the protocol: a message that does not decode, is out of place, or breaks a limit.

    `code` is the docs/protocol.md section 4 error code ("protocol", "too-large", "decode", ...), or
    "decrypt" for a frame that does not decrypt, which is never answered.
    """

    code = "protocol"

    def __init__(self, message: str, peer: str = "", *, code: str | None = None):
        super().__init__(message, peer)
        if code is not None:
            self.code = code


class PeerClosed(PeerError):
    """The peer closed the connection cleanly: EOF between frames, or its goodbye."""


class ConnectionLost(PeerError):
    """The connection broke: reset, EOF inside a frame, a frame that stalled, an interrupted send."""


class Unreachable(PeerError):
    """No connection could be made: refused, no route, unknown host, or the connect timed out. `refused`: the
    host answered that nothing listens on that port (every address of the name refused)."""

    def __init__(self, message: str, peer: str = "", *, refused: bool = False):
        super().__init__(message, peer)
        self.refused = refused


class RelayUnavailable(PeerError):
    """The relay could not be used: down or unreachable, or (`refused`) it refused this device's credentials."""

    def __init__(self, message: str, peer: str = "", *, refused: bool = False):
        super().__init__(message, peer)
        self.refused = refused


class RelayMessageError(AgentlogError):
    """A message on a relay subject that this device will not ingest; `code` says why, for the consumer:
    "subject" (not this group's relay subject), "short" (too short to be sealed), "key" (sealed with a relay
    key this device does not hold, maybe not yet), "open" (does not open: altered, or moved from another
    subject), "frame" or "record" (opens, but does not hold one event of this group and subject's author)."""

    def __init__(self, message: str, subject: str = "", *, code: str):
        super().__init__(f"relay message on {subject}: {message}" if subject else f"relay message: {message}")
        self.subject = subject
        self.code = code
        self.reason = message


class SnapshotError(AgentlogError):
    """A snapshot (from a peer or this store) does not hold: bad signature, digest, author or state."""


def describe(exc: BaseException) -> str:
    """One bounded line for a log: the exception's type and text (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    if len(text) > ERROR_TEXT_MAX:
        text = text[:ERROR_TEXT_MAX] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
