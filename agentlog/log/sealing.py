"""The sealed payload envelope (codec `sealed`): build, parse and its associated data. Pure.

Envelope = key id (32) ‖ nonce (24) ‖ XChaCha20-Poly1305-IETF ciphertext of the plain payload. The header's
payloadHash covers these bytes, so every device and relay checks integrity without reading. The associated
data binds the ciphertext to its group, author, scope and kind: moved under another header, it does not open.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentlog import crypto

AD_PREFIX = b"agentlog sealed 1"
KEY_ID_LEN = crypto.ID_LEN
MIN_ENVELOPE = KEY_ID_LEN + crypto.NONCE_LEN + crypto.AEAD_TAG_LEN


def ad(group: bytes, author: bytes, scope: str, kind: str) -> bytes:
    """The associated data of a sealed payload: prefix ‖ group ‖ author ‖ scope ‖ 0x00 ‖ kind."""
    return AD_PREFIX + group + author + scope.encode() + b"\0" + kind.encode()


def seal(key: bytes, key_id: bytes, plain: bytes, associated: bytes) -> bytes:
    """The envelope of `plain` under content key `key` (introduced by the scope.key event `key_id`)."""
    return key_id + crypto.aead_encrypt(key, plain, associated)


def key_id(envelope: bytes) -> bytes | None:
    """The id of the key an envelope names, or None when it is too short to be one."""
    return bytes(envelope[:KEY_ID_LEN]) if len(envelope) >= MIN_ENVELOPE else None


def open_envelope(keys: Mapping[bytes, bytes], envelope: bytes, associated: bytes) -> bytes | None:
    """The plain payload, or None when the key it names is not in `keys` or does not open it."""
    kid = key_id(envelope)
    key = keys.get(kid) if kid is not None else None
    if key is None:
        return None
    return crypto.aead_decrypt(key, bytes(envelope[KEY_ID_LEN:]), associated)
