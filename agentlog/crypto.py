"""Hashing, signing, sealing and the connection cipher's primitives: the only module that touches nacl.

Ed25519 signs the 32-byte event id; BLAKE2b-256 gives ids and payload hashes; X25519
key exchange and XChaCha20-Poly1305 secretstreams carry the sync handshake and its frames.
A sealed scope's content keys travel in sealed boxes (crypto_box_seal to the X25519 form of
a device's Ed25519 key) and seal payloads with XChaCha20-Poly1305-IETF.
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
STREAM_HEADER_LEN = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
STREAM_TAG_LEN = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
STREAM_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
CONTENT_KEY_LEN = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_LEN = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
AEAD_TAG_LEN = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
BOX_LEN = CONTENT_KEY_LEN + sodium.crypto_box_SEALBYTES          # a content key sealed to a device: 80 bytes


def blake2b256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest: event ids, payload hashes, view digests."""
    return hashlib.blake2b(data, digest_size=32).digest()


def keyed_blake2b(data: bytes, key: bytes, size: int) -> bytes:
    """BLAKE2b keyed with `key` (at most 64 bytes), `size` bytes long: the relay's tags, pseudonyms and
    message ids, which a holder of the outputs cannot invert or link without the key."""
    return hashlib.blake2b(data, digest_size=size, key=key).digest()


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

    def open_box(self, box: bytes) -> bytes | None:
        """A content key sealed to this device (crypto_box_seal_open with the X25519 form of its key pair),
        or None when the box was not sealed to it or is damaged."""
        if len(box) != BOX_LEN:
            return None
        secret = sodium.crypto_sign_ed25519_sk_to_curve25519(self._secret)
        public = sodium.crypto_sign_ed25519_pk_to_curve25519(self.public)
        try:
            return sodium.crypto_box_seal_open(box, public, secret)
        except nacl.exceptions.CryptoError:
            return None


def content_key() -> bytes:
    """A fresh random content key for a scope's key epoch."""
    return os.urandom(CONTENT_KEY_LEN)


def seal_box(device: bytes, key: bytes) -> bytes:
    """`key` sealed so that only `device` (an Ed25519 public key) opens it: crypto_box_seal to its X25519 form.

    Raises:
        ValueError: `device` is not a usable Ed25519 public key.
    """
    try:
        return sodium.crypto_box_seal(key, sodium.crypto_sign_ed25519_pk_to_curve25519(device))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, TypeError) as exc:
        raise ValueError("not a usable device key to seal to") from exc


def aead_encrypt(key: bytes, plain: bytes, ad: bytes) -> bytes:
    """A random 24-byte nonce followed by the XChaCha20-Poly1305-IETF ciphertext of `plain` under `key`, `ad`."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def aead_decrypt(key: bytes, sealed: bytes, ad: bytes) -> bytes | None:
    """The plaintext of nonce ‖ ciphertext made by `aead_encrypt`, or None when it does not open with `key`, `ad`."""
    if len(sealed) < NONCE_LEN + AEAD_TAG_LEN or len(key) != CONTENT_KEY_LEN:
        return None
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed[NONCE_LEN:], ad, sealed[:NONCE_LEN], key)
    except nacl.exceptions.CryptoError:
        return None


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



def kx_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair for one key exchange: (public, secret)."""
    return sodium.crypto_kx_keypair()


def kx_session_keys(public: bytes, secret: bytes, peer_public: bytes, *, client: bool) -> tuple[bytes, bytes]:
    """The (rx, tx) session keys of crypto_kx, on the client's or the server's side.

    Raises:
        ValueError: the peer's public key is not a usable X25519 key.
    """
    derive = sodium.crypto_kx_client_session_keys if client else sodium.crypto_kx_server_session_keys
    try:
        return derive(public, secret, peer_public)
    except nacl.exceptions.CryptoError:
        raise ValueError("not a usable X25519 public key") from None


class StreamPush:
    """The sending half of a secretstream: `header` goes to the receiver before the first ciphertext."""

    __slots__ = ("_state", "header")

    def __init__(self, key: bytes):
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key)

    def push(self, plaintext: bytes) -> bytes:
        """The next message's ciphertext (tag MESSAGE), STREAM_TAG_LEN bytes longer than its plaintext."""
        return sodium.crypto_secretstream_xchacha20poly1305_push(self._state, plaintext, None, STREAM_TAG_MESSAGE)


class StreamPull:
    """The receiving half of a secretstream, started from the sender's header."""

    __slots__ = ("_state",)

    def __init__(self, header: bytes, key: bytes):
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)

    def pull(self, ciphertext: bytes) -> tuple[bytes, int]:
        """The next message's plaintext and its tag.

        Raises:
            ValueError: it does not decrypt (another key, altered, reordered, or not bytes).
        """
        try:
            return sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, ciphertext, None)
        except nacl.exceptions.CryptoError:
            raise ValueError("ciphertext does not decrypt") from None
