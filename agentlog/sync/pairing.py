"""Pairing a new device in one step (docs/pairing.md), sans-IO: the joiner's and the inviter's state machines.

A Joiner and an Inviter take the body of each frame the other sent and return the bodies to send
back; agentlog/sync/pair_net.py moves the bytes. Four frames, each `flags(1) ‖ message`:

1. joiner → inviter `PairHello` (flags FLAG_PAIR, which tells a listener this is no sync ClientHello):
   the invite's public slot and the joiner's SPAKE2 message, the secret words as password.
2. inviter → joiner `PairReply`: its SPAKE2 message, its key confirmation, and sealed under the
   shared key its device key with a signature over the transcript.
3. joiner → inviter `PairJoin`: the joiner's key confirmation and, sealed, its device key, signature
   and the name it asks for.
4. inviter → joiner `PairWelcome`: sealed, the join token of the enrolment it just appended.

Invariants:

- Nothing on the wire lets anyone check a guess of the code offline: SPAKE2 gives one guess per
  exchange, and every exchange spends one of the invite's tries before the inviter answers (`claim`).
- The joiner checks the inviter's confirmation before it reveals anything; a wrong code ends there
  with a Refusal "wrong code", and the inviter enrols nothing.
- Each signature covers the role, the transcript (slot and both SPAKE2 messages) and a binding of
  the shared key: a recorded or relayed message fits no other exchange.
- Each state takes one message once; anything else, and every failure, raises HandshakeError
  (PeerRefused for a refusal either way, its `reply` the frame to send first).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from agentlog.codec.schema import protocol as _schema
from agentlog.codec.wire import build
from agentlog.crypto import (
    SIG_LEN,
    DeviceKey,
    aead_decrypt,
    aead_encrypt,
    blake2b256,
    is_valid_public_key,
    keyed_blake2b,
    verify,
)
from agentlog.errors import AgentlogError, PeerRefused
from agentlog.pake import Pake
from agentlog.sync.handshake import (
    FLAG_REFUSAL,
    KEY_LEN,
    MAGIC,
    Steps,
    decode_fields,
    decode_refusal,
    encode_refusal,
    fill_fields,
)

FLAG_PAIR = 0x04
VERSION = 1
MAX_BODY = 1024
"""A pairing frame's body is at most 1 KiB, but the welcome's, which carries the join token."""
MAX_WELCOME = 96 * 1024
MAX_FRAME = MAX_WELCOME + 64
CONFIRM_LEN = 32
WRONG_CODE = "wrong code"

_TRANSCRIPT = b"agentlog/pairing/1"
_LABELS = {"joiner": b"agentlog/pairing/joiner", "inviter": b"agentlog/pairing/inviter"}

Claim = Callable[[int], bytes]
"""Given a slot: spend one try of its pending invite and return its secret, or raise PeerRefused (no such
invite, expired, used, no tries left)."""
Enrol = Callable[[bytes, str], str]
"""Given the joiner's authenticated device key and the name it asked for: enrol it and return its join
token, or raise an AgentlogError saying why not."""


def is_pairing(first: bytes) -> bool:
    """Whether a connection's first frame body opens a pairing (else it is a sync ClientHello)."""
    return bool(first) and first[0] == FLAG_PAIR


class _Keys:
    """What both sides derive from the SPAKE2 key and the transcript."""

    def __init__(self, key: bytes, slot: int, pake_joiner: bytes, pake_inviter: bytes):
        self.transcript = blake2b256(_TRANSCRIPT + slot.to_bytes(2, "big") + pake_joiner + pake_inviter)
        self.binding = keyed_blake2b(b"binding" + self.transcript, key, 32)
        self._key = key

    def confirm(self, role: str) -> bytes:
        return keyed_blake2b(b"confirm " + _LABELS[role] + self.transcript, self._key, CONFIRM_LEN)

    def box(self, role: str) -> bytes:
        return keyed_blake2b(b"box " + _LABELS[role] + self.transcript, self._key, 32)

    def signed(self, role: str) -> bytes:
        return blake2b256(_LABELS[role] + self.transcript + self.binding)


class _Side(Steps):
    """What both sides share: frame flags, sealing and checking proofs."""

    _unexpected = "no pairing frame is expected: the exchange is"
    _role = ""
    _other = ""

    def __init__(self, key: DeviceKey, *, peer: str = "", state: str = "start"):
        super().__init__(peer, state)
        self._key = key
        self._keys: _Keys | None = None

    def _refuse(self, reason: str) -> PeerRefused:
        return PeerRefused(reason, self._label, reply=encode_refusal(reason))

    def _message(self, body: bytes, flags: int, struct_type, names: tuple[str, ...], what: str,
                 limit: int = MAX_BODY) -> dict:
        if not body:
            raise self._fail(f"{what} frame is empty")
        if len(body) > limit + 1:
            raise self._fail(f"{what} frame is {len(body)} bytes, over the pairing limit of {limit + 1}")
        if body[0] == FLAG_REFUSAL:
            raise decode_refusal(body[1:], self._label)
        if body[0] != flags:
            raise self._fail(f"{what} frame has flags {body[0]:#04x}, not {flags:#04x}")
        return decode_fields(struct_type, body[1:], names, what, self._label, limit)

    def _seal(self, **fields) -> bytes:
        plain = build(_schema.PairProof, fill_fields, fields)
        return aead_encrypt(self._keys.box(self._role), plain, _LABELS[self._role] + self._keys.transcript)

    def _proof(self, **fields) -> bytes:
        """Our device key and its signature over this exchange, sealed, with `fields`."""
        return self._seal(device=self._key.public, signature=self._key.sign(self._keys.signed(self._role)), **fields)

    def _open(self, sealed: bytes, what: str, limit: int = MAX_BODY) -> dict:
        plain = aead_decrypt(self._keys.box(self._other), sealed, _LABELS[self._other] + self._keys.transcript)
        if plain is None:
            raise self._refuse(f"{what} does not open with the exchange's key (altered, or from another exchange)")
        return decode_fields(_schema.PairProof, plain, ("device", "signature", "name", "token", "serving"), what,
                             self._label, limit)

    def _check_proof(self, proof: dict, what: str) -> bytes:
        """The other side's device key, once its signature over this exchange verifies."""
        device, signature = proof["device"], proof["signature"]
        if len(device) != KEY_LEN or len(signature) != SIG_LEN or not is_valid_public_key(device):
            raise self._refuse(f"{what} holds no valid device key and signature")
        if not verify(device, self._keys.signed(self._other), signature):
            raise self._refuse(f"{what}: the device key's signature over this exchange does not verify")
        return device

    def _confirmed(self, confirm: bytes, role: str) -> bool:
        return hmac.compare_digest(confirm, self._keys.confirm(role))


class Joiner(_Side):
    """The new device: knows the code; ends with the inviter's device key (`inviter`) and a join token (`token`)."""

    _role, _other = "joiner", "inviter"

    def __init__(self, key: DeviceKey, slot: int, secret: bytes, name: str = "", *, peer: str = ""):
        super().__init__(key, peer=peer)
        self.slot, self._name = slot, name
        self._pake = Pake(secret, slot.to_bytes(2, "big"), joiner=True)
        self.inviter: bytes | None = None
        self.token: str | None = None
        self.serving = False

    def start(self) -> list[bytes]:
        """The first frame: PairHello, in the clear."""
        if self._state != "start":
            raise self._fail(f"pairing is {self._state}; it has already started")
        self._state = "reply"
        hello = build(_schema.PairHello, fill_fields,
                      {"magic": MAGIC, "version": VERSION, "slot": self.slot, "pake": self._pake.message})
        return [bytes([FLAG_PAIR]) + hello]

    def _on_reply(self, body: bytes) -> list[bytes]:
        reply = self._message(body, 0, _schema.PairReply, ("pake", "confirm", "sealed"), "PairReply")
        try:
            key = self._pake.finish(reply["pake"])
        except ValueError as exc:
            raise self._fail(f"inviter's {exc}") from None
        self._keys = _Keys(key, self.slot, self._pake.message, reply["pake"])
        if not self._confirmed(reply["confirm"], "inviter"):
            raise PeerRefused(f"{WRONG_CODE}: the inviter's key confirmation does not match this code (mistyped, "
                              "or another invite's)", self._label, reply=encode_refusal(WRONG_CODE))
        self.inviter = self._check_proof(self._open(reply["sealed"], "the inviter's proof"), "the inviter's proof")
        self._state = "welcome"
        join = build(_schema.PairJoin, fill_fields,
                     {"confirm": self._keys.confirm("joiner"), "sealed": self._proof(name=self._name)})
        return [b"\x00" + join]

    def _on_welcome(self, body: bytes) -> list[bytes]:
        welcome = self._message(body, 0, _schema.PairWelcome, ("sealed",), "PairWelcome", MAX_WELCOME)
        welcome = self._open(welcome["sealed"], "the welcome", MAX_WELCOME)
        if not welcome["token"]:
            raise self._fail("the welcome holds no join token")
        self.token, self.serving = welcome["token"], welcome["serving"]
        self._state = "done"
        return []


class Inviter(_Side):
    """The enrolled device: `claim` spends a try of the invite the slot names and gives its secret; `enrol`
    enrols the joiner once it proved the code and its key; `serving` tells the joiner a running `serve` answers
    here. Ends with `joined` (the new device) and `slot`."""

    _role, _other = "inviter", "joiner"

    def __init__(self, key: DeviceKey, claim: Claim, enrol: Enrol, *, serving: bool = False, peer: str = ""):
        super().__init__(key, peer=peer, state="hello")
        self._claim, self._enrol, self._serving = claim, enrol, serving
        self.slot: int | None = None
        self.joined: bytes | None = None

    def _on_hello(self, body: bytes) -> list[bytes]:
        hello = self._message(body, FLAG_PAIR, _schema.PairHello, ("magic", "version", "slot", "pake"), "PairHello")
        if hello["magic"] != MAGIC:
            raise self._refuse(f"unknown magic {hello['magic'][:16]!r}; expected {MAGIC!r}")
        if hello["version"] != VERSION:
            raise self._refuse(f"pairing version {hello['version']} is not supported; this device speaks {VERSION}")
        self.slot = hello["slot"]
        try:
            secret = self._claim(self.slot)
        except PeerRefused as exc:
            raise self._refuse(exc.reason) from None
        pake = Pake(secret, self.slot.to_bytes(2, "big"), joiner=False)
        try:
            key = pake.finish(hello["pake"])
        except ValueError as exc:
            raise self._fail(f"joiner's {exc}") from None
        self._keys = _Keys(key, self.slot, hello["pake"], pake.message)
        self._state = "join"
        reply = build(_schema.PairReply, fill_fields,
                      {"pake": pake.message, "confirm": self._keys.confirm("inviter"), "sealed": self._proof()})
        return [b"\x00" + reply]

    def _on_join(self, body: bytes) -> list[bytes]:
        join = self._message(body, 0, _schema.PairJoin, ("confirm", "sealed"), "PairJoin")
        if not self._confirmed(join["confirm"], "joiner"):
            raise self._refuse(f"{WRONG_CODE}: the joiner's key confirmation does not match")
        proof = self._open(join["sealed"], "the joiner's proof")
        device = self._check_proof(proof, "the joiner's proof")
        try:
            token = self._enrol(device, proof["name"])
        except AgentlogError as exc:
            raise self._refuse(str(exc)) from None
        self.joined = device
        self._state = "done"
        welcome = build(_schema.PairWelcome, fill_fields, {"sealed": self._seal(token=token, serving=self._serving)})
        return [b"\x00" + welcome]
