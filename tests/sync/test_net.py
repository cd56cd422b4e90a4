"""Framing, encryption and the trio edge: memory streams for the units, 127.0.0.1 for the rest."""

from __future__ import annotations

import os
import socket
import struct
import zlib
from functools import partial

import pytest
import trio
import trio.testing

from agentlog.crypto import DeviceKey
from agentlog.errors import (
    ConnectionLost,
    HandshakeError,
    InvalidValueError,
    PeerClosed,
    PeerRefused,
    ProtocolError,
    Unreachable,
)
from agentlog.sync import handshake as hs
from agentlog.sync import net

GROUP = bytes(range(32))
CLIENT, SERVER = DeviceKey.generate(), DeviceKey.generate()


def allow(*keys: DeviceKey):
    allowed = {k.public for k in keys}
    return lambda device: None if device in allowed else f"device {device.hex()[:16]} is not enrolled in this group"


async def channel_pair() -> tuple[net.Channel, net.Channel]:
    """A client and a server channel joined by in-memory streams."""
    left, right = trio.testing.memory_stream_pair()
    result = {}

    async def accept():
        result["server"] = await net.accept_channel(right, SERVER, GROUP, allow(CLIENT), remote="client")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        result["client"] = await net.connect_channel(left, CLIENT, GROUP, allow(SERVER), remote="server")
    return result["client"], result["server"]


async def raw_handshake(stream: trio.abc.Stream) -> hs.Cipher:
    """A client that completes the handshake by hand and then writes whatever frames a test wants."""
    handshake = hs.ClientHandshake(CLIENT, GROUP, allow(SERVER))
    for body in handshake.start():
        await stream.send_all(frame(body))
    while not handshake.done:
        (length,) = struct.unpack(">I", await read_exactly(stream, 4))
        for body in handshake.receive(await read_exactly(stream, length)):
            await stream.send_all(frame(body))
    return handshake.cipher


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


async def read_exactly(stream: trio.abc.Stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        assert chunk, "unexpected EOF"
        data += chunk
    return data


async def raw_pair() -> tuple[trio.abc.Stream, hs.Cipher, net.Channel]:
    """A hand-driven client stream, its cipher, and the server's channel."""
    left, right = trio.testing.memory_stream_pair()
    result = {}

    async def accept():
        result["server"] = await net.accept_channel(right, SERVER, GROUP, allow(CLIENT), remote="client")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        cipher = await raw_handshake(left)
    return left, cipher, result["server"]


class EchoServer:
    """A listener on 127.0.0.1 that accepts channels and echoes every message back."""

    def __init__(self, allowed=(CLIENT,)):
        self.allowed = allowed
        self.errors: list[Exception] = []
        self.channels: list[net.Channel] = []

    async def handle(self, stream):
        try:
            channel = await net.accept_channel(stream, SERVER, GROUP, allow(*self.allowed))
            self.channels.append(channel)
            while True:
                await channel.send(await channel.receive())
        except (PeerClosed, HandshakeError, ConnectionLost, ProtocolError) as exc:
            self.errors.append(exc)

    async def start(self, nursery) -> int:
        listeners = await nursery.start(partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        return listeners[0].socket.getsockname()[1]


async def test_small_and_large_messages_round_trip_over_tcp():
    server = EchoServer()
    async with trio.open_nursery() as nursery:
        port = await server.start(nursery)
        channel = await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=5)
        assert channel.peer == SERVER.public and channel.remote == f"127.0.0.1:{port}"
        text = b"".join(b"event %d says hello to device %d\n" % (i, i % 7) for i in range(100_000))
        noise = os.urandom(3 * 1024 * 1024)
        for message in (b"", b"hi", bytes(1023), text, noise):
            before = channel.received_bytes
            await channel.send(message)
            assert await channel.receive() == message
            if message is text:
                assert 3 * 1024 * 1024 <= len(text) and channel.received_bytes - before < len(text) // 4
        await channel.aclose()
        with trio.fail_after(2):
            while not server.errors:
                await trio.sleep(0.01)
        assert isinstance(server.errors[0], PeerClosed) and server.errors[0].reason == "connection closed"
        nursery.cancel_scope.cancel()


async def test_tcp_nodelay_is_on():
    server = EchoServer()
    async with trio.open_nursery() as nursery:
        port = await server.start(nursery)
        channel = await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=5)
        assert channel._frames.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_byte_counters_count_wire_bytes():
    client, server = await channel_pair()
    assert client.sent_bytes == server.received_bytes > 0
    assert server.sent_bytes == client.received_bytes > 0
    sent, received = client.sent_bytes, server.received_bytes
    await client.send(b"x" * 100)
    assert await server.receive() == b"x" * 100
    wire = 4 + 1 + 100 + hs.TAG_LEN
    assert client.sent_bytes - sent == wire and server.received_bytes - received == wire


async def test_unenrolled_client_is_refused_over_tcp():
    server = EchoServer(allowed=())
    async with trio.open_nursery() as nursery:
        port = await server.start(nursery)
        with pytest.raises(PeerRefused) as caught:
            await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=5)
        assert caught.value.by_peer and caught.value.peer == f"127.0.0.1:{port}"
        assert "is not enrolled in this group" in str(caught.value)
        with trio.fail_after(2):
            while not server.errors:
                await trio.sleep(0.01)
        assert isinstance(server.errors[0], PeerRefused) and not server.errors[0].by_peer
        assert server.errors[0].peer.startswith("127.0.0.1:")
        nursery.cancel_scope.cancel()


async def test_wrong_group_is_refused_over_tcp():
    async with trio.open_nursery() as nursery:
        port = await EchoServer().start(nursery)
        with pytest.raises(PeerRefused, match="wrong group"):
            await net.open_channel("127.0.0.1", port, CLIENT, bytes(32), allow(SERVER), timeout=5)
        nursery.cancel_scope.cancel()


async def test_server_learns_when_the_client_refuses_it_after_its_handshake_ended():
    left, right = trio.testing.memory_stream_pair()
    result = {}

    async def accept():
        result["server"] = await net.accept_channel(right, SERVER, GROUP, allow(CLIENT), remote="client")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        with pytest.raises(PeerRefused, match="refused: device .* is not enrolled"):
            await net.connect_channel(left, CLIENT, GROUP, allow(), remote="server")
    with pytest.raises(PeerRefused, match="client: the peer refused us: device .* is not enrolled"):
        await result["server"].receive()


async def test_handshake_times_out_against_a_silent_listener():
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    start = trio.current_time()
    with pytest.raises(HandshakeError, match=f"^127.0.0.1:{port}: handshake timed out after 0.5 s$"):
        await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=0.5)
    assert 0.4 < trio.current_time() - start < 2
    listener.close()


async def test_server_handshake_times_out_against_a_silent_client(autojump_clock):
    left, right = trio.testing.memory_stream_pair()
    with pytest.raises(HandshakeError, match="^client: handshake timed out after 10 s$"):
        await net.accept_channel(right, SERVER, GROUP, allow(CLIENT), remote="client")
    with pytest.raises(trio.BrokenResourceError):
        await left.send_all(b"anyone there?")


async def test_connecting_to_a_closed_port_is_unreachable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(Unreachable, match=f"^127.0.0.1:{port}: cannot connect: connection refused$") as refused:
        await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=5)
    assert refused.value.refused


async def test_oversized_handshake_frame_is_refused_before_its_body():
    async with trio.open_nursery() as nursery:
        server = EchoServer()
        port = await server.start(nursery)
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        await raw.send_all(struct.pack(">I", hs.MAX_FRAME + 1))
        with trio.fail_after(2):
            while not server.errors:
                await trio.sleep(0.01)
        assert isinstance(server.errors[0], HandshakeError)
        assert f"frame length {hs.MAX_FRAME + 1} is outside 1..{hs.MAX_FRAME} during the handshake" in str(
            server.errors[0])
        await raw.aclose()
        nursery.cancel_scope.cancel()


async def test_frame_over_max_frame_is_refused_before_its_body_over_tcp():
    async with trio.open_nursery() as nursery:
        result = {}

        async def handle(stream):
            channel = await net.accept_channel(stream, SERVER, GROUP, allow(CLIENT))
            try:
                await channel.receive()
            except ProtocolError as exc:
                result["error"] = exc

        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        raw = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        await raw_handshake(raw)
        await raw.send_all(struct.pack(">I", net.MAX_FRAME + 1))
        with trio.fail_after(2):
            while "error" not in result:
                await trio.sleep(0.01)
        assert result["error"].code == "too-large"
        assert f"frame length {net.MAX_FRAME + 1} is outside 1..{net.MAX_FRAME}" in str(result["error"])
        await raw.aclose()
        nursery.cancel_scope.cancel()


async def test_zero_length_frame_is_refused():
    raw, cipher, server = await raw_pair()
    await raw.send_all(struct.pack(">I", 0))
    with pytest.raises(ProtocolError, match="frame length 0 is outside"):
        await server.receive()


async def test_decompression_bomb_is_refused():
    raw, cipher, server = await raw_pair()
    bomb = zlib.compress(bytes(net.MAX_MESSAGE + 1024), 9)
    assert len(bomb) < 64 * 1024
    await raw.send_all(frame(cipher.encrypt(b"\x01" + bomb)))
    with pytest.raises(ProtocolError, match="inflates past") as caught:
        await server.receive()
    assert caught.value.code == "too-large"


async def test_corrupt_and_truncated_compression_is_refused():
    raw, cipher, server = await raw_pair()
    packed = zlib.compress(b"hello " * 1000, 1)
    await raw.send_all(frame(cipher.encrypt(b"\x01" + packed[:-3])))
    with pytest.raises(ProtocolError, match="truncated"):
        await server.receive()
    await raw.send_all(frame(cipher.encrypt(b"\x01not zlib at all")))
    with pytest.raises(ProtocolError, match="does not inflate"):
        await server.receive()


async def test_unknown_flags_and_empty_plaintext_are_refused():
    raw, cipher, server = await raw_pair()
    await raw.send_all(frame(cipher.encrypt(b"\x04message")))
    with pytest.raises(ProtocolError, match="unknown flags 0x04"):
        await server.receive()
    await raw.send_all(frame(cipher.encrypt(b"")))
    with pytest.raises(ProtocolError, match="no flags byte"):
        await server.receive()


async def test_garbage_after_the_handshake_does_not_decrypt():
    raw, cipher, server = await raw_pair()
    await raw.send_all(frame(os.urandom(100)))
    with pytest.raises(ProtocolError, match="^client: frame does not decrypt$") as caught:
        await server.receive()
    assert caught.value.code == "decrypt"


async def test_eof_inside_a_frame_is_not_a_clean_close():
    raw, cipher, server = await raw_pair()
    await raw.send_all(frame(cipher.encrypt(b"\x00whole"))[:-3])
    await raw.aclose()
    with pytest.raises(ConnectionLost, match="connection closed inside a frame"):
        await server.receive()


async def test_clean_eof_between_frames_is_peer_closed():
    client, server = await channel_pair()
    await client.send(b"last words")
    await client.aclose()
    assert await server.receive() == b"last words"
    with pytest.raises(PeerClosed, match="^client: connection closed$"):
        await server.receive()


async def test_stalled_frame_times_out(autojump_clock):
    raw, cipher, server = await raw_pair()
    await raw.send_all(struct.pack(">I", 100)[:2])
    start = trio.current_time()
    with pytest.raises(ConnectionLost, match="frame stalled: 2 of 4 bytes within 30 s"):
        await server.receive()
    assert trio.current_time() - start == pytest.approx(net.FRAME_TIMEOUT)


async def test_waiting_between_frames_has_no_deadline(autojump_clock):
    client, server = await channel_pair()
    with trio.move_on_after(10 * net.FRAME_TIMEOUT) as scope:
        await server.receive()
    assert scope.cancelled_caught
    await client.send(b"still here")
    assert await server.receive() == b"still here"


async def test_cancelled_receive_loses_nothing():
    raw, cipher, server = await raw_pair()
    whole = frame(cipher.encrypt(b"\x00" + b"patience"))
    await raw.send_all(whole[:7])
    with trio.move_on_after(0.05):
        await server.receive()
    await raw.send_all(whole[7:])
    assert await server.receive() == b"patience"


async def test_messages_too_large_to_send_are_refused_without_breaking_the_channel():
    client, server = await channel_pair()
    with pytest.raises(InvalidValueError, match="over the limit"):
        await client.send(bytes(net.MAX_MESSAGE + 1))
    with pytest.raises(InvalidValueError, match="too large for a frame"):
        await client.send(os.urandom(net.MAX_FRAME))
    await client.send(b"fine")
    assert await server.receive() == b"fine"


async def test_concurrent_senders_do_not_interleave_frames():
    server = EchoServer()
    async with trio.open_nursery() as nursery:
        port = await server.start(nursery)
        channel = await net.open_channel("127.0.0.1", port, CLIENT, GROUP, allow(SERVER), timeout=5)
        senders, each = 8, 12
        sizes = [10, 3000, 200_000, 70_000]

        def message(sender: int, i: int) -> bytes:
            head = b"%d:%d:" % (sender, i)
            return head + os.urandom(sizes[(sender + i) % len(sizes)])

        sent: dict[int, list[bytes]] = {s: [] for s in range(senders)}

        async def send_all(sender: int):
            for i in range(each):
                msg = message(sender, i)
                sent[sender].append(msg)
                await channel.send(msg)

        received: dict[int, list[bytes]] = {s: [] for s in range(senders)}
        async with trio.open_nursery() as senders_nursery:
            for s in range(senders):
                senders_nursery.start_soon(send_all, s)
            for _ in range(senders * each):
                msg = await channel.receive()
                received[int(msg.split(b":", 1)[0])].append(msg)
        assert received == sent
        await channel.aclose()
        nursery.cancel_scope.cancel()
