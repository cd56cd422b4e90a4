"""The connection handshake of docs/protocol.md section 2, sans-IO.

A ClientHandshake and a ServerHandshake take the body of each frame the peer sent
and return the bodies to send back; net.py moves the bytes. When one finishes
(`done`), `peer` is the other side's authenticated device key and `cipher` holds
the connection's two secretstreams.

Invariants:

- Every frame body (its plaintext, once encrypted) is `flags(1) ‖ message`; the
  refusal flag says the message is a Refusal, and the message type is otherwise
  fixed by the frame's place in the handshake.
- Both signatures cover the transcript, which binds the group tag and both fresh
  ephemerals: a relay cannot splice two connections, a recording cannot be replayed.
- The session keys are keyed with the group secret: the group tag, sent in the clear,
  is not enough to complete a handshake.
- The server answers nothing until the client proved its device key, and checks
  the signature before it asks the roster, so an unsigned claim learns nothing.
- Every failure raises HandshakeError (PeerRefused for a refusal either way); when
  the protocol answers it with a Refusal, the error's `reply` is that frame.
  Nothing from nacl or capnp escapes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from agentlog.codec.schema import protocol as _schema
from agentlog.codec.wire import build, reader
from agentlog.crypto import (
    SIG_LEN,
    STREAM_HEADER_LEN,
    STREAM_TAG_LEN,
    STREAM_TAG_MESSAGE,
    DeviceKey,
    StreamPull,
    StreamPush,
    blake2b256,
    kx_keypair,
    kx_session_keys,
    verify,
)
from agentlog.errors import DecodeError, HandshakeError, PeerRefused, ProtocolError, SizeLimitError

MAGIC = "agentlog"
VERSION = 2                        # 2: session keys are bound to the group secret
KEY_LEN = 32
MAX_BODY = 1024
"""A handshake frame's plaintext body is at most 1 KiB."""

HEADER_LEN = STREAM_HEADER_LEN
TAG_LEN = STREAM_TAG_LEN
MAX_FRAME = MAX_BODY + HEADER_LEN + TAG_LEN
"""The largest handshake frame on the wire: an encrypted 1 KiB body with its stream header."""

FLAG_COMPRESSED = 0x01
FLAG_REFUSAL = 0x02
MAX_REASON = 200
"""Refusal reasons are cut to this many characters, sent or received."""

_TAG_DATA = b"agentlog group tag v1"
_TRANSCRIPT = b"agentlog/handshake/1"
_SESSION = b"agentlog/session/1"
_CLIENT_LABEL = b"agentlog/auth/client"
_SERVER_LABEL = b"agentlog/auth/server"

CheckPeer = Callable[[bytes], str | None]
"""Given an authenticated device key: None to accept it, or the reason to refuse it."""


def group_tag(group_key: bytes) -> bytes:
    """BLAKE2b-256 keyed with the group secret: names the group to its members, not to observers."""
    return hashlib.blake2b(_TAG_DATA, key=group_key, digest_size=32).digest()


def session_key(group_key: bytes, kx_key: bytes) -> bytes:
    """A secretstream key from a crypto_kx session key, keyed with the group secret: the group tag travels in
    the clear, so only this binding makes a peer prove that it holds the secret (else nothing decrypts)."""
    return hashlib.blake2b(_SESSION + kx_key, key=group_key, digest_size=32).digest()


def transcript(tag: bytes, client_ephemeral: bytes, server_ephemeral: bytes) -> bytes:
    """The hash both signatures cover: this connection's group and ephemeral keys."""
    return blake2b256(_TRANSCRIPT + tag + client_ephemeral + server_ephemeral)


def roster_check(roster) -> CheckPeer:
    """A check_peer for a roster.Roster: a device must be enrolled and not revoked."""

    def check(device: bytes) -> str | None:
        member = roster.members.get(device)
        if member is None or not member.enrolled:
            return f"device {device.hex()[:16]} is not enrolled in this group"
        if member.until_seq is not None:
            return f"device {device.hex()[:16]} was revoked"
        return None

    return check


class Cipher:
    """A connection's two secretstreams: ours to push with, the peer's to pull from.

    The first ciphertext each way starts with its stream's 24-byte header.
    Decryption failures raise ProtocolError (code "decrypt").
    """

    def __init__(self, tx: bytes, rx: bytes, peer: str = ""):
        self._push = StreamPush(tx)
        self._header: bytes | None = self._push.header
        self._pull: StreamPull | None = None
        self._rx = rx
        self.peer = peer

    def overhead(self) -> int:
        """How many bytes the next encrypt adds to its plaintext."""
        return TAG_LEN + (HEADER_LEN if self._header is not None else 0)

    def encrypt(self, plaintext: bytes) -> bytes:
        ciphertext = self._push.push(plaintext)
        if self._header is not None:
            ciphertext, self._header = self._header + ciphertext, None
        return ciphertext

    def decrypt(self, ciphertext: bytes) -> bytes:
        pull, body = self._pull, ciphertext
        if pull is None:
            if len(ciphertext) < HEADER_LEN + TAG_LEN:
                raise ProtocolError(f"first encrypted frame is {len(ciphertext)} bytes, too short for a stream header",
                                    self.peer, code="decrypt")
            pull, body = StreamPull(ciphertext[:HEADER_LEN], self._rx), ciphertext[HEADER_LEN:]
        try:
            plaintext, tag = pull.pull(body)
        except ValueError:
            raise ProtocolError("frame does not decrypt", self.peer, code="decrypt") from None
        if tag != STREAM_TAG_MESSAGE:
            raise ProtocolError(f"frame has secretstream tag {tag}; only plain messages are used", self.peer,
                                code="decrypt")
        self._pull = pull
        return plaintext


def encode_refusal(reason: str) -> bytes:
    """The body of a Refusal frame, before encryption: the refusal flag, then the message."""
    return bytes([FLAG_REFUSAL]) + build(_schema.Refusal, fill_fields, {"reason": reason[:MAX_REASON]})


def decode_refusal(message: bytes, peer: str = "") -> PeerRefused:
    """The PeerRefused a received Refusal message (without its flags byte) stands for."""
    fields = decode_fields(_schema.Refusal, message, ("reason",), "Refusal", peer)
    reason = "".join(c if c.isprintable() else "?" for c in fields["reason"][:MAX_REASON])
    return PeerRefused(reason or "no reason given", peer, by_peer=True)


class Steps:
    """A sans-IO exchange of frames: `start()` gives the first frames to send, `receive(body)` takes one frame
    and gives the answers; the state names the `_on_<state>` method that takes the next frame. A frame taken
    in no state, or a handler that raises, leaves the exchange failed."""

    _unexpected = "no frame is expected: the handshake is"

    def __init__(self, peer: str = "", state: str = "start"):
        self._label = peer
        self._state = state

    @property
    def done(self) -> bool:
        return self._state == "done"

    def start(self) -> list[bytes]:
        """The frame bodies to send before the peer says anything (the client's first frame)."""
        return []

    def receive(self, body: bytes) -> list[bytes]:
        """Take one frame body from the peer; return the frame bodies to send it.

        Raises:
            HandshakeError: the frame is malformed, out of place or fails a check; PeerRefused when
                either side refuses (send `reply` first when it is set).
        """
        handler = getattr(self, f"_on_{self._state.replace('-', '_')}", None)
        if handler is None:
            raise self._fail(f"{self._unexpected} {self._state}")
        self._state = "failed"
        return handler(body)

    def _fail(self, message: str) -> HandshakeError:
        return HandshakeError(message, self._label)


class _Handshake(Steps):
    """What both sides share: keys, transcript, frame encoding, the failure rules."""

    _role = ""
    _my_label = b""
    _their_label = b""

    def __init__(self, key: DeviceKey, group_key: bytes, check_peer: CheckPeer, *, peer: str = ""):
        super().__init__(peer)
        self._key = key
        self._group_key = group_key
        self._tag = group_tag(group_key)
        self._check_peer = check_peer
        self._ephemeral_public, self._ephemeral_secret = kx_keypair()
        self._transcript = b""
        self.cipher: Cipher | None = None
        self.peer: bytes | None = None

    def _refuse(self, reason: str, encrypted: bool) -> PeerRefused:
        reply = encode_refusal(reason)
        return PeerRefused(reason, self._label, reply=self.cipher.encrypt(reply) if encrypted else reply)

    def _open_clear(self, body: bytes, what: str) -> bytes:
        if len(body) > MAX_BODY:
            raise self._fail(f"{what} frame is {len(body)} bytes, over the handshake limit of {MAX_BODY}")
        return self._unflag(body, what)

    def _open_encrypted(self, body: bytes, what: str) -> bytes:
        if len(body) > MAX_FRAME:
            raise self._fail(f"{what} frame is {len(body)} bytes, over the handshake limit of {MAX_FRAME}")
        try:
            plaintext = self.cipher.decrypt(body)
        except ProtocolError as exc:
            raise self._fail(f"{what} {exc.reason}") from None
        return self._unflag(plaintext, what)

    def _unflag(self, body: bytes, what: str) -> bytes:
        if not body:
            raise self._fail(f"{what} frame is empty")
        flags, message = body[0], body[1:]
        if flags == FLAG_REFUSAL:
            raise decode_refusal(message, self._label)
        if flags != 0:
            raise self._fail(f"{what} frame has flags {flags:#04x}; a handshake frame takes none")
        return message

    def _decode(self, struct_type, message: bytes, names: tuple[str, ...], what: str) -> dict:
        return decode_fields(struct_type, message, names, what, self._label)

    def _start_cipher(self, tx: bytes, rx: bytes, client_ephemeral: bytes, server_ephemeral: bytes) -> None:
        self.cipher = Cipher(session_key(self._group_key, tx), session_key(self._group_key, rx), self._label)
        self._transcript = transcript(self._tag, client_ephemeral, server_ephemeral)

    def _auth(self) -> bytes:
        """Our Auth frame, encrypted: our device key and its signature over the transcript."""
        signature = self._key.sign(blake2b256(self._my_label + self._transcript))
        message = build(_schema.Auth, fill_fields, {"device": self._key.public, "signature": signature})
        return self.cipher.encrypt(b"\x00" + message)

    def _check_auth(self, body: bytes) -> None:
        """Check the peer's Auth frame; on success it becomes `peer`, else the peer is refused."""
        who = "client" if self._role == "server" else "server"
        auth = self._decode(_schema.Auth, self._open_encrypted(body, f"{who} Auth"), ("device", "signature"), "Auth")
        device, signature = auth["device"], auth["signature"]
        if len(device) != KEY_LEN or len(signature) != SIG_LEN:
            raise self._fail(f"{who} Auth has a {len(device)}-byte device and a {len(signature)}-byte signature")
        if not verify(device, blake2b256(self._their_label + self._transcript), signature):
            raise self._refuse("signature does not verify", encrypted=True)
        reason = self._check_peer(device)
        if reason is not None:
            raise self._refuse(reason, encrypted=True)
        self.peer = device


class ClientHandshake(_Handshake):
    """The side that connected: sends ClientHello, then proves itself, then checks the server."""

    _role = "client"
    _my_label = _CLIENT_LABEL
    _their_label = _SERVER_LABEL

    def start(self) -> list[bytes]:
        """The first frame to send: ClientHello, in the clear."""
        if self._state != "start":
            raise self._fail(f"handshake is {self._state}; it has already started")
        self._state = "server-hello"
        hello = build(_schema.ClientHello, fill_fields, {
            "magic": MAGIC, "version": VERSION, "groupTag": self._tag, "ephemeral": self._ephemeral_public})
        return [b"\x00" + hello]

    def _on_server_hello(self, body: bytes) -> list[bytes]:
        hello = self._decode(_schema.ServerHello, self._open_clear(body, "ServerHello"),
                             ("version", "ephemeral"), "ServerHello")
        if hello["version"] != VERSION:
            raise self._fail(f"server speaks protocol version {hello['version']}, this device {VERSION}")
        server_ephemeral = hello["ephemeral"]
        if len(server_ephemeral) != KEY_LEN:
            raise self._fail(f"server ephemeral key is {len(server_ephemeral)} bytes, not {KEY_LEN}")
        try:
            rx, tx = kx_session_keys(self._ephemeral_public, self._ephemeral_secret, server_ephemeral, client=True)
        except ValueError:
            raise self._fail("server ephemeral key is not a usable X25519 key") from None
        self._start_cipher(tx, rx, self._ephemeral_public, server_ephemeral)
        self._state = "server-auth"
        return [self._auth()]

    def _on_server_auth(self, body: bytes) -> list[bytes]:
        self._check_auth(body)
        self._state = "done"
        return []


class ServerHandshake(_Handshake):
    """The side that accepted: checks ClientHello, answers ServerHello, checks the client, proves itself."""

    _role = "server"
    _my_label = _SERVER_LABEL
    _their_label = _CLIENT_LABEL

    def __init__(self, key: DeviceKey, group_key: bytes, check_peer: CheckPeer, *, peer: str = ""):
        super().__init__(key, group_key, check_peer, peer=peer)
        self._state = "client-hello"

    def _on_client_hello(self, body: bytes) -> list[bytes]:
        hello = self._decode(_schema.ClientHello, self._open_clear(body, "ClientHello"),
                             ("magic", "version", "groupTag", "ephemeral"), "ClientHello")
        if hello["magic"] != MAGIC:
            raise self._refuse(f"unknown magic {hello['magic'][:16]!r}; expected {MAGIC!r}", encrypted=False)
        if hello["version"] != VERSION:
            raise self._refuse(f"protocol version {hello['version']} is not supported; this device speaks {VERSION}",
                               encrypted=False)
        if not hmac.compare_digest(hello["groupTag"], self._tag):
            raise self._refuse("wrong group: the group tag is not this device's group", encrypted=False)
        client_ephemeral = hello["ephemeral"]
        if len(client_ephemeral) != KEY_LEN:
            raise self._fail(f"client ephemeral key is {len(client_ephemeral)} bytes, not {KEY_LEN}")
        try:
            rx, tx = kx_session_keys(self._ephemeral_public, self._ephemeral_secret, client_ephemeral, client=False)
        except ValueError:
            raise self._fail("client ephemeral key is not a usable X25519 key") from None
        self._start_cipher(tx, rx, client_ephemeral, self._ephemeral_public)
        self._state = "client-auth"
        reply = build(_schema.ServerHello, fill_fields, {"version": VERSION, "ephemeral": self._ephemeral_public})
        return [b"\x00" + reply]

    def _on_client_auth(self, body: bytes) -> list[bytes]:
        self._check_auth(body)
        self._state = "done"
        return [self._auth()]


def fill_fields(msg, fields: dict) -> None:
    """Set each field of a message being built (a `build` filler)."""
    for name, value in fields.items():
        setattr(msg, name, value)


def decode_fields(struct_type, message: bytes, names: tuple[str, ...], what: str, peer: str,
                  limit: int = MAX_BODY) -> dict:
    """Read `names` from untrusted `message` of at most `limit` bytes; any decoding failure is a HandshakeError."""
    try:
        with reader(struct_type, message, limit, what) as msg:
            return {name: getattr(msg, name) for name in names}
    except (DecodeError, SizeLimitError) as exc:
        raise HandshakeError(str(exc), peer) from None
