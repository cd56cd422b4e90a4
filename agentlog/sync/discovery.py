"""Finding a group's devices on the local network, the pure half (docs/discovery.md): what `serve` announces over
mDNS/DNS-SD and how a browser decides whether an announcement is its group's.

An announcement carries a random per-run nonce (the instance name and the host name) and a tag, BLAKE2b keyed with
the group secret over that nonce, in its TXT record: nothing else (no group id, device id, name or host name). A
member recomputes the tag from the nonce; anyone else sees two random strings, a fresh pair on every run and every
device, so it cannot tell the group's announcements from another group's nor link one device's to another's.
The I/O (zeroconf) is agentlog/sync/mdns.py.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

from agentlog.errors import InvalidValueError

SERVICE_TYPE = "_agentlog._tcp.local."
VERSION = "1"
NONCE_LEN = 8                        # bytes of the per-run instance nonce
TAG_LEN = 16                         # bytes of the keyed tag
_PERSON = b"agentlog-mdns-v1"        # BLAKE2b personalisation: this tag is never the handshake's group tag
_NONCE = re.compile(rf"[0-9a-f]{{{2 * NONCE_LEN}}}")
_TAG = re.compile(rf"[0-9a-f]{{{2 * TAG_LEN}}}")
TXT_KEYS = frozenset({b"v", b"t"})


def tag(group_key: bytes, nonce: bytes) -> bytes:
    """The keyed tag of an announcement: BLAKE2b-128 keyed with the group secret over the instance nonce."""
    return hashlib.blake2b(nonce, key=group_key, digest_size=TAG_LEN, person=_PERSON).digest()


@dataclass(frozen=True)
class Record:
    """What one announcement says: its nonce and tag (hex), and where the announcing device listens."""

    nonce: str
    tag: str
    host: str
    port: int


def records(group_key: bytes, nonce: bytes) -> tuple[str, str, dict[bytes, bytes]]:
    """(instance name, host name, TXT properties) to announce for `nonce`: nothing but the nonce and its tag."""
    if len(nonce) != NONCE_LEN:
        raise InvalidValueError(f"an announcement's nonce is {NONCE_LEN} bytes, not {len(nonce)}")
    n = nonce.hex()
    return f"{n}.{SERVICE_TYPE}", f"{n}.local.", {b"v": VERSION.encode(), b"t": tag(group_key, nonce).hex().encode()}


def parse(name: str, properties: dict, addresses: list[str], port: int | None) -> Record:
    """An announcement as a browser resolved it (instance name, TXT properties, addresses, port), checked whole.

    Raises:
        InvalidValueError: not an agentlog announcement of this version, or malformed (one line saying what).
    """
    instance, sep, service = name.partition(".")
    if not sep or service != SERVICE_TYPE or not _NONCE.fullmatch(instance):
        raise InvalidValueError(f"announcement {name[:80]!r}: not an instance of {SERVICE_TYPE} named by a nonce")
    props = {k: v for k, v in (properties or {}).items()}
    if set(props) != TXT_KEYS:
        raise InvalidValueError(f"announcement {instance}: its TXT record holds other keys than v and t")
    if props[b"v"] != VERSION.encode():
        raise InvalidValueError(f"announcement {instance}: version {props[b'v']!r}, not {VERSION}")
    t = props[b"t"].decode("ascii", "replace") if isinstance(props[b"t"], bytes) else ""
    if not _TAG.fullmatch(t):
        raise InvalidValueError(f"announcement {instance}: its tag is not {2 * TAG_LEN} hex digits")
    if port is None or not 0 < port < 65536:
        raise InvalidValueError(f"announcement {instance}: no port")
    host = dialable(addresses)
    if host is None:
        raise InvalidValueError(f"announcement {instance}: no address to dial")
    return Record(instance, t, host, port)


def dialable(addresses: list[str]) -> str | None:
    """The address to dial among those announced: the first IPv4 one, else the first IPv6 one that is not
    link-local (which needs an interface to be dialed); None when there is none."""
    usable = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.is_multicast or ip.is_unspecified or ip.version == 6 and ip.is_link_local:
            continue
        usable.append(ip)
    usable.sort(key=lambda ip: ip.version)
    return str(usable[0]) if usable else None


def ours(group_key: bytes, record: Record) -> bool:
    """Whether an announcement carries this group's tag (a stranger may copy one: the handshake still decides)."""
    return hmac.compare_digest(tag(group_key, bytes.fromhex(record.nonce)).hex(), record.tag)
