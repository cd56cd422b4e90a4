"""Announcing and browsing the group's devices over mDNS/DNS-SD (docs/discovery.md): the only module importing
zeroconf. Zeroconf runs its own threads (an asyncio loop, a browser thread); its callbacks hand what they resolved
to trio through the trio token, as the relay's bridge does, and trio alone decides (agentlog.sync.discovery) what
an announcement is worth. What is announced and checked is in the pure half; this module moves it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import warnings
from collections.abc import Callable

import structlog
import trio
from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from agentlog.errors import InvalidValueError
from agentlog.sync import discovery
from agentlog.sync.discovery import Record

log = structlog.get_logger("agentlog.sync.mdns")
RESOLVE_MS = 1500            # a browser waits this long for an announcement's address, port and TXT record
QUEUE_MAX = 64               # resolved announcements waiting for trio; more are dropped (a flood on the network)


def _interfaces(host: str | None) -> tuple[list[str] | InterfaceChoice, list[str]]:
    """(interfaces to use, addresses to announce) for a listener on `host` (None: browse only, every interface).
    A listener on one address is announced on that address's interface only: one on loopback stays on this
    machine; one on every address announces each of this machine's IPv4 addresses but loopback."""
    if host is None:
        return InterfaceChoice.All, []
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    if ip.is_unspecified:
        with warnings.catch_warnings():             # deprecated in favour of ifaddr, which we do not depend on
            warnings.simplefilter("ignore", DeprecationWarning)
            from zeroconf import get_all_addresses
            found = get_all_addresses()
        return InterfaceChoice.All, [a for a in found if not ipaddress.ip_address(a).is_loopback]
    if ip.version == 6:                             # announcements are IPv4 (docs/discovery.md): browse only
        return InterfaceChoice.All, []
    return [str(ip)], [str(ip)]


async def run(group_key: bytes, host: str | None, port: int | None, found: Callable[[Record], None],
              lost: Callable[[Record], None], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Announce this device (when `port` is given: the listener's port, on `host`) and call `found` for each other
    device of this group announced on the network, `lost` when its announcement is withdrawn, until cancelled.
    Announcements of other groups, malformed ones and this run's own are ignored (a malformed one logged)."""
    interfaces, addresses = await trio.to_thread.run_sync(_interfaces, host)
    zc = await trio.to_thread.run_sync(lambda: Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only))
    nonce = os.urandom(discovery.NONCE_LEN)
    info = None
    try:
        async with trio.open_nursery() as nursery:
            if port is not None and addresses:
                name, server, properties = discovery.records(group_key, nonce)
                info = ServiceInfo(discovery.SERVICE_TYPE, name, port=port, properties=properties, server=server,
                                   addresses=[socket.inet_aton(a) for a in addresses])
                nursery.start_soon(_announce, zc, info, f"{addresses[0]}:{port}")
            await _browse(zc, group_key, nonce.hex(), found, lost, task_status)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close, zc, info)


async def _announce(zc: Zeroconf, info: ServiceInfo, where: str) -> None:
    """Register the announcement (zeroconf probes the name first: about 2 s), while the browser already runs."""
    await trio.to_thread.run_sync(zc.register_service, info)
    log.info("announced", address=where, instance=info.name.partition(".")[0])


def _close(zc: Zeroconf, info: ServiceInfo | None) -> None:
    """Withdraw the announcement (a goodbye, so browsers forget it at once) and stop zeroconf's threads."""
    try:
        if info is not None:
            zc.unregister_service(info)
    except Exception:       # it was never registered (stopped while probing): nothing to withdraw
        pass
    finally:
        zc.close()


async def _browse(zc: Zeroconf, group_key: bytes, own: str, found, lost, task_status) -> None:
    token = trio.lowlevel.current_trio_token()
    send, received = trio.open_memory_channel(QUEUE_MAX)

    def offer(item) -> None:
        try:
            send.send_nowait(item)
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """In the browser's thread: resolve an added or updated announcement and hand it to trio."""
        if state_change is ServiceStateChange.Removed:
            item = ("removed", name, None)
        else:
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_MS)
            item = ("added", name, info and (dict(info.properties), info.parsed_addresses(), info.port))
        try:
            token.run_sync_soon(offer, item)
        except trio.RunFinishedError:
            pass

    browser = ServiceBrowser(zc, discovery.SERVICE_TYPE, handlers=[changed])
    known: dict[str, Record] = {}
    try:
        task_status.started()
        async for kind, name, resolved in received:
            if kind == "removed":
                if name in known:
                    lost(known.pop(name))
                continue
            record = _checked(name, resolved, group_key)
            if record is None or record.nonce == own:
                continue
            if known.get(name) != record:
                if name in known:
                    lost(known[name])
                known[name] = record
                found(record)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(browser.cancel)


def _checked(name: str, resolved, group_key: bytes) -> Record | None:
    """The announcement as a Record when it is well formed and carries this group's tag; else None."""
    if resolved is None:
        return None
    try:
        record = discovery.parse(name, *resolved)
    except InvalidValueError as exc:
        log.info("announcement ignored", reason=str(exc))
        return None
    return record if discovery.ours(group_key, record) else None
