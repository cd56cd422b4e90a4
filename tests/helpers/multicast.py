"""Whether this machine delivers multicast on loopback, as mDNS tests need (many containers do not)."""

from __future__ import annotations

import socket
import struct

GROUP = "224.0.0.251"


def loopback_multicast() -> bool:
    """Send one datagram to an mDNS-like group on 127.0.0.1 and see it come back within half a second."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.bind(("", 0))
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                          struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("127.0.0.1")))
            rx.settimeout(0.5)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.sendto(b"agentlog?", (GROUP, rx.getsockname()[1]))
            return rx.recv(64) == b"agentlog?"
    except OSError:
        return False
