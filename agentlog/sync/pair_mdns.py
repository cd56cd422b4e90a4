"""Finding an inviter on the local network (docs/pairing.md): a pending invite is announced over mDNS (the
`zeroconf` package, its only user) as a service of type `_agentlog-pair._tcp` whose TXT record holds the
code's public slot and nothing else; `agentlog join CODE` without `--to` browses for that slot.

The announcement names no device, group or key, and nothing that checks a guess of the secret words: an
observer learns that an invite with that slot is pending at that address. Both calls block (zeroconf runs
its own threads); the trio edge runs them in worker threads, and every failure of the network is
swallowed into "not announced" or "not found": discovery only saves typing `--to`.
"""

from __future__ import annotations

import ipaddress
import secrets
import time

from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

SERVICE = "_agentlog-pair._tcp.local."
VERSION = "1"
RESOLVE_MS = 1000


def _interfaces(host: str):
    """A specific listen address is announced on that interface only; a wildcard on every one."""
    return InterfaceChoice.All if host in ("0.0.0.0", "::", "") else [host]


class Announcement:
    """The invite in `slot`, answered at host:port, announced until `close()`."""

    def __init__(self, slot: int, host: str, port: int, *, listen_host: str = ""):
        self._zc: Zeroconf | None = None
        self._info = ServiceInfo(
            SERVICE, f"invite-{slot}-{secrets.token_hex(4)}.{SERVICE}", port=port,
            addresses=[ipaddress.ip_address(host).packed], properties={"slot": str(slot), "v": VERSION})
        self._interfaces = _interfaces(listen_host or host)

    def open(self) -> bool:
        """Announce; False when the network does not allow it. The name carries random bytes, so the probe for
        a name already taken (seconds of waiting) is left out."""
        try:
            self._zc = Zeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
            self._zc.register_service(self._info, cooperating_responders=True)
            return True
        except Exception:  # noqa: BLE001 - best effort: zeroconf raises its own errors besides OSError
            self.close()
            return False

    def close(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            zc.unregister_service(self._info)
        except Exception:  # noqa: BLE001 - best effort, as open
            pass
        zc.close()


def find(slot: int, timeout: float) -> list[tuple[str, int]]:
    """The (host, port) of every invite announced with `slot` that answered within `timeout` seconds; it stops
    at the first one found (then waits a moment for others with the same slot)."""
    found: list[tuple[str, int]] = []

    def seen(zeroconf, service_type, name, state_change) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_MS)
        if info is None or info.properties.get(b"slot") != str(slot).encode() or not info.port:
            return
        for host in info.parsed_addresses(IPVersion.V4Only):
            if (host, info.port) not in found:
                found.append((host, info.port))

    try:
        zc = Zeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    except Exception:  # noqa: BLE001 - best effort, as Announcement.open
        return []
    try:
        browser = ServiceBrowser(zc, SERVICE, handlers=[seen])
        end = time.monotonic() + timeout
        while not found and time.monotonic() < end:
            time.sleep(0.02)
        if found:
            time.sleep(0.2)
        browser.cancel()
    finally:
        zc.close()
    return list(found)
