"""The pairing exchange (agentlog/sync/pairing.py) and its code (agentlog/pair_code.py), without sockets: frames
handed from one state machine to the other, a wrong code, tampered and replayed frames."""

from __future__ import annotations

import pytest

from agentlog import pair_code
from agentlog.codec.schema import protocol
from agentlog.crypto import DeviceKey
from agentlog.errors import HandshakeError, PeerRefused, UsageError
from agentlog.sync.pairing import FLAG_PAIR, Inviter, Joiner, is_pairing

SECRET = b"acorn-maple-river"
TOKEN = "agentlog-join:token-for-the-joiner"


class Home:
    """The inviter's side of the store: one pending invite, its tries, and the enrolments made."""

    def __init__(self, secret: bytes = SECRET, slot: int = 7, tries: int = 3):
        self.secret, self.slot, self.tries = secret, slot, tries
        self.enrolled: list[tuple[bytes, str]] = []

    def claim(self, slot: int) -> bytes:
        if slot != self.slot:
            raise PeerRefused(f"no pending invite {slot} on this device")
        if self.tries <= 0:
            raise PeerRefused(f"invite {slot} is void: no tries left")
        self.tries -= 1
        return self.secret

    def enrol(self, device: bytes, name: str) -> str:
        self.enrolled.append((device, name))
        return TOKEN

    def inviter(self, key: DeviceKey) -> Inviter:
        return Inviter(key, self.claim, self.enrol, serving=True)


@pytest.fixture
def keys():
    return DeviceKey.generate(), DeviceKey.generate()


def test_a_right_code_enrols_the_joiner_and_hands_it_the_token(keys):
    inviter_key, joiner_key = keys
    home = Home()
    inviter, joiner = home.inviter(inviter_key), Joiner(joiner_key, 7, SECRET, "phone")
    (hello,) = joiner.start()
    assert is_pairing(hello) and hello[0] == FLAG_PAIR
    (reply,) = inviter.receive(hello)
    (join,) = joiner.receive(reply)
    (welcome,) = inviter.receive(join)
    assert joiner.receive(welcome) == []
    assert joiner.done and inviter.done
    assert (joiner.token, joiner.inviter, joiner.serving) == (TOKEN, inviter_key.public, True)
    assert inviter.joined == joiner_key.public and home.enrolled == [(joiner_key.public, "phone")]
    assert SECRET not in hello + reply + join + welcome and TOKEN.encode() not in welcome


def test_a_wrong_code_fails_on_both_sides_and_enrols_nothing(keys):
    home = Home()
    inviter, joiner = home.inviter(keys[0]), Joiner(keys[1], 7, b"acorn-maple-stone")
    (reply,) = inviter.receive(joiner.start()[0])
    with pytest.raises(PeerRefused, match="wrong code") as refused:
        joiner.receive(reply)
    assert joiner.inviter is None and joiner.token is None
    with pytest.raises(PeerRefused, match="wrong code") as told:
        inviter.receive(refused.value.reply)
    assert told.value.by_peer
    assert home.enrolled == [] and home.tries == 2 and not inviter.done


def test_each_exchange_spends_a_try_and_an_unknown_slot_is_refused(keys):
    home = Home(tries=1)
    home.inviter(keys[0]).receive(Joiner(keys[1], 7, b"acorn-maple-stone").start()[0])
    with pytest.raises(PeerRefused, match="no tries left") as refused:
        home.inviter(keys[0]).receive(Joiner(keys[1], 7, SECRET).start()[0])
    assert refused.value.reply is not None
    with pytest.raises(PeerRefused, match="no pending invite 8"):
        home.inviter(keys[0]).receive(Joiner(keys[1], 8, SECRET).start()[0])
    assert home.enrolled == []


def tampered(frame: bytes, struct_type, field: str) -> bytes:
    """The frame with one bit of `field` flipped, its encoding otherwise intact."""
    with struct_type.from_bytes(frame[1:]) as message:
        value = bytes(getattr(message, field))
    assert frame.count(value) == 1
    return frame.replace(value, value[:5] + bytes([value[5] ^ 1]) + value[6:])


@pytest.mark.parametrize(("frame", "field", "reason"), [
    ("reply", "sealed", "does not open"), ("reply", "confirm", "wrong code"),
    ("join", "sealed", "does not open"), ("join", "confirm", "wrong code")])
def test_a_tampered_frame_is_refused_and_enrols_nothing(keys, frame, field, reason):
    home = Home()
    inviter, joiner = home.inviter(keys[0]), Joiner(keys[1], 7, SECRET)
    (reply,) = inviter.receive(joiner.start()[0])
    if frame == "reply":
        with pytest.raises(PeerRefused, match=reason):
            joiner.receive(tampered(reply, protocol.PairReply, field))
        assert joiner.inviter is None and joiner.token is None
    else:
        (join,) = joiner.receive(reply)
        with pytest.raises(PeerRefused, match=reason):
            inviter.receive(tampered(join, protocol.PairJoin, field))
    assert home.enrolled == [] and not inviter.done


def test_a_replayed_frame_fits_no_other_exchange_and_no_later_state(keys):
    home = Home()
    first, joiner = home.inviter(keys[0]), Joiner(keys[1], 7, SECRET)
    (reply,) = first.receive(joiner.start()[0])
    (join,) = joiner.receive(reply)
    first.receive(join)
    with pytest.raises(HandshakeError, match="no pairing frame is expected"):
        first.receive(join)                                   # once more on the same exchange
    second = home.inviter(keys[0])
    with pytest.raises(HandshakeError):
        second.receive(join)                                  # a PairJoin where a PairHello belongs
    third, other = home.inviter(keys[0]), Joiner(DeviceKey.generate(), 7, SECRET)
    third.receive(other.start()[0])
    with pytest.raises(PeerRefused, match="wrong code"):
        third.receive(join)                                   # recorded from the first exchange
    assert home.enrolled == [(keys[1].public, "")]


def test_codes_round_trip_and_typing_mistakes_are_one_line():
    code = pair_code.make(42, bytes([0, 128, 255]))
    assert code == f"42-{pair_code.WORDS[0]}-{pair_code.WORDS[128]}-{pair_code.WORDS[255]}"
    assert pair_code.parse(f"  {code.upper().replace('-', ' ')} ") == (42, code.split("-", 1)[1].encode())
    for bad in ("", "42", "x-acorn-maple-river", "0-acorn-maple-river", "42-acorn-maple", "42-acorn-maple-zzz"):
        with pytest.raises(UsageError, match="not a pairing code"):
            pair_code.parse(bad)
