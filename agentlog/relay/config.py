"""A relay's address and options (`agentlog peers add nats://HOST:PORT ...`) as one checked, frozen RelayConfig.
Pure: file paths are taken as given (the CLI resolves them and checks that they exist).

In the peer book a relay is its address ("nats://HOST:PORT") and the document `to_doc` gives; a password
kept there lives in the home's store (docs/relay.md, "Setup").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from agentlog.errors import InvalidValueError

SCHEME = "nats://"
DEFAULT_PORT = 4222
DEFAULT_MAX_AGE_DAYS = 30.0
DEFAULT_MAX_MB = 1024
MAX_AGE_DAYS = 3650.0
MAX_MB = 1 << 20                     # 1 TiB
MAX_NAME = 256                       # characters of a user name or file path
MAX_PASSWORD = 1024
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_EXAMPLE = "for example nats://127.0.0.1:4222"


def is_relay_address(text: str) -> bool:
    """Whether a peer given on the command line names a relay (nats://...) rather than a device (HOST:PORT)."""
    return isinstance(text, str) and text.strip().lower().startswith(SCHEME)


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of "nats://HOST[:PORT]" (port 4222 when left out); InvalidValueError naming what is wrong.
    Credentials, paths and queries in the URL are refused: they have options of their own."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw.lower().startswith(SCHEME):
        raise InvalidValueError(f"relay address {text!r} must start with {SCHEME} ({_EXAMPLE})")
    rest = raw[len(SCHEME):]
    if "@" in rest:
        raise InvalidValueError(f"relay address {_redacted(raw)!r} holds credentials: give them with --creds FILE "
                                "or --user U --password P, never in the address")
    if any(c in rest for c in "/?#") or not rest:
        raise InvalidValueError(f"relay address {raw!r} must be nats://HOST:PORT, nothing after the port "
                                f"({_EXAMPLE})")
    if rest.startswith("["):
        host, close, after = rest[1:].partition("]")
        if not close or not _IPV6.fullmatch(host) or ":" not in host or (after and not after.startswith(":")):
            raise InvalidValueError(f"relay address {raw!r}: {host!r} is not a bracketed IPv6 address")
        port_text = after[1:] if after else None
    else:
        host, sep, port_text = rest.partition(":")
        port_text = port_text if sep else None
        if not _HOST.fullmatch(host) or len(host) > 253:
            raise InvalidValueError(f"relay address {raw!r}: {host!r} is not a host name or IP address")
    if port_text is None:
        return host.lower(), DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) < 65536:
        raise InvalidValueError(f"relay address {raw!r}: port {port_text!r} is not a number from 1 to 65535")
    return host.lower(), int(port_text)


def relay_address(host: str, port: int) -> str:
    """The canonical address the peer book keys a relay by."""
    return f"{SCHEME}[{host}]:{port}" if ":" in host else f"{SCHEME}{host}:{port}"


def _redacted(raw: str) -> str:
    """An address with whatever precedes an "@" hidden, for an error line."""
    rest = raw[len(SCHEME):]
    return SCHEME + "***@" + rest.rpartition("@")[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """A relay peer: where it is, how this device authenticates (a creds file, or user and password, or
    neither), the TLS files it trusts and presents, and the bounds of the group's stream when this device
    creates it."""

    host: str
    port: int
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    stream_max_age_days: float = DEFAULT_MAX_AGE_DAYS
    stream_max_mb: int = DEFAULT_MAX_MB

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def parse(cls, address: str, **options) -> RelayConfig:
        """A checked config from an address and options named like the fields (None: left out)."""
        host, port = parse_address(address)
        unknown = set(options) - {f.name for f in fields(cls)} - {"host", "port"}
        if unknown:
            raise InvalidValueError(f"unknown relay option {sorted(unknown)[0]!r}")
        given = {k: v for k, v in options.items() if v is not None}
        return cls(host=host, port=port, **given)

    @property
    def address(self) -> str:
        return relay_address(self.host, self.port)

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    @property
    def max_age_seconds(self) -> float:
        return self.stream_max_age_days * 86_400

    @property
    def max_bytes(self) -> int:
        return self.stream_max_mb * 1024 * 1024

    @property
    def auth(self) -> str:
        """How this device authenticates, without the secret: "creds FILE", "user NAME" or "none"."""
        return f"creds {self.creds}" if self.creds else f"user {self.user}" if self.user else "none"

    def to_doc(self) -> dict:
        """The peer book's document for this relay: every option but the address, which keys it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("host", "port")}

    @classmethod
    def from_doc(cls, address: str, doc) -> RelayConfig:
        """The config the peer book holds for `address` (missing options: defaults); InvalidValueError naming the
        entry when it was damaged."""
        if not isinstance(doc, dict):
            raise InvalidValueError(f"the peer book's entry for relay {address} is not a document")
        try:
            return cls.parse(address, **doc)
        except InvalidValueError as exc:
            raise InvalidValueError(f"the peer book's entry for relay {address}: {exc}") from None

    def shown(self) -> str:
        """One line for `agentlog peers list`: address, authentication, TLS and stream bounds (no password)."""
        tls = " tls" if self.tls else ""
        return (f"{self.address}  relay, auth {self.auth}{tls}, stream {self.stream_max_age_days:g} days / "
                f"{self.stream_max_mb} MB")

    def __repr__(self) -> str:
        hidden = "***" if self.password is not None else None
        return f"RelayConfig({self.address}, auth={self.auth!r}, password={hidden}, tls={self.tls})"


def _check(c: RelayConfig) -> None:
    """Raise InvalidValueError for the first option that cannot be used, naming it."""
    if not isinstance(c.host, str) or not c.host or not isinstance(c.port, int) or not 1 <= c.port < 65536:
        raise InvalidValueError("relay needs a host and a port from 1 to 65535")
    for name in ("creds", "tls_ca", "tls_cert", "tls_key"):
        _check_text(f"--{name.replace('_', '-')}", getattr(c, name), MAX_NAME, "a file path")
    _check_text("--user", c.user, MAX_NAME, "a user name")
    _check_text("--password", c.password, MAX_PASSWORD, "a password")
    if c.creds and (c.user or c.password):
        raise InvalidValueError("give either --creds FILE or --user U --password P, not both")
    if (c.user is None) != (c.password is None):
        raise InvalidValueError("--user and --password go together: give both or neither")
    if (c.tls_cert is None) != (c.tls_key is None):
        raise InvalidValueError("--tls-cert and --tls-key go together: give both or neither")
    age = c.stream_max_age_days
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 < age <= MAX_AGE_DAYS:
        raise InvalidValueError(f"--stream-max-age must be a number of days above 0 and at most {MAX_AGE_DAYS:g}")
    mb = c.stream_max_mb
    if isinstance(mb, bool) or not isinstance(mb, int) or not 1 <= mb <= MAX_MB:
        raise InvalidValueError(f"--stream-max-mb must be a whole number of megabytes from 1 to {MAX_MB}")


def _check_text(option: str, value, limit: int, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidValueError(f"{option} must be {what}: 1 to {limit} printable characters")
