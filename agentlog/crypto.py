"""Hashing, signing and sealing: the only module that touches nacl.

Ed25519 signs the 32-byte event id; BLAKE2b-256 gives ids and payload hashes.
libsodium releases the GIL, so the store signs a big batch on several threads
(agentlog/store/signing.py); this module starts none.
"""

from __future__ import annotations

import hashlib
import os

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public

ID_LEN = 32
KEY_LEN = 32
SIG_LEN = 64
ZERO_ID = bytes(ID_LEN)


def blake2b256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest: event ids, payload hashes, view digests."""
    return hashlib.blake2b(data, digest_size=32).digest()


class DeviceKey:
    """A device's Ed25519 key pair; the public key is the device id."""

    __slots__ = ("_secret", "public")

    def __init__(self, seed: bytes):
        self.public, self._secret = sodium.crypto_sign_seed_keypair(seed)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(os.urandom(32))

    @property
    def seed(self) -> bytes:
        return sodium.crypto_sign_ed25519_sk_to_seed(self._secret)

    def sign(self, event_id: bytes) -> bytes:
        return sodium.crypto_sign(event_id, self._secret)[:SIG_LEN]

    def sign_all(self, event_ids: list[bytes]) -> list[bytes]:
        """Sign each id in turn, order kept; libsodium drops the GIL, so threads may sign parts of a batch at once."""
        secret = self._secret
        return [sodium.crypto_sign(i, secret)[:SIG_LEN] for i in event_ids]

    def open_sealed(self, sealed: bytes) -> bytes:
        """Open a box sealed to this device's key (converted to X25519)."""
        private = nacl.public.PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(self._secret))
        try:
            return nacl.public.SealedBox(private).decrypt(sealed)
        except nacl.exceptions.CryptoError as exc:
            raise ValueError("sealed box does not open with this device's key") from exc


def seal_to(device: bytes, secret: bytes) -> bytes:
    """Encrypt `secret` so only the holder of Ed25519 key `device` can read it."""
    public = nacl.public.PublicKey(sodium.crypto_sign_ed25519_pk_to_curve25519(device))
    return nacl.public.SealedBox(public).encrypt(secret)


def verify(author: bytes, event_id: bytes, signature: bytes) -> bool:
    """True when `signature` is `author`'s Ed25519 signature over `event_id`."""
    try:
        sodium.crypto_sign_open(signature + event_id, author)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False


def is_valid_public_key(key: bytes) -> bool:
    """A 32-byte Ed25519 point that libsodium accepts for X25519 conversion."""
    if len(key) != KEY_LEN:
        return False
    try:
        sodium.crypto_sign_ed25519_pk_to_curve25519(key)
        return True
    except Exception:  # noqa: BLE001 - libsodium rejects bad points with several types
        return False

