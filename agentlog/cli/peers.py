"""`agentlog peers add|remove|list`: the peer addresses `agentlog serve` dials, and the relays it uses
(nats://HOST:PORT, docs/relay.md)."""

from __future__ import annotations

import json

from agentlog.cli.common import actions, open_home, require_group

RELAY_OPTIONS = ("creds", "user", "password", "tls_ca", "tls_cert", "tls_key", "stream_max_age", "stream_max_mb")


def register(sub, common) -> None:
    peers = actions(sub.add_parser("peers", help="the peers `agentlog serve` dials, and relays"), common)
    c = peers.add_parser("add", help="remember a peer address, or a relay (nats://HOST:PORT) and its options")
    c.add_argument("peer", metavar="HOST:PORT|nats://HOST:PORT")
    r = c.add_argument_group("relay options (nats://HOST:PORT only)")
    r.add_argument("--creds", metavar="FILE", help="a NATS credentials file (kept by path)")
    r.add_argument("--user", metavar="U")
    r.add_argument("--password", metavar="P", help="kept in the home's store; '-' reads it from standard input")
    r.add_argument("--tls-ca", metavar="FILE", help="CA certificate that signs the relay's")
    r.add_argument("--tls-cert", metavar="FILE", help="client certificate, with --tls-key")
    r.add_argument("--tls-key", metavar="FILE")
    r.add_argument("--stream-max-age", metavar="DAYS", type=float, help="how long the relay keeps events (30)")
    r.add_argument("--stream-max-mb", metavar="MB", type=int, help="how much the relay keeps (1024)")
    c.set_defaults(func=cmd_peers_add)
    c = peers.add_parser("remove", help="forget a peer address or a relay")
    c.add_argument("peer", metavar="HOST:PORT|nats://HOST:PORT")
    c.set_defaults(func=cmd_peers_remove)
    c = peers.add_parser("list", help="the remembered peer addresses and relays")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_peers_list)


def cmd_peers_add(args) -> int:
    from agentlog.relay.config import is_relay_address

    if is_relay_address(args.peer):
        return _add_relay(args)
    given = [f"--{name.replace('_', '-')}" for name in RELAY_OPTIONS if getattr(args, name) is not None]
    if given:
        from agentlog.errors import UsageError
        raise UsageError(f"{given[0]} is a relay option: give it with a relay address (nats://HOST:PORT)")
    with open_home(args) as store:
        print(f"added peer {store.peer_book.add(args.peer)}")
    return 0


def _add_relay(args) -> int:
    """Keep a relay and its options; create the group's relay key when the group has none yet."""
    from agentlog.log.kinds import RELAY_SCOPE
    from agentlog.relay.config import RelayConfig
    from agentlog.store import relay

    config = RelayConfig.parse(
        args.peer, creds=_file(args.creds, "--creds"), user=args.user, password=_password(args.password),
        tls_ca=_file(args.tls_ca, "--tls-ca"), tls_cert=_file(args.tls_cert, "--tls-cert"),
        tls_key=_file(args.tls_key, "--tls-key"), stream_max_age_days=args.stream_max_age,
        stream_max_mb=args.stream_max_mb)
    with open_home(args) as store:
        require_group(store)
        created = relay.create_scope(store)
        new = store.peer_book.add_relay(config.address, config.to_doc())
        held = store.relay_keys().current is not None
        readers = len(store.scopes.get(RELAY_SCOPE).readers)
    print(f"{'added' if new else 'updated'} relay {config.address} (auth {config.auth}"
          f"{', tls' if config.tls else ''})")
    if created is not None:
        print(f"created the group's relay key (scope relay), sealed to its {readers} enrolled "
              f"device{'' if readers == 1 else 's'}")
    elif not held:
        print("this device does not hold the relay key yet: a device that does grants it when its `agentlog serve` "
              "runs")
    return 0


def _file(path: str | None, option: str) -> str | None:
    """An option's file as an absolute path, after checking it is a readable file (InvalidValueError)."""
    if path is None:
        return None
    import os
    from pathlib import Path

    from agentlog.errors import InvalidValueError

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file() or not os.access(resolved, os.R_OK):
        raise InvalidValueError(f"{option} {path}: no readable file there")
    return str(resolved)


def _password(value: str | None) -> str | None:
    """--password, or its first line from standard input for '-' (keeps it out of the process list)."""
    if value != "-":
        return value
    import sys

    return sys.stdin.readline().rstrip("\r\n")


def cmd_peers_remove(args) -> int:
    from agentlog.relay.config import is_relay_address, parse_address, relay_address

    is_relay = is_relay_address(args.peer)
    peer = relay_address(*parse_address(args.peer)) if is_relay else args.peer
    with open_home(args) as store:
        print(f"removed {'relay' if is_relay else 'peer'} {store.peer_book.remove(peer)}")
    return 0


def cmd_peers_list(args) -> int:
    from agentlog.relay.config import RelayConfig

    with open_home(args) as store:
        addresses, relays = store.peer_book.addresses(), store.peer_book.relays()
    if args.json:
        print(json.dumps(addresses + list(relays)))
        return 0
    lines = addresses + [RelayConfig.from_doc(address, doc).shown() for address, doc in relays.items()]
    print("\n".join(lines) if lines else "no peers (add one with agentlog peers add HOST:PORT or nats://HOST:PORT)")
    return 0
