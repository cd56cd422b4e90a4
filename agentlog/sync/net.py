"""TCP connections between devices with trio: frames, the handshake, encrypted messages.

docs/protocol.md section 1. A frame is `u32be length ‖ body`; after the handshake
(handshake.py, driven here) each body is one encrypted `flags(1) ‖ message`, the
message zlib-compressed when that makes it smaller.

Invariants:

- A frame's length is checked before its body is read; a body is read within
  FRAME_TIMEOUT of the frame's first byte.
- Frames are read into a buffer that survives cancellation, so a cancelled
  `receive` loses nothing; a cancelled `send` breaks the channel, because the
  peer's stream state has then moved past a frame it may never get.
- Every failure is a PeerError naming the remote address: PeerClosed for a clean
  EOF between frames, ConnectionLost for a broken connection, ProtocolError for a
  frame that breaks the rules, HandshakeError (PeerRefused) before the channel
  exists, Unreachable when the connect fails.
- trio's SocketStream sets TCP_NODELAY; small frames leave at once.
"""

from __future__ import annotations

import errno
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable

import trio

from agentlog.crypto import DeviceKey
from agentlog.errors import (
    ConnectionLost,
    HandshakeError,
    InvalidValueError,
    PeerClosed,
    PeerError,
    ProtocolError,
    Unreachable,
)
from agentlog.sync import handshake as hs
from agentlog.sync.pairing import is_pairing

MAX_FRAME = 4 * 1024 * 1024 + 64
MAX_MESSAGE = 16 * 1024 * 1024
COMPRESS_AT = 1024
HANDSHAKE_TIMEOUT = 10.0
FRAME_TIMEOUT = 30.0
_LENGTH = struct.Struct(">I")
OnPair = Callable[["Frames", bytes], Awaitable[None]]
"""Answers a connection whose first frame (given) opens a pairing."""
_CHUNK = 256 * 1024


class Frames:
    """Length-prefixed frames over a trio stream, with wire byte counters."""

    def __init__(self, stream: trio.abc.Stream, remote: str, on_data: Callable[[], None] | None = None):
        self.stream = stream
        self.remote = remote
        self.on_data = on_data
        """Called once, when the first bytes arrive."""
        self.sent_bytes = 0
        self.received_bytes = 0
        self._buffer = bytearray()
        self._frame_began: float | None = None
        self.send_lock = trio.Lock()
        """Held by whoever encrypts and writes, so frames leave in the order their stream state assumes."""
        self._broken = ""

    async def read(self, limit: int) -> bytes:
        """The next frame's body, of 1 to `limit` bytes.

        Raises:
            PeerClosed: EOF before the frame's first byte.
            ConnectionLost: EOF, reset or FRAME_TIMEOUT inside the frame.
            ProtocolError: code "too-large", the length is 0 or over `limit`.
        """
        await self._fill(_LENGTH.size)
        (length,) = _LENGTH.unpack_from(self._buffer)
        if not 1 <= length <= limit:
            raise ProtocolError(f"frame length {length} is outside 1..{limit}", self.remote, code="too-large")
        await self._fill(_LENGTH.size + length)
        body = bytes(self._buffer[_LENGTH.size:_LENGTH.size + length])
        del self._buffer[:_LENGTH.size + length]
        self._frame_began = trio.current_time() if self._buffer else None
        return body

    async def _fill(self, n: int) -> None:
        """Read until the buffer holds `n` bytes; unbounded wait only before a frame begins."""
        while len(self._buffer) < n:
            deadline = self._frame_began + FRAME_TIMEOUT if self._frame_began is not None else float("inf")
            with trio.move_on_at(deadline):
                chunk = await self._receive_some()
                if not chunk:
                    if self._buffer:
                        raise ConnectionLost(f"connection closed inside a frame ({len(self._buffer)} bytes of it "
                                             "arrived)", self.remote)
                    raise PeerClosed("connection closed", self.remote)
                if self._frame_began is None:
                    self._frame_began = trio.current_time()
                if self.on_data is not None:
                    self.on_data, on_data = None, self.on_data
                    on_data()
                self.received_bytes += len(chunk)
                self._buffer += chunk
                continue
            raise ConnectionLost(f"frame stalled: {len(self._buffer)} of {n} bytes within {FRAME_TIMEOUT:g} s",
                                 self.remote)

    async def _receive_some(self) -> bytes:
        try:
            return await self.stream.receive_some(_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"connection broke: {_describe(exc)}", self.remote) from None

    async def write(self, body: bytes) -> None:
        """Send one frame whole; after a failed or interrupted send, every later one fails."""
        if self._broken:
            raise ConnectionLost(f"channel is broken: {self._broken}", self.remote)
        frame = _LENGTH.pack(len(body)) + body
        try:
            await self.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._broken = f"a send failed: {_describe(exc)}"
            raise ConnectionLost(f"connection broke: {_describe(exc)}", self.remote) from None
        except BaseException:
            self._broken = "a send was interrupted"
            raise
        self.sent_bytes += len(frame)


class Channel:
    """An authenticated, encrypted connection to one peer device, carrying whole messages.

    One task may receive while any number send; sends never interleave their frames.
    """

    def __init__(self, frames: Frames, cipher: hs.Cipher, peer: bytes):
        self._frames = frames
        self._cipher = cipher
        self.peer = peer

    @property
    def remote(self) -> str:
        return self._frames.remote

    @property
    def sent_bytes(self) -> int:
        """Bytes written to the connection so far, length prefixes and handshake included."""
        return self._frames.sent_bytes

    @property
    def received_bytes(self) -> int:
        """Bytes read from the connection so far, length prefixes and handshake included."""
        return self._frames.received_bytes

    async def send(self, message: bytes) -> None:
        """Send one message, compressed when it is at least COMPRESS_AT bytes and that helps.

        Raises:
            InvalidValueError: the message is over MAX_MESSAGE or does not fit a frame.
            ConnectionLost: the connection broke, now or in an earlier interrupted send.
        """
        if len(message) > MAX_MESSAGE:
            raise InvalidValueError(f"message is {len(message)} bytes, over the limit of {MAX_MESSAGE}")
        flags, body = 0, message
        if len(message) >= COMPRESS_AT:
            packed = zlib.compress(message, 1)
            if len(packed) < len(message):
                flags, body = hs.FLAG_COMPRESSED, packed
        async with self._frames.send_lock:
            if 1 + len(body) + self._cipher.overhead() > MAX_FRAME:
                raise InvalidValueError(f"message is {len(message)} bytes ({len(body)} as sent), too large "
                                        f"for a frame of at most {MAX_FRAME}")
            await self._frames.write(self._cipher.encrypt(bytes([flags]) + body))

    async def receive(self) -> bytes:
        """The next message from the peer.

        Raises:
            PeerClosed: the peer closed the connection cleanly between frames.
            PeerRefused: the peer refused us (a client may refuse the server after the handshake ended on its side).
            ConnectionLost: the connection broke or a frame stalled.
            ProtocolError: a frame over MAX_FRAME, that does not decrypt, has unknown
                flags or does not inflate to at most MAX_MESSAGE.
        """
        plaintext = self._cipher.decrypt(await self._frames.read(MAX_FRAME))
        if not plaintext:
            raise ProtocolError("frame holds no flags byte", self.remote)
        flags, body = plaintext[0], plaintext[1:]
        if flags == hs.FLAG_REFUSAL:
            raise hs.decode_refusal(body, self.remote)
        if flags & ~hs.FLAG_COMPRESSED:
            raise ProtocolError(f"frame has unknown flags {flags:#04x}", self.remote)
        return _inflate(body, self.remote) if flags else body

    async def aclose(self) -> None:
        await self._frames.stream.aclose()


async def open_channel(host: str, port: int, key: DeviceKey, group_key: bytes, check_peer: hs.CheckPeer, *,
                       timeout: float = HANDSHAKE_TIMEOUT) -> Channel:
    """Connect to a device at host:port and run the client handshake, both within `timeout` seconds.

    Raises:
        Unreachable: the connect failed or timed out.
        HandshakeError: the handshake failed or timed out; PeerRefused when either side refused.
    """
    remote = _address(host, port)
    deadline = trio.current_time() + timeout
    stream = None
    with trio.move_on_at(deadline):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            if _refused(exc):
                raise Unreachable("cannot connect: connection refused", remote, refused=True) from None
            raise Unreachable(f"cannot connect: {_describe(exc)}", remote) from None
    if stream is None:
        raise Unreachable(f"connect timed out after {timeout:g} s", remote)
    handshake = hs.ClientHandshake(key, group_key, check_peer, peer=remote)
    return await _establish(Frames(stream, remote), handshake, deadline, timeout)


async def connect_channel(stream: trio.abc.Stream, key: DeviceKey, group_key: bytes, check_peer: hs.CheckPeer, *,
                          timeout: float = HANDSHAKE_TIMEOUT, remote: str | None = None) -> Channel:
    """Run the client handshake on a stream that is already connected, within `timeout` seconds.

    `remote` names the peer in errors; by default the stream's socket peer address.

    Raises:
        HandshakeError: the handshake failed or timed out; PeerRefused when either side refused.
    """
    remote = remote or _peer_address(stream)
    handshake = hs.ClientHandshake(key, group_key, check_peer, peer=remote)
    return await _establish(Frames(stream, remote), handshake, trio.current_time() + timeout, timeout)


async def accept_channel(stream: trio.abc.Stream, key: DeviceKey, group_key: bytes, check_peer: hs.CheckPeer, *,
                         timeout: float = HANDSHAKE_TIMEOUT, remote: str | None = None,
                         on_data: Callable[[], None] | None = None, on_pair: OnPair | None = None) -> Channel | None:
    """Run the server handshake on an accepted stream within `timeout` seconds.

    `remote` names the peer in errors; by default the stream's socket peer address. `on_data` is
    called once the client has sent its first bytes (an idle connection never calls it). When the
    first frame opens a pairing (docs/pairing.md) and `on_pair` is given, `on_pair(frames, first)`
    answers it within the same time, the stream is closed and None comes back.

    Raises:
        HandshakeError: the handshake failed or timed out; PeerRefused when either side refused.
    """
    remote = remote or _peer_address(stream)
    handshake = hs.ServerHandshake(key, group_key, check_peer, peer=remote)
    return await _establish(Frames(stream, remote, on_data), handshake, trio.current_time() + timeout, timeout,
                            on_pair)


async def _establish(frames: Frames, handshake, deadline: float, timeout: float,
                     on_pair: OnPair | None = None) -> Channel | None:
    """Run the handshake until `deadline`; the stream is closed unless a Channel comes back."""
    with trio.move_on_at(deadline):
        return await _run_handshake(frames, handshake, on_pair)
    raise HandshakeError(f"handshake timed out after {timeout:g} s", frames.remote)


async def _run_handshake(frames: Frames, handshake, on_pair: OnPair | None = None) -> Channel | None:
    """Move handshake frames until it is done (or hand a pairing to `on_pair`); close the stream on any failure."""
    try:
        try:
            for body in handshake.start():
                await frames.write(body)
            while not handshake.done:
                body = await frames.read(hs.MAX_FRAME)
                if on_pair is not None and is_pairing(body):
                    await on_pair(frames, body)
                    await trio.aclose_forcefully(frames.stream)
                    return None
                on_pair = None
                try:
                    replies = handshake.receive(body)
                except HandshakeError as exc:
                    if exc.reply is not None:
                        await _send_quietly(frames, exc.reply)
                    raise
                for reply in replies:
                    await frames.write(reply)
        except (PeerClosed, ConnectionLost, ProtocolError) as exc:
            raise HandshakeError(f"{exc.reason} during the handshake", frames.remote) from None
    except BaseException:
        await trio.aclose_forcefully(frames.stream)
        raise
    return Channel(frames, handshake.cipher, handshake.peer)


async def _send_quietly(frames: Frames, body: bytes) -> None:
    """Send a last frame (a refusal) if the connection still takes it, within a second."""
    with trio.move_on_after(1.0):
        try:
            await frames.write(body)
        except PeerError:
            pass


def _inflate(body: bytes, remote: str) -> bytes:
    """Decompress one message, refusing output over MAX_MESSAGE before producing more of it."""
    inflater = zlib.decompressobj()
    try:
        message = inflater.decompress(body, MAX_MESSAGE + 1)
    except zlib.error as exc:
        raise ProtocolError(f"compressed message does not inflate: {exc}", remote, code="decode") from None
    if len(message) > MAX_MESSAGE:
        raise ProtocolError(f"compressed message inflates past {MAX_MESSAGE} bytes", remote, code="too-large")
    if not inflater.eof or inflater.unused_data:
        raise ProtocolError("compressed message is truncated or has trailing bytes", remote, code="decode")
    return message


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_address(stream: trio.abc.Stream) -> str:
    try:
        name = stream.socket.getpeername()
    except (AttributeError, OSError):
        return "unknown peer"
    if stream.socket.family == socket.AF_UNIX:
        return str(name) or "unix socket"
    return _address(str(name[0]), int(name[1]))


def _refused(exc: OSError) -> bool:
    """Whether every attempt of a failed trio.open_tcp_stream was refused (it raises an OSError whose cause
    groups the attempts' errors)."""
    attempts = getattr(exc.__cause__, "exceptions", None) or (exc,)
    return all(isinstance(e, ConnectionRefusedError) for e in attempts)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
    return str(exc) or type(exc).__name__
