"""A relay's address and options: the forms accepted, each refusal in one line naming what is wrong, and the
peer book's document round trip."""

from __future__ import annotations

import pytest

from agentlog.errors import InvalidValueError
from agentlog.relay.config import RelayConfig, is_relay_address, parse_address


@pytest.mark.parametrize(("text", "expected"), [
    ("nats://127.0.0.1:4222", ("127.0.0.1", 4222)),
    ("  NATS://Relay.Example.org:14222 ", ("relay.example.org", 14222)),
    ("nats://relay", ("relay", 4222)),
    ("nats://[::1]:5000", ("::1", 5000)),
    ("nats://[fe80::1]", ("fe80::1", 4222)),
])
def test_addresses_accepted(text, expected):
    assert parse_address(text) == expected
    assert is_relay_address(text)


@pytest.mark.parametrize(("text", "why"), [
    ("127.0.0.1:4222", "must start with nats://"),
    ("tls://127.0.0.1:4222", "must start with nats://"),
    ("nats://", "nothing after the port"),
    ("nats://host:0", "port '0'"),
    ("nats://host:70000", "port '70000'"),
    ("nats://host:42x", "port '42x'"),
    ("nats://host:4222/path", "nothing after the port"),
    ("nats://host:4222?x=1", "nothing after the port"),
    ("nats://bad_host:4222", "not a host name"),
    ("nats://-host:4222", "not a host name"),
    ("nats://[::1:4222", "bracketed IPv6"),
    ("nats://[nothex]:4222", "bracketed IPv6"),
])
def test_addresses_refused_naming_why(text, why):
    with pytest.raises(InvalidValueError) as caught:
        parse_address(text)
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_credentials_in_the_url_are_refused_and_not_echoed():
    with pytest.raises(InvalidValueError) as caught:
        parse_address("nats://alice:s3cret-pw@relay:4222")
    assert "--creds" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_defaults_and_document_round_trip():
    c = RelayConfig.parse("nats://relay:4222", user="alice", password="pw", tls_ca="/etc/ca.pem",
                          stream_max_age_days=2.5, stream_max_mb=64)
    assert c.address == "nats://relay:4222" and c.auth == "user alice" and c.tls
    assert c.max_age_seconds == 2.5 * 86_400 and c.max_bytes == 64 << 20
    assert RelayConfig.from_doc(c.address, c.to_doc()) == c
    assert "pw" not in repr(c) and "pw" not in c.shown()
    bare = RelayConfig.parse("nats://[::1]")
    assert bare.address == "nats://[::1]:4222" and bare.auth == "none" and not bare.tls
    assert RelayConfig.from_doc(bare.address, {}) == bare
    with pytest.raises(AttributeError):                   # frozen
        c.port = 1


@pytest.mark.parametrize(("options", "why"), [
    ({"creds": "/x.creds", "user": "u", "password": "p"}, "either --creds FILE or --user U --password P"),
    ({"user": "u"}, "--user and --password go together"),
    ({"password": "p"}, "--user and --password go together"),
    ({"tls_cert": "/c.pem"}, "--tls-cert and --tls-key go together"),
    ({"stream_max_age_days": 0}, "--stream-max-age"),
    ({"stream_max_age_days": 4000}, "--stream-max-age"),
    ({"stream_max_mb": 0}, "--stream-max-mb"),
    ({"stream_max_mb": 1.5}, "--stream-max-mb"),
    ({"user": "a\nb", "password": "p"}, "--user must be a user name"),
    ({"creds": ""}, "--creds must be a file path"),
    ({"color": "blue"}, "unknown relay option 'color'"),
])
def test_options_refused_naming_the_option(options, why):
    with pytest.raises(InvalidValueError) as caught:
        RelayConfig.parse("nats://relay:4222", **options)
    assert why in str(caught.value)


def test_a_damaged_peer_book_entry_names_the_entry():
    with pytest.raises(InvalidValueError) as caught:
        RelayConfig.from_doc("nats://relay:4222", {"stream_max_mb": "lots"})
    assert "peer book's entry for relay nats://relay:4222" in str(caught.value)
    with pytest.raises(InvalidValueError):
        RelayConfig.from_doc("nats://relay:4222", ["not", "a", "doc"])
