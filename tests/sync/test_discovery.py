"""The pure half of discovery (agentlog/sync/discovery.py): the keyed tag, the records announced, and the checks
a browser makes of what it resolved."""

from __future__ import annotations

import os

import pytest

from agentlog.errors import InvalidValueError
from agentlog.sync import discovery
from agentlog.sync.handshake import group_tag

KEY, OTHER = bytes(range(32)), bytes(range(1, 33))
NONCE = bytes.fromhex("0011223344556677")


def resolved(group_key: bytes = KEY, nonce: bytes = NONCE, port: int = 4711, addresses=("192.0.2.7",)):
    """(name, properties, addresses, port) as a browser resolves this group's announcement."""
    name, _, properties = discovery.records(group_key, nonce)
    return name, dict(properties), list(addresses), port


def test_the_tag_is_keyed_with_the_group_secret_over_the_nonce():
    tag = discovery.tag(KEY, NONCE)
    assert len(tag) == discovery.TAG_LEN and tag == discovery.tag(KEY, NONCE)
    assert tag != discovery.tag(OTHER, NONCE)                      # another group's
    assert tag != discovery.tag(KEY, os.urandom(discovery.NONCE_LEN))   # each run's tag differs: not linkable
    assert tag not in group_tag(KEY)                               # not the handshake's group tag, nor a piece


def test_the_records_hold_the_nonce_and_its_tag_and_nothing_else():
    name, server, properties = discovery.records(KEY, NONCE)
    assert name == f"{NONCE.hex()}.{discovery.SERVICE_TYPE}"
    assert server == f"{NONCE.hex()}.local."                      # not this machine's host name
    assert properties == {b"v": b"1", b"t": discovery.tag(KEY, NONCE).hex().encode()}
    everything = (name + server).encode() + b"".join(k + v for k, v in properties.items())
    assert KEY.hex().encode() not in everything and KEY not in everything
    with pytest.raises(InvalidValueError, match="nonce is 8 bytes"):
        discovery.records(KEY, b"short")


def test_a_member_recognises_the_groups_announcement_and_no_other():
    record = discovery.parse(*resolved())
    assert (record.nonce, record.host, record.port) == (NONCE.hex(), "192.0.2.7", 4711)
    assert discovery.ours(KEY, record)
    assert not discovery.ours(OTHER, record)
    other_nonce = discovery.parse(*resolved(nonce=bytes(8)))
    copied = discovery.Record(other_nonce.nonce, record.tag, record.host, record.port)
    assert not discovery.ours(KEY, copied)                         # a tag copied onto another nonce


@pytest.mark.parametrize("change, message", [
    (lambda n, p, a, port: (n.replace(".", "x.", 1), p, a, port), "named by a nonce"),
    (lambda n, p, a, port: (n.replace("_agentlog", "_other"), p, a, port), "not an instance"),
    (lambda n, p, a, port: (n, {**p, b"name": b"laptop"}, a, port), "other keys"),
    (lambda n, p, a, port: (n, {b"t": p[b"t"]}, a, port), "other keys"),
    (lambda n, p, a, port: (n, {**p, b"v": b"2"}, a, port), "version"),
    (lambda n, p, a, port: (n, {**p, b"t": b"zz" * 16}, a, port), "32 hex digits"),
    (lambda n, p, a, port: (n, {**p, b"t": None}, a, port), "32 hex digits"),
    (lambda n, p, a, port: (n, p, a, None), "no port"),
    (lambda n, p, a, port: (n, p, a, 0), "no port"),
    (lambda n, p, a, port: (n, p, ["fe80::1", "not an address", "224.0.0.251"], port), "no address"),
    (lambda n, p, a, port: (n, p, [], port), "no address"),
])
def test_a_malformed_announcement_is_refused_with_one_line(change, message):
    with pytest.raises(InvalidValueError, match=message) as caught:
        discovery.parse(*change(*resolved()))
    assert "\n" not in str(caught.value)


def test_the_address_dialed_is_ipv4_first_and_never_link_local_ipv6():
    assert discovery.dialable(["2001:db8::5", "192.0.2.9"]) == "192.0.2.9"
    assert discovery.dialable(["fe80::1", "2001:db8::5"]) == "2001:db8::5"
    assert discovery.dialable(["127.0.0.1"]) == "127.0.0.1"
    assert discovery.dialable(["0.0.0.0", "fe80::1"]) is None
