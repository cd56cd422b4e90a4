"""The sans-IO handshake (docs/protocol.md section 2), driven with bytes: no sockets."""

from __future__ import annotations

import os

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.codec.schema import protocol as schema
from agentlog.codec.wire import build
from agentlog.crypto import DeviceKey
from agentlog.errors import HandshakeError, PeerRefused, ProtocolError
from agentlog.log.roster import Member, Position, Roster
from agentlog.sync import handshake as hs

GROUP = bytes(range(32))
OTHER_GROUP = bytes(range(1, 33))


def allow(*keys: DeviceKey):
    allowed = {k.public for k in keys}
    return lambda device: None if device in allowed else f"device {device.hex()[:16]} is not enrolled in this group"


def encode(struct_type, **fields) -> bytes:
    def fill(msg, values):
        for name, value in values.items():
            setattr(msg, name, value)
    return build(struct_type, fill, fields)


def client_hello(magic="agentlog", version=hs.VERSION, tag=None, ephemeral=None) -> bytes:
    return b"\x00" + encode(schema.ClientHello, magic=magic, version=version, groupTag=tag or hs.group_tag(GROUP),
                            ephemeral=ephemeral if ephemeral is not None else sodium.crypto_kx_keypair()[0])


def ephemeral_of(struct_type, body: bytes) -> bytes:
    with struct_type.from_bytes(body[1:]) as msg:
        return msg.ephemeral


class Link:
    """Two handshakes joined by a lossless link; each side's frames go to the other in order."""

    def __init__(self, client: hs.ClientHandshake, server: hs.ServerHandshake):
        self.sides = {"client": client, "server": server}
        self.errors: dict[str, HandshakeError | None] = {"client": None, "server": None}
        self.late: dict[str, list[bytes]] = {"client": [], "server": []}
        self.sent: dict[str, list[bytes]] = {"client": [], "server": []}

    def run(self) -> Link:
        queue = [("server", body) for body in self.sides["client"].start()]
        self.sent["client"] += [body for _, body in queue]
        while queue:
            to, body = queue.pop(0)
            side, other = self.sides[to], "client" if to == "server" else "server"
            if self.errors[to] is not None:
                continue
            if side.done:
                self.late[to].append(body)
                continue
            try:
                out = side.receive(body)
            except HandshakeError as exc:
                self.errors[to] = exc
                out = [exc.reply] if exc.reply is not None else []
            self.sent[to] += out
            queue += [(other, reply) for reply in out]
        return self


def link(client_key=None, server_key=None, *, client_group=GROUP, server_group=GROUP, client_allows=None,
         server_allows=None) -> Link:
    client_key = client_key or DeviceKey.generate()
    server_key = server_key or DeviceKey.generate()
    client = hs.ClientHandshake(client_key, client_group, client_allows or allow(server_key), peer="server:1")
    server = hs.ServerHandshake(server_key, server_group, server_allows or allow(client_key), peer="client:2")
    return Link(client, server)


def test_handshake_authenticates_both_sides():
    a, b = DeviceKey.generate(), DeviceKey.generate()
    done = link(a, b).run()
    client, server = done.sides["client"], done.sides["server"]
    assert done.errors == {"client": None, "server": None}
    assert client.done and server.done
    assert client.peer == b.public and server.peer == a.public
    assert len(done.sent["client"]) == 2 and len(done.sent["server"]) == 2
    assert all(len(f) <= hs.MAX_FRAME for f in done.sent["client"] + done.sent["server"])


def test_ciphers_interoperate_both_ways_in_order():
    done = link().run()
    client, server = done.sides["client"].cipher, done.sides["server"].cipher
    for i in range(200):
        up, down = f"up {i}".encode() * (i % 7 + 1), f"down {i}".encode()
        assert server.decrypt(client.encrypt(up)) == up
        assert client.decrypt(server.encrypt(down)) == down


def test_ciphers_refuse_reordered_and_tampered_frames():
    done = link().run()
    client, server = done.sides["client"].cipher, done.sides["server"].cipher
    first, second = client.encrypt(b"one"), client.encrypt(b"two")
    with pytest.raises(ProtocolError, match="does not decrypt"):
        server.decrypt(second)
    assert server.decrypt(first) == b"one"
    with pytest.raises(ProtocolError, match="does not decrypt"):
        server.decrypt(second[:-1] + bytes([second[-1] ^ 1]))


def test_wrong_group_is_refused_with_the_reason():
    done = link(client_group=OTHER_GROUP).run()
    server_error, client_error = done.errors["server"], done.errors["client"]
    assert isinstance(server_error, PeerRefused) and not server_error.by_peer
    assert isinstance(client_error, PeerRefused) and client_error.by_peer
    assert "wrong group" in client_error.reason
    assert str(client_error).startswith("server:1: the peer refused us: wrong group")
    assert not done.sides["client"].done and not done.sides["server"].done


@pytest.mark.parametrize("hello, reason", [
    (client_hello(magic="agentlox"), "unknown magic 'agentlox'"),
    (client_hello(version=3), "protocol version 3 is not supported"),
    (client_hello(tag=hs.group_tag(OTHER_GROUP)), "wrong group"),
])
def test_server_refuses_a_bad_client_hello_in_the_clear(hello, reason):
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    with pytest.raises(PeerRefused, match=reason) as caught:
        server.receive(hello)
    assert caught.value.reply[0] == hs.FLAG_REFUSAL
    refusal = hs.decode_refusal(caught.value.reply[1:])
    assert reason in refusal.reason and refusal.by_peer


def test_client_refuses_a_server_speaking_another_version():
    client = hs.ClientHandshake(DeviceKey.generate(), GROUP, allow())
    client.start()
    hello = b"\x00" + encode(schema.ServerHello, version=3, ephemeral=sodium.crypto_kx_keypair()[0])
    with pytest.raises(HandshakeError, match="server speaks protocol version 3"):
        client.receive(hello)


def test_unenrolled_client_is_refused_and_told_why():
    done = link(server_allows=allow()).run()
    server_error, client_error = done.errors["server"], done.errors["client"]
    assert isinstance(server_error, PeerRefused) and "is not enrolled in this group" in server_error.reason
    assert isinstance(client_error, PeerRefused) and client_error.by_peer
    assert client_error.reason == server_error.reason
    assert hs.encode_refusal(server_error.reason) not in server_error.reply


def test_client_refuses_an_unenrolled_server():
    done = link(client_allows=allow()).run()
    client_error = done.errors["client"]
    assert isinstance(client_error, PeerRefused) and not client_error.by_peer
    assert "is not enrolled" in client_error.reason
    server = done.sides["server"]
    assert server.done and done.errors["server"] is None
    [late] = done.late["server"]
    plaintext = server.cipher.decrypt(late)
    assert plaintext[0] == hs.FLAG_REFUSAL
    assert hs.decode_refusal(plaintext[1:]).reason == client_error.reason


class ForgedKey:
    """Claims one device's key but signs with another."""

    def __init__(self, claimed: DeviceKey, signer: DeviceKey):
        self.public, self._signer = claimed.public, signer

    def sign(self, digest: bytes) -> bytes:
        return self._signer.sign(digest)


def test_auth_signed_by_another_key_is_refused():
    victim = DeviceKey.generate()
    server_key = DeviceKey.generate()
    client = hs.ClientHandshake(ForgedKey(victim, DeviceKey.generate()), GROUP, allow(server_key))
    server = hs.ServerHandshake(server_key, GROUP, allow(victim))
    done = Link(client, server).run()
    assert isinstance(done.errors["server"], PeerRefused)
    assert done.errors["server"].reason == "signature does not verify"
    assert done.errors["client"].reason == "signature does not verify" and done.errors["client"].by_peer


def test_tampered_auth_frame_does_not_decrypt():
    client = hs.ClientHandshake(DeviceKey.generate(), GROUP, allow())
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow(client._key))
    [hello] = server.receive(client.start()[0])
    [auth] = client.receive(hello)
    tampered = auth[:-5] + bytes([auth[-5] ^ 0x40]) + auth[-4:]
    with pytest.raises(HandshakeError, match="client Auth frame does not decrypt") as caught:
        server.receive(tampered)
    assert caught.value.reply is None and not server.done


def test_spliced_connection_fails_the_signature_check():
    """A relay that knows the group secret runs its own key exchange with each side and forwards the Auth."""
    client_key, server_key = DeviceKey.generate(), DeviceKey.generate()
    client = hs.ClientHandshake(client_key, GROUP, allow(server_key))
    server = hs.ServerHandshake(server_key, GROUP, allow(client_key))

    relay_pub, relay_sec = sodium.crypto_kx_keypair()
    [hello_from_client] = client.start()
    [server_hello] = server.receive(client_hello(ephemeral=relay_pub))
    rx, tx = sodium.crypto_kx_client_session_keys(relay_pub, relay_sec, ephemeral_of(schema.ServerHello, server_hello))
    to_server = hs.Cipher(hs.session_key(GROUP, tx), hs.session_key(GROUP, rx))
    client_ephemeral = ephemeral_of(schema.ClientHello, hello_from_client)
    rx, tx = sodium.crypto_kx_server_session_keys(relay_pub, relay_sec, client_ephemeral)
    to_client = hs.Cipher(hs.session_key(GROUP, tx), hs.session_key(GROUP, rx))
    [client_auth] = client.receive(b"\x00" + encode(schema.ServerHello, version=hs.VERSION, ephemeral=relay_pub))

    forwarded = to_server.encrypt(to_client.decrypt(client_auth))
    with pytest.raises(PeerRefused, match="signature does not verify"):
        server.receive(forwarded)


def test_the_group_tag_alone_does_not_pass_the_handshake():
    """The tag travels in the clear: a device that replays it without the group secret is not accepted,
    even by a server that would accept its key (a device whose roster is incomplete accepts unknown ones)."""
    impostor_key = DeviceKey.generate()
    impostor = hs.ClientHandshake(impostor_key, OTHER_GROUP, allow())
    impostor._tag = hs.group_tag(GROUP)                      # seen in someone else's ClientHello
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow(impostor_key))
    [hello] = server.receive(impostor.start()[0])
    [auth] = impostor.receive(hello)
    with pytest.raises(HandshakeError, match="client Auth frame does not decrypt"):
        server.receive(auth)
    assert not server.done and server.peer is None


def test_substituted_ephemeral_without_the_keys_does_not_decrypt():
    client = hs.ClientHandshake(DeviceKey.generate(), GROUP, allow())
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow(client._key))
    client.start()
    [server_hello] = server.receive(client_hello())
    [auth] = client.receive(server_hello)
    with pytest.raises(HandshakeError, match="does not decrypt"):
        server.receive(auth)


def test_replayed_client_hello_cannot_complete():
    done = link().run()
    recorded_hello, recorded_auth = done.sent["client"]
    server_key = done.sides["server"]._key
    replay = hs.ServerHandshake(server_key, GROUP, allow(DeviceKey.generate()))
    [fresh_hello] = replay.receive(recorded_hello)
    assert fresh_hello != done.sent["server"][0]
    with pytest.raises(HandshakeError, match="does not decrypt"):
        replay.receive(recorded_auth)
    assert not replay.done and replay.peer is None


@pytest.mark.parametrize("body", [
    b"", b"\x00", b"\x00" + bytes(8), b"\x00" + bytes(16), b"\x01" + client_hello()[1:], b"\x80garbage",
    b"\x00" + os.urandom(64), b"\x02" + os.urandom(40), client_hello()[:-8], client_hello() + bytes(8),
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
], ids=["empty", "tag-only", "zeros-8", "zeros-16", "wrong-tag", "unknown-tag", "random-64", "random-tag-2",
        "truncated", "trailing-zeros", "zeros-then-ff"])
def test_garbage_client_hello_raises_handshake_error(body):
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    with pytest.raises(HandshakeError):
        server.receive(body)
    with pytest.raises(HandshakeError, match="no frame is expected"):
        server.receive(client_hello())


def test_oversized_frames_are_refused():
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    with pytest.raises(HandshakeError, match="over the handshake limit of 1024"):
        server.receive(b"\x00" + bytes(1024))
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    server.receive(client_hello())
    with pytest.raises(HandshakeError, match=f"over the handshake limit of {hs.MAX_FRAME}"):
        server.receive(bytes(hs.MAX_FRAME + 1))


def test_low_order_ephemeral_is_refused():
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    with pytest.raises(HandshakeError, match="not a usable X25519 key"):
        server.receive(client_hello(ephemeral=bytes(32)))
    with pytest.raises(HandshakeError, match="16 bytes, not 32"):
        hs.ServerHandshake(DeviceKey.generate(), GROUP, allow()).receive(client_hello(ephemeral=bytes(16)))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x00", b"\x02"]))
def test_no_bytes_escape_as_anything_but_handshake_error(data, prefix):
    server = hs.ServerHandshake(DeviceKey.generate(), GROUP, allow())
    client = hs.ClientHandshake(DeviceKey.generate(), GROUP, allow())
    client.start()
    for side in (server, client):
        try:
            side.receive(prefix + data)
        except HandshakeError:
            pass


def test_refusal_reasons_are_cut_and_printable():
    refusal = hs.decode_refusal(hs.encode_refusal("bad\x1b[31m " + "x" * 500)[1:])
    assert refusal.reason.startswith("bad?[31m x") and len(refusal.reason) == hs.MAX_REASON
    assert hs.decode_refusal(hs.encode_refusal("")[1:]).reason == "no reason given"


def test_start_and_receive_out_of_turn():
    done = link().run()
    client = done.sides["client"]
    with pytest.raises(HandshakeError, match="already started"):
        client.start()
    with pytest.raises(HandshakeError, match="no frame is expected: the handshake is done"):
        client.receive(b"\x00")


def test_group_tag_is_keyed_by_the_group_secret():
    assert len(hs.group_tag(GROUP)) == 32
    assert hs.group_tag(GROUP) != hs.group_tag(OTHER_GROUP)
    assert hs.group_tag(GROUP) == hs.group_tag(bytes(GROUP))


def _member(device: bytes, until_seq=None) -> Member:
    at = Position(b"f" * 32, 0, 1, b"i" * 32)
    return Member(device, [(at, "laptop")], until_seq, [at] if until_seq is not None else [])


def test_roster_check_accepts_active_members_only():
    active, revoked, stranger = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    roster = Roster(active.public)
    roster.members = {active.public: _member(active.public), revoked.public: _member(revoked.public, until_seq=4)}
    check = hs.roster_check(roster)
    assert check(active.public) is None
    assert check(revoked.public) == f"device {revoked.public.hex()[:16]} was revoked"
    assert check(stranger.public) == f"device {stranger.public.hex()[:16]} is not enrolled in this group"
