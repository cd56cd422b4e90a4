"""SPAKE2, the password-authenticated key exchange of pairing (docs/pairing.md): the only module that
touches the `spake2` package.

Each side sends one 33-byte message; both end with the same 32-byte key when, and only when, they
used the same password and identities. A side learns nothing it could check a password against
offline: one exchange is one guess, which the key confirmation that follows reveals.
"""

from __future__ import annotations

MESSAGE_LEN = 33


class Pake:
    """One side of one SPAKE2 exchange: `message` to send, then `finish(theirs)` for the shared key.

    The joiner is side A, the inviter side B; `context` (the invite's public slot) binds both
    identities, so a key from one invite is never a key of another.
    """

    def __init__(self, password: bytes, context: bytes, *, joiner: bool):
        from spake2 import SPAKE2_A, SPAKE2_B  # loaded by a pairing, not by every `serve` (it loads `cryptography`)

        ids = {"idA": b"agentlog pairing joiner " + context, "idB": b"agentlog pairing inviter " + context}
        self._side = (SPAKE2_A if joiner else SPAKE2_B)(password, **ids)
        self.message = self._side.start()

    def finish(self, theirs: bytes) -> bytes:
        """The shared key from the other side's message.

        Raises:
            ValueError: the message is malformed, from the wrong side, our own reflected, or not a
                point of the group (whatever the package raises becomes this).
        """
        if not isinstance(theirs, bytes) or len(theirs) != MESSAGE_LEN:
            raise ValueError(f"a SPAKE2 message is {MESSAGE_LEN} bytes")
        try:
            return self._side.finish(theirs)
        except Exception as exc:  # noqa: BLE001 - the package raises its own errors, ValueError and AssertionError
            raise ValueError(f"SPAKE2 message refused: {type(exc).__name__}") from None
