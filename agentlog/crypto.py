"""Hashing, signing and sealing: the only module that touches nacl.

Ed25519 signs the 32-byte event id; BLAKE2b-256 gives ids and payload hashes.
libsodium releases the GIL, so a batch's signatures are made on several threads.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

ID_LEN = 32
KEY_LEN = 32
SIG_LEN = 64
ZERO_ID = bytes(ID_LEN)

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_CHUNK = 8
_pool: ThreadPoolExecutor | None = None


def blake2b256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest: event ids, payload hashes, view digests."""
    return hashlib.blake2b(data, digest_size=32).digest()


class DeviceKey:
    """A device's Ed25519 key pair; the public key is the device id."""

    __slots__ = ("_signing", "public")

    def __init__(self, seed: bytes):
        self._signing = nacl.signing.SigningKey(seed)
        self.public = bytes(self._signing.verify_key)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(os.urandom(32))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing)

    def sign(self, event_id: bytes) -> bytes:
        return sodium.crypto_sign(event_id, self._signing._signing_key)[:SIG_LEN]

    def sign_many(self, event_ids: list[bytes]) -> list[bytes]:
        """Sign many ids, order kept: this thread and the workers take chunks in turn (libsodium drops the GIL).

        The caller signs too and never waits for a worker to wake up (that can take a
        millisecond on a VM), only for chunks a worker has already taken.
        """
        if len(event_ids) < 2 * _CHUNK or _WORKERS == 1:
            return [self.sign(i) for i in event_ids]
        secret = self._signing._signing_key
        chunks = [event_ids[i : i + _CHUNK] for i in range(0, len(event_ids), _CHUNK)]
        parts: list = [None] * len(chunks)
        todo, done = iter(range(len(chunks))), threading.Condition()

        def work() -> None:
            for k in todo:
                try:
                    part = [sodium.crypto_sign(i, secret)[:SIG_LEN] for i in chunks[k]]
                except Exception as exc:  # noqa: BLE001 - handed to the caller below
                    part = exc
                with done:
                    parts[k] = part
                    done.notify()

        for _ in range(_WORKERS - 1):
            _executor().submit(work)
        work()
        with done:
            done.wait_for(lambda: all(part is not None for part in parts))
        for part in parts:
            if isinstance(part, Exception):
                raise part
        return [sig for part in parts for sig in part]

    def open_sealed(self, sealed: bytes) -> bytes:
        """Open a box sealed to this device's key (converted to X25519)."""
        private = nacl.public.PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(self._signing._signing_key))
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


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix="agentlog-crypto")
    return _pool
