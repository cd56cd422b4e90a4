"""The `agentlog` command line. Errors print one line and exit non-zero; never a traceback
for user mistakes or bad data."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from . import devices, home, payloads
from .errors import AgentlogError, UsageError
from .progress import Progress
from .verify import verify_store

EXIT_PROBLEMS = 1
EXIT_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.func(args) or 0
    except AgentlogError as exc:
        print(f"agentlog: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("agentlog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, like every other error."""

    def error(self, message: str):
        print(f"agentlog: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def _parser() -> argparse.ArgumentParser:
    home_help = "device home (default: $AGENTLOG_HOME or ~/.local/share/agentlog)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    p = _Parser(prog="agentlog", description="Signed, hash-chained event logs for one agent across devices.")
    p.add_argument("--home", help=home_help)
    sub = p.add_subparsers(metavar="COMMAND", parser_class=_Parser)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[common], **k)

    c = sub.add_parser("init", help="create this device's home and key, and a new group (or wait to --join one)")
    c.add_argument("--name", required=True, help="this device's name, e.g. laptop")
    c.add_argument("--join", action="store_true", help="do not create a group; print the device id to enrol elsewhere")
    c.set_defaults(func=cmd_init)

    d = sub.add_parser("devices", help="enrol, join, list and revoke devices").add_subparsers(metavar="ACTION", parser_class=_Parser)
    _add_device = d.add_parser
    d.add_parser = lambda *a, **k: _add_device(*a, parents=[common], **k)
    c = d.add_parser("add", help="enrol a new device and print its join token")
    c.add_argument("device_id")
    c.add_argument("--name", required=True)
    c.set_defaults(func=cmd_devices_add)
    c = d.add_parser("join", help="join the group with a token from an enrolled device")
    c.add_argument("token")
    c.set_defaults(func=cmd_devices_join)
    c = d.add_parser("list", help="list the group's devices")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_devices_list)
    c = d.add_parser("revoke", help="stop accepting a device's future events")
    c.add_argument("device", metavar="NAME|ID")
    c.add_argument("--reason", default="")
    c.set_defaults(func=cmd_devices_revoke)

    c = sub.add_parser("observe", help="record an observation of a setting's value")
    c.add_argument("setting")
    c.add_argument("value")
    c.add_argument("--context", action="append", default=[], metavar="K=V")
    c.add_argument("--weight", type=float, default=1.0)
    c.set_defaults(func=cmd_observe)

    c = sub.add_parser("log", help="list events")
    c.add_argument("--author", metavar="NAME|ID")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_log)

    c = sub.add_parser("verify", help="re-check every stored event")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_verify)

    c = sub.add_parser("status", help="this device, its group and what it holds")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_status)
    return p


def cmd_init(args) -> int:
    store = home.create(args.home, args.name)
    with store:
        if args.join:
            print(store.device.hex())
            print(f"device {args.name!r} created at {home.resolve(args.home)}; on an enrolled device run:\n"
                  f"  agentlog devices add {store.device.hex()} --name {args.name}", file=sys.stderr)
        else:
            store.create_group(args.name)
            print(f"created group {store.group.hex()[:16]} with device {args.name!r} ({store.device.hex()[:16]})")
    return 0


def cmd_devices_add(args) -> int:
    device = devices.parse_device_id(args.device_id)
    with home.open_home(args.home) as store:
        print(devices.enroll(store, device, args.name))
    return 0


def cmd_devices_join(args) -> int:
    with home.open_home(args.home) as store:
        enrolment = devices.join(store, args.token)
        print(f"joined group {store.group.hex()[:16]} as {enrolment.name!r}")
    return 0


def cmd_devices_list(args) -> int:
    with home.open_home(args.home) as store:
        roster, heads = store.roster(), store.heads()
        rows = []
        for m in sorted(roster.enrolled_members(), key=lambda m: (m.name, m.device)):
            head = heads.get(m.device)
            rows.append({
                "name": m.name, "id": m.device.hex(), "this_device": m.device == store.device,
                "founder": m.device == roster.founder, "enrolled_by": roster.name_of(m.enrolled_by[0].author),
                "enrolled_at": {"author": m.enrolled_by[0].author.hex(), "seq": m.enrolled_by[0].seq},
                "status": "active" if m.active else "revoked", "until_seq": m.until_seq, "seq": head.seq if head else 0,
            })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        status = r["status"] if r["until_seq"] is None else f"revoked after seq {r['until_seq']}"
        mark = "*" if r["this_device"] else " "
        print(f"{mark} {r['name']:<16} {r['id'][:16]}  seq {r['seq']:<8} {status:<24} "
              f"enrolled by {r['enrolled_by']} at its seq {r['enrolled_at']['seq']}")
    return 0


def cmd_devices_revoke(args) -> int:
    with home.open_home(args.home) as store:
        revoked = devices.revoke(store, args.device, args.reason)
        print(f"revoked {store.roster().name_of(revoked.device)!r}: events after its seq {revoked.until_seq} will be refused")
    return 0


def cmd_observe(args) -> int:
    if not 0 <= args.weight <= 1_000_000:
        raise UsageError("--weight must be between 0 and 1000000")
    payload = payloads.Observation(setting=args.setting, value=args.value, context=_context(args.context),
                                   weight_milli=round(args.weight * 1000))
    with home.open_home(args.home) as store:
        print(store.append(payload).hex())
    return 0


def _context(pairs: list[str]) -> payloads.Context:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--context {pair!r} must look like key=value")
        out[key] = value
    return tuple(sorted(out.items()))


def cmd_log(args) -> int:
    with home.open_home(args.home) as store:
        roster = store.roster()
        author = None
        if args.author:
            member = roster.find(args.author)
            if member is None:
                raise UsageError(f"no device is named or has id {args.author!r}: see `agentlog devices list`")
            author = member.device
        rows = [{
            "author": roster.name_of(e.header.author), "author_id": e.header.author.hex(), "seq": e.header.seq,
            "kind": e.header.kind, "scope": e.header.scope, "time": _iso(e.header.time_ms), "id": e.id.hex(),
        } for e in store.events(author)]
    rows.sort(key=lambda r: (r["time"], r["author_id"], r["seq"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['time']}  {r['author']:<12} {r['seq']:>6}  {r['kind']:<14} {r['scope']:<10} {r['id'][:16]}")
    return 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cmd_verify(args) -> int:
    with home.open_home(args.home) as store:
        with Progress("verify", enabled=not args.json) as progress:
            report = verify_store(store, progress.update)
        roster = store.roster()
    if args.json:
        print(json.dumps({
            "ok": report.ok, "checked": report.checked,
            "problems": [{"author": p.author.hex(), "seq": p.seq, "problem": p.what} for p in report.problems],
            "forks": [{"author": p.author.hex(), "seq": p.seq} for p in report.forks],
            "after_revocation": [{"author": p.author.hex(), "seq": p.seq, "note": p.what} for p in report.after_revocation],
        }, indent=2))
    else:
        for p in report.problems:
            print(p.line(roster))
        for p in report.forks + report.after_revocation:
            print(f"warning: {p.line(roster)}")
        n = len(report.problems)
        print(f"{report.checked} events checked, {n} problem{'' if n == 1 else 's'}", file=sys.stderr)
    return 0 if report.ok else EXIT_PROBLEMS


def cmd_status(args) -> int:
    with home.open_home(args.home) as store:
        roster, heads = store.roster(), store.heads()
        doc = {
            "device": store.device.hex(), "name": store.name, "home": str(home.resolve(args.home)),
            "group": store.group.hex() if store.group else None, "events": store.count(),
            "heads": {roster.name_of(a): {"id": a.hex(), "epoch": h.epoch, "seq": h.seq} for a, h in sorted(heads.items())},
            "forks": [{"author": f.author.hex(), "epoch": f.epoch, "seq": f.seq} for f in store.forks()],
            "views": {name: {"version": v["version"], "digest": v["digest"].hex(),
                             "frontier": {roster.name_of(a): seq for a, seq in sorted(v["frontier"].items())}}
                      for name, v in store.views().items()},
        }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"device {doc['name']} ({doc['device'][:16]}) in group {(doc['group'] or 'none (not joined yet)')[:16]}")
    print(f"{doc['events']} events")
    for name, h in doc["heads"].items():
        print(f"  {name:<16} seq {h['seq']}")
    for f in doc["forks"]:
        print(f"  fork: {f['author'][:16]} seq {f['seq']}")
    for name, v in doc["views"].items():
        print(f"view {name} v{v['version']} digest {v['digest'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
