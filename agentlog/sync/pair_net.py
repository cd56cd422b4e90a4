"""The trio edge of pairing (docs/pairing.md): the inviter's answer on a listener, the invite command's own
listener when no `serve` runs, and the joiner's connection. The exchange itself is agentlog.sync.pairing.

The inviter's side reads and spends the pending invite in the home (agentlog.store.invites) and enrols the
joiner there, in worker threads; whichever process answers, the invite command learns the outcome from
the store.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
import trio

from agentlog.crypto import DeviceKey
from agentlog.errors import AgentlogError, HandshakeError, PeerError, PeerRefused, Unreachable, UsageError
from agentlog.store import devices, invites
from agentlog.store.peers import address, parse_address
from agentlog.store.store import Store
from agentlog.sync import listener, net
from agentlog.sync.pairing import MAX_FRAME, Inviter, Joiner
from agentlog.sync.replicator import Replicator

log = structlog.get_logger("agentlog.sync.pairing")
POLL_S = 0.05
SYNC_GRACE_S = 30.0
"""After a join, the invite command's own listener waits this long for the new device's first sync."""


def answerer(store: Store, *, serving: bool,
             run_sync: Callable[..., Awaitable] = trio.to_thread.run_sync) -> net.OnPair:
    """The `on_pair` of a listener of this home: answers a joiner from the pending invites in the store."""

    async def answer(frames: net.Frames, first: bytes) -> None:
        claimed: list[int] = []

        def claim(slot: int) -> bytes:
            secret = invites.claim(store, slot)
            claimed.append(slot)
            return secret

        inviter = Inviter(store.key, claim, lambda device, name: _enrol(store, inviter.slot, device, name),
                          serving=serving, peer=frames.remote)
        try:
            await _exchange(frames, inviter, first, run_sync)
        except BaseException as exc:
            if claimed and not inviter.done:
                reason = exc.reason if isinstance(exc, PeerRefused) else str(exc) if isinstance(exc, PeerError) \
                    else "the exchange was interrupted"
                with trio.CancelScope(shield=True):
                    await run_sync(invites.failed, store, claimed[0], reason)
                log.warning("pairing failed", address=frames.remote, slot=claimed[0], reason=reason)
            raise
        log.info("paired", address=frames.remote, slot=inviter.slot, device=inviter.joined.hex()[:16])

    return answer


def _enrol(store: Store, slot: int, device: bytes, asked: str) -> str:
    """Enrol the joiner as the invite says, mark the invite used; the join token."""
    doc = invites.get(store, slot)
    if doc is None or doc["state"] != "pending":
        raise UsageError(f"invite {slot} ended meanwhile")
    if asked and asked != doc["name"]:
        raise UsageError(f"invite {slot} is for a device named {doc['name']!r}, not {asked!r}")
    token = devices.enroll_with_scopes(store, device, doc["name"], doc["scopes"])
    invites.joined(store, slot, device)
    return token


async def _exchange(frames: net.Frames, side, first: bytes | None, run_sync,
                    took: Callable[[object], None] | None = None) -> None:
    """Move pairing frames until `side` is done; a refusal is sent before the error goes on. `took(side)` runs
    after each frame from the other side was taken, before the answer leaves."""
    try:
        replies = side.start() if first is None else await run_sync(side.receive, first)
        while True:
            for reply in replies:
                await frames.write(reply)
            if side.done:
                return
            replies = await run_sync(side.receive, await frames.read(MAX_FRAME))
            if took is not None:
                took(side)
    except HandshakeError as exc:
        if exc.reply is not None:
            with trio.move_on_after(1.0):
                try:
                    await frames.write(exc.reply)
                except PeerError:
                    pass
        raise
    except PeerError as exc:
        raise HandshakeError(f"{exc} during pairing", frames.remote) from None


def wait_for_join(store: Store, slot: int, expires_s: float, listen: tuple[str, int] | None,
                  on_listening: Callable[[str], None], on_failed: Callable[[dict], None], *,
                  served: str | None = None, discovery: bool = True) -> dict:
    """Block until the invite in `slot` is used, void or past `expires_s` seconds from now; its record then
    (state "void", reason "expired" for the last). `on_failed(record)` hears of each failed try. With
    `listen`, answer joiners there meanwhile (no `serve` of this home does; `on_listening(address)` once
    listening), and after a join wait for the new device's first sync (at most SYNC_GRACE_S); else a serve
    answers at `served`. With `discovery`, the slot is announced on the local network meanwhile."""
    try:
        return trio.run(partial(_wait_for_join, store, slot, expires_s, listen, on_listening, on_failed, served,
                                discovery))
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], AgentlogError):
            raise leaves[0] from None
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _wait_for_join(store: Store, slot: int, expires_s: float, listen, on_listening, on_failed, served,
                         discovery) -> dict:
    listeners = []
    if listen is not None:
        try:
            listeners = await trio.open_tcp_listeners(listen[1], host=listen[0])
        except OSError as exc:
            raise UsageError(f"cannot listen on {address(*listen)}: {exc.strerror or exc}") from None
    async with trio.open_nursery() as nursery:
        replicator, where = None, served
        if listen is not None:
            replicator = Replicator(store, on_pair=answerer(store, serving=False))
            for sock in listeners:
                nursery.start_soon(listener.accept_forever, sock, replicator.accept, nursery, replicator.slots)
            where = address(reachable_host(listen[0]), listeners[0].socket.getsockname()[1])
            on_listening(where)
        if discovery and where:
            nursery.start_soon(_announce, slot, where, listen[0] if listen else "")
        doc = await _outcome(store, slot, expires_s, on_failed)
        if replicator is not None and doc["state"] == "joined":
            with trio.move_on_after(SYNC_GRACE_S):
                device = bytes.fromhex(doc["device"])
                while getattr(replicator.states.get(device), "state", "") != "partitioned":
                    await trio.sleep(POLL_S)
        nursery.cancel_scope.cancel()
    return doc


async def _announce(slot: int, where: str, listen_host: str) -> None:
    """Announce the invite over mDNS until cancelled (agentlog.sync.pair_mdns); nothing when the network does
    not allow it."""
    from agentlog.sync import pair_mdns

    host, port = parse_address(where)
    try:
        announcement = pair_mdns.Announcement(slot, host, port, listen_host=listen_host)
    except (ValueError, TypeError):
        return                                  # not an IPv4 address: not announced
    try:
        if not await trio.to_thread.run_sync(announcement.open):
            log.info("invite not announced: mDNS is not available here")
            return
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(announcement.close)


def find_inviters(slot: int, timeout: float) -> list[tuple[str, int]]:
    """The addresses announcing invite `slot` on the local network (agentlog.sync.pair_mdns.find)."""
    from agentlog.sync import pair_mdns

    return pair_mdns.find(slot, timeout)


def reachable_host(host: str) -> str:
    """The host to print for a listener on `host`: for a wildcard (0.0.0.0, ::), this machine's address on its
    default route (a UDP socket connected nowhere in particular: no packet leaves), else the wildcard itself."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        return host


async def _outcome(store: Store, slot: int, expires_s: float, on_failed) -> dict:
    deadline, failed = trio.current_time() + expires_s, 0
    while True:
        doc = await trio.to_thread.run_sync(invites.get, store, slot)
        if doc is None:
            return {"state": "void", "reason": "expired (its record was removed)", "device": ""}
        if doc["failed"] > failed and doc["state"] == "pending":
            failed = doc["failed"]
            on_failed(doc)
        if doc["state"] != "pending":
            return doc
        if trio.current_time() > deadline:
            return {**doc, "state": "void", "reason": "expired"}
        await trio.sleep(POLL_S)


def join(key: DeviceKey, slot: int, secret: bytes, name: str, host: str, port: int,
         proved: Callable[[Joiner], None] = lambda joiner: None, timeout: float = net.HANDSHAKE_TIMEOUT) -> Joiner:
    """Connect to the inviter at host:port and run the exchange as the joiner within `timeout` seconds; the
    finished Joiner (its `token`, `inviter` and `serving`). `proved(joiner)` runs once the inviter proved the
    code, before the joiner's key leaves (and again at the end): where the caller keeps the key.

    Raises:
        Unreachable: the connect failed. HandshakeError: the exchange failed or timed out; PeerRefused when
            either side refused (a wrong code, an expired or used invite).
    """
    return trio.run(partial(_join, key, slot, secret, name, host, port, proved, timeout))


async def _join(key: DeviceKey, slot: int, secret: bytes, name: str, host: str, port: int, proved,
                timeout: float) -> Joiner:
    remote = address(host, port)
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise Unreachable(f"cannot connect: {exc.strerror or exc}", remote) from None
        joiner = Joiner(key, slot, secret, name, peer=remote)
        try:
            await _exchange(net.Frames(stream, remote), joiner, None, trio.to_thread.run_sync, proved)
        finally:
            await trio.aclose_forcefully(stream)
        return joiner
    raise HandshakeError(f"pairing timed out after {timeout:g} s", remote)
