"""`agentlog peers add|remove|list`: the peer addresses `agentlog serve` dials."""

from __future__ import annotations

import json

from agentlog.cli.common import actions, open_home


def register(sub, common) -> None:
    peers = actions(sub.add_parser("peers", help="the peers `agentlog serve` dials"), common)
    c = peers.add_parser("add", help="remember a peer address")
    c.add_argument("peer", metavar="HOST:PORT")
    c.set_defaults(func=cmd_peers_add)
    c = peers.add_parser("remove", help="forget a peer address")
    c.add_argument("peer", metavar="HOST:PORT")
    c.set_defaults(func=cmd_peers_remove)
    c = peers.add_parser("list", help="the remembered peer addresses")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_peers_list)


def cmd_peers_add(args) -> int:
    with open_home(args) as store:
        print(f"added peer {store.peer_book.add(args.peer)}")
    return 0


def cmd_peers_remove(args) -> int:
    with open_home(args) as store:
        print(f"removed peer {store.peer_book.remove(args.peer)}")
    return 0


def cmd_peers_list(args) -> int:
    with open_home(args) as store:
        addresses = store.peer_book.addresses()
    if args.json:
        print(json.dumps(addresses))
    else:
        print("\n".join(addresses) if addresses else "no peers (add one with agentlog peers add HOST:PORT)")
    return 0
