"""`agentlog serve` and `agentlog sync`: the background replicator, and one round with a peer.

Both run through blocking entry points of agentlog.sync (serve.run, replicator.sync_once_blocking):
the CLI itself never imports trio.
"""

from __future__ import annotations

import gc
import sys

from agentlog.cli.common import open_home, print_json, require_group, shown
from agentlog.cli.compact import compaction_policy
from agentlog.errors import AgentlogError, PeerError, SnapshotError, StoreError, UsageError


def register(sub, common) -> None:
    c = sub.add_parser("serve", help="run the background replicator: listen, dial peers, stay in sync")
    c.add_argument("--listen", metavar="HOST:PORT", help="accept peers here (port 0: any free port)")
    c.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                   help="also dial this peer, or use this relay (nats://HOST:PORT) (repeat); `agentlog peers add` "
                        "remembers peers")
    c.add_argument("--heartbeat", type=float, default=5.0, metavar="S", help="seconds between heartbeats (default 5)")
    c.add_argument("--compact-events", type=int, default=1_000_000, metavar="N",
                   help="compact when the log holds N events or more (default 1000000; 0: never by count)")
    c.add_argument("--compact-mb", type=float, default=1024.0, metavar="MB",
                   help="compact when the store uses MB megabytes or more (default 1024; 0: never by size)")
    c.add_argument("--horizon", type=float, default=30.0, metavar="DAYS",
                   help="for compaction: leave out devices silent this many days (default 30)")
    c.add_argument("--carry", choices=("all", "readable"),
                   help="what to carry of sealed scopes this device does not read: every payload (all, the "
                        "default) or headers only (readable); kept in the home for every later run and sync")
    c.add_argument("--no-discovery", dest="discovery", action="store_false",
                   help="neither announce this device on the local network nor dial the group's devices found there "
                        "(mDNS, docs/discovery.md)")
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("sync", help="one round with a peer, or with every peer: exchange what each side lacks, "
                                    "then exit")
    c.add_argument("peer", metavar="HOST:PORT", nargs="?",
                   help="a device's address, or a relay's (nats://HOST:PORT: its options from the peer book); none: "
                        "every stored peer and relay, and the group's devices found on the local network")
    c.add_argument("--no-discovery", dest="discovery", action="store_false",
                   help="without an address: only the stored peers, without looking on the local network")
    c.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds in which nothing moved (default 60)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_sync)


def cmd_serve(args) -> int:
    """Started without the cyclic collector, which serve.run enables once it has frozen what startup loaded: its
    passes over the modules being imported cost each start ~17 ms of CPU (the ~2,000 cyclic leftovers of those
    imports are frozen with the rest, once)."""
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _serve(args) -> int:
    from agentlog.relay.config import RelayConfig, is_relay_address
    from agentlog.store.peers import parse_address

    _without_rich()
    from agentlog.sync import serve

    listen = parse_address(args.listen, listen=True) if args.listen else None
    for peer in args.peer:
        RelayConfig.parse(peer) if is_relay_address(peer) else parse_address(peer)
    if args.heartbeat <= 0:
        raise UsageError("--heartbeat must be a positive number of seconds")
    policy = compaction_policy(args)
    with open_home(args) as store:
        require_group(store)
        if listen is None and not args.peer and not store.peer_book.addresses() and not store.peer_book.relays() \
                and not args.discovery:
            raise UsageError("nothing to do with --no-discovery: give --listen HOST:PORT, --peer HOST:PORT, or add "
                             "peers first")
        damage = store.structure_problems()
        if damage:
            raise StoreError(f"{damage[0]} ({len(damage)} problems): run agentlog verify")
        serve.configure_logging()
        if args.carry:
            serve.log.info("carry", mode=args.carry, **store.set_carry(args.carry))
        try:
            serve.run(store, listen, args.peer, args.heartbeat, policy, discovery=args.discovery)
        except (OSError, AgentlogError, BaseExceptionGroup) as exc:
            raise _serve_failure(exc, args.listen) from None
    return 0


def _without_rich() -> None:
    """Keep `rich` out of this process: structlog loads it, when installed, for the console tracebacks it would
    print in development; serve and sync print JSON lines, and loading it cost each start about 45 ms of CPU."""
    sys.modules.setdefault("rich", None)


def _serve_failure(exc: BaseException, listen: str | None) -> AgentlogError:
    """One line for what stopped `serve`: the store, a file it writes, or the listening socket."""
    found = _inner(exc, AgentlogError)
    if found is not None:
        return StoreError(f"serve stopped: {found}") if isinstance(found, StoreError) else found
    failure = _inner(exc, OSError)
    if failure is None:
        raise exc
    if failure.filename:
        return StoreError(f"serve stopped: cannot write {failure.filename}: {failure.strerror or failure}")
    if listen is None:
        return UsageError(f"serve stopped: {failure.strerror or failure}")
    return UsageError(f"cannot listen on {listen}: {failure.strerror or failure}")


def _inner(exc: BaseException, kind: type):
    """The first `kind` exception in `exc` (trio wraps failures in exception groups), or None."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _inner(inner, kind)
            if found is not None:
                return found
    return None


def cmd_sync(args) -> int:
    from agentlog.progress import Progress
    from agentlog.relay.config import is_relay_address
    from agentlog.store.peers import parse_address

    _without_rich()
    from agentlog.sync import replicator, serve

    if args.peer is None:
        return _sync_all(args)
    if is_relay_address(args.peer):
        return _sync_relay(args)
    parse_address(args.peer)
    serve.configure_logging(quiet=True)
    with open_home(args) as store:
        require_group(store)
        before = store.count()
        with Progress("sync", enabled=not args.json) as progress, \
                Progress("snapshot bytes", enabled=not args.json) as snapshot_progress:
            try:
                result = replicator.sync_once_blocking(store, args.peer, timeout=args.timeout,
                                                       progress=progress.update,
                                                       snapshot_progress=snapshot_progress.update)
            except SnapshotError as exc:       # the peer's snapshot did not hold: a peer problem (exit 3)
                raise PeerError(str(exc), args.peer) from None
        doc = {"peer": store.roster().name_of(result.peer), "device": result.peer.hex(), "address": result.address,
               "received": result.received, "sent": result.sent, "events": store.count(),
               "new": store.count() - before, "bootstrapped": result.bootstrapped}
    if args.json:
        print_json(doc)
    else:
        start = "started from its snapshot, " if result.bootstrapped else ""
        print(f"synced with {shown(doc['peer'])} at {doc['address']}: {start}received {doc['received']} events, "
              f"sent {doc['sent']}; this device now holds {doc['events']}")
    return 0


def _sync_relay(args) -> int:
    """`agentlog sync nats://HOST:PORT`: one round with a relay, with the options the peer book keeps for it."""
    from agentlog.relay.config import RelayConfig
    from agentlog.sync import relay_peer, serve

    config = RelayConfig.parse(args.peer)
    serve.configure_logging(quiet=True)
    with open_home(args) as store:
        require_group(store)
        doc = store.peer_book.relays().get(config.address)
        if doc is not None:
            config = RelayConfig.from_doc(config.address, doc)
        before = store.count()
        result = relay_peer.sync_once_blocking(store, config, timeout=args.timeout)
        out = {"relay": result.address, "received": result.received, "sent": result.sent, "skipped": result.skipped,
               "held": result.held, "events": store.count(), "new": store.count() - before,
               "bootstrapped": result.bootstrapped}
    if args.json:
        print_json(out)
    else:
        start = "started from its snapshot, " if out["bootstrapped"] else ""
        skipped = f", skipped {out['skipped']} bad messages" if out["skipped"] else ""
        print(f"synced with relay {out['relay']}: {start}received {out['received']} events, sent {out['sent']}"
              f"{skipped}; this device now holds {out['events']}")
    return 0


def _sync_all(args) -> int:
    """`agentlog sync` with no address: one round with every stored peer and relay and every device found on the
    local network; a line per peer; exit 3 only when none was reached (README, "Exit codes")."""
    from agentlog.relay.config import RelayConfig
    from agentlog.sync import rounds, serve

    serve.configure_logging(quiet=True)
    with open_home(args) as store:
        require_group(store)
        relays = [RelayConfig.from_doc(a, doc) for a, doc in store.peer_book.relays().items()]
        outcomes = rounds.sync_all_blocking(store, relays, timeout=args.timeout, discovery=args.discovery)
        roster, events = store.roster(), store.count()
    docs = [_outcome_doc(o, roster) for o in outcomes]
    reached = [d for d in docs if d["reached"]]
    if args.json:
        print_json({"peers": docs, "reached": len(reached), "events": events})
    else:
        for d in docs:
            print(_outcome_line(d))
        if docs:
            print(f"reached {len(reached)} of {len(docs)}; this device now holds {events} events")
    if not reached:
        where = "" if args.discovery else " (discovery off)"
        raise PeerError("no peer reached" if docs else f"no peer to sync with: none stored (agentlog peers add "
                        f"HOST:PORT) and none found on the local network{where}")
    return 0


def _outcome_doc(o, roster) -> dict:
    r = o.result
    doc = {"address": o.address, "kind": o.kind, "reached": r is not None, "error": o.error}
    if r is not None:
        device = getattr(r, "peer", None)
        doc.update(peer=roster.name_of(device) if device else "relay", device=device.hex() if device else None,
                   received=r.received, sent=r.sent, bootstrapped=r.bootstrapped)
    return doc


def _outcome_line(d: dict) -> str:
    where = f"{d['address']}{' (found on the network)' if d['kind'] == 'discovered' else ''}"
    if not d["reached"]:
        return f"not reached {where}: {d['error']}" if d["kind"] != "discovery" else d["error"]
    start = "started from its snapshot, " if d["bootstrapped"] else ""
    return f"synced with {shown(d['peer'])} at {where}: {start}received {d['received']} events, sent {d['sent']}"
