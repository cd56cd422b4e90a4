"""`agentlog devices invite` and `agentlog join`: pairing a new device with a short one-time code
(docs/pairing.md). The id-and-token path (`devices add`, `devices join`) stays for scripts."""

from __future__ import annotations

import json
import sys

from agentlog.cli.common import home_path, open_home, require_group, shown
from agentlog.errors import UsageError

DEFAULT_TTL_S = 300
FIND_S = 10.0


def register_invite(d) -> None:
    """`devices invite`, a subcommand of the `devices` group `d`."""
    c = d.add_parser("invite", help="print a one-time code that enrols a new device (agentlog join CODE) and wait")
    c.add_argument("--name", required=True, help="the new device's name, e.g. phone")
    c.add_argument("--scopes", metavar="A,B",
                   help="sealed scopes it may read from the start (this device must read them)")
    c.add_argument("--ttl", type=float, default=DEFAULT_TTL_S, metavar="S",
                   help=f"seconds the code stays valid (default {DEFAULT_TTL_S})")
    c.add_argument("--listen", metavar="HOST:PORT",
                   help="answer the joiner here (default: a running `serve` of this home answers, else 0.0.0.0:0)")
    c.add_argument("--no-discovery", action="store_true",
                   help="do not announce the invite's slot on the local network (mDNS); the joiner then needs --to")
    c.add_argument("--json", action="store_true", help="one JSON line when the code is ready, one when it ended")
    c.set_defaults(func=cmd_devices_invite)


def register(sub, common) -> None:
    c = sub.add_parser("join", help="join a group with the code `agentlog devices invite` printed (creates the home)")
    c.add_argument("code", help="the code, e.g. 7-maple-river-stone")
    c.add_argument("--to", metavar="HOST:PORT",
                   help="the address the inviter printed (default: find the invite on the local network, mDNS)")
    c.add_argument("--name", help="the name this device asks for (the invite's --name must agree)")
    c.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up the first sync after S seconds in which nothing moved (default 60)")
    c.set_defaults(func=cmd_join)


def cmd_devices_invite(args) -> int:
    from agentlog.cli.scopes import scope_names
    from agentlog.store import devices, invites
    from agentlog.store.backup import serving
    from agentlog.store.peers import parse_address
    from agentlog.sync import pair_net, serve

    listen = parse_address(args.listen, listen=True) if args.listen else None
    scopes = scope_names(args.scopes) if args.scopes is not None else []
    serve.configure_logging(quiet=True)
    with open_home(args) as store:
        require_group(store)
        devices.check_new_name(store, args.name)
        for scope in scopes:
            devices.check_grantable(store, scope)
        served = invites.serve_address(store.path) if listen is None and serving(home_path(args)) else None
        if served is None and listen is None:
            listen = ("0.0.0.0", 0)
        slot, code = invites.create(store, args.name, scopes, args.ttl)
        try:
            if served is not None:
                _ready(args, code, served, "agentlog serve answers at")
            doc = pair_net.wait_for_join(
                store, slot, args.ttl, listen,
                on_listening=lambda addr: _ready(args, code, addr, "listening on"),
                on_failed=lambda d: _say(args, {"event": "failed", "reason": d["reason"], "tries_left": d["tries"]},
                                         f"a try failed ({shown(d['reason'])}); {_tries(d)}"),
                served=served, discovery=not args.no_discovery)
        finally:
            invites.remove(store, slot)
    if doc["state"] != "joined":
        raise UsageError(f"invite {slot} for {args.name!r} ended without a join: {doc['reason']}")
    _say(args, {"event": "joined", "name": args.name, "device": doc["device"]},
         f"{shown(args.name)!r} joined ({doc['device'][:16]})")
    return 0


def _tries(doc: dict) -> str:
    n = doc["tries"] if doc["state"] == "pending" else 0
    return f"{n} {'try' if n == 1 else 'tries'} left"


def _ready(args, code: str, addr: str, where: str) -> None:
    """The code and where to join, once something answers there; a QR code too on a terminal wide enough."""
    _say(args, {"event": "ready", "code": code, "address": addr, "ttl_s": args.ttl},
         f"code {code}\n{where} {addr}\non the new device: agentlog join {code} --to {addr}")
    if not args.json and sys.stdout.isatty():
        _qr(f"agentlog:join?code={code}&to={addr}")


def _qr(text: str) -> None:
    """The QR code of `text` in the terminal (half-height blocks), when it fits."""
    import shutil

    import segno

    qr = segno.make(text, error="m")
    width, height = qr.symbol_size(border=2)
    columns, lines = shutil.get_terminal_size()
    if width <= columns and (height + 1) // 2 <= lines:
        qr.terminal(out=sys.stdout, border=2, compact=True)
        sys.stdout.flush()


def _say(args, doc: dict, line: str) -> None:
    print(json.dumps(doc) if args.json else line, flush=True)


def cmd_join(args) -> int:
    from agentlog import pair_code
    from agentlog.crypto import DeviceKey
    from agentlog.store import devices, home
    from agentlog.store.peers import address, parse_address
    from agentlog.sync import pair_net, replicator, serve

    slot, secret = pair_code.parse(args.code)
    targets = [parse_address(args.to)] if args.to else None
    path = home.resolve(args.home)
    existing = (path / home.KEY_FILE).exists()
    if existing:
        with home.open_home(args.home) as store:
            if store.group is not None:
                raise UsageError(f"{path} already belongs to a group: join with another --home")
            key = store.key
    elif path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a directory: give --home a directory")
    else:
        key = DeviceKey.generate()          # the home is created only once the inviter proved the code
    made = []

    def keep_key(joiner) -> None:
        """Once the inviter proved the code: the home, so a device enrolled with this key can use it."""
        if not existing and not made:
            made.append(home.create(args.home, args.name or "joining", key=key))

    serve.configure_logging(quiet=True)
    if targets is None:
        targets = pair_net.find_inviters(slot, FIND_S)
        if not targets:
            raise UsageError(f"no invite {slot} announced on the local network within {FIND_S:g} s: give --to "
                             "HOST:PORT, the address `agentlog devices invite` printed")
    try:
        joiner, (host, port) = _join_first(targets, key, slot, secret, args.name or "", keep_key)
    finally:
        for store in made:
            store.close()
    with home.open_home(args.home) as store:
        enrolment = devices.join(store, joiner.token, inviter=joiner.inviter)
        if joiner.serving:
            store.peer_book.add(address(host, port))
        print(f"joined group {store.group.hex()[:16]} as '{shown(enrolment.name)}'", flush=True)
        result = replicator.sync_once_blocking(store, address(host, port), timeout=args.timeout)
        print(f"synced with {shown(store.roster().name_of(result.peer))}: received {result.received} events"
              + (f"; kept {address(host, port)} as a peer" if joiner.serving else ""))
    return 0


def _join_first(targets: list[tuple[str, int]], key, slot: int, secret: bytes, name: str, keep_key):
    """Pair with the first of `targets` that knows the code; (the finished joiner, its address). Discovery may
    find more than one invite with this slot on a network: each other one answers "wrong code" and loses
    one try, having learnt nothing of the code."""
    from agentlog.errors import PeerRefused
    from agentlog.sync import pair_net
    from agentlog.sync.pairing import WRONG_CODE

    *others, last = targets
    for host, port in others:
        try:
            return pair_net.join(key, slot, secret, name, host, port, keep_key), (host, port)
        except PeerRefused as exc:
            if not exc.reason.startswith(WRONG_CODE):
                raise
    return pair_net.join(key, slot, secret, name, *last, keep_key), last
