"""`agentlog log` and `agentlog verify`: list the events this device holds, and re-check every one."""

from __future__ import annotations

import sys

from agentlog.cli.common import LINE_LIMIT, iso, open_home, print_json, shown
from agentlog.cli.exits import EXIT_PROBLEMS
from agentlog.errors import NotFoundError


def register(sub, common) -> None:
    c = sub.add_parser("log", help="list events")
    c.add_argument("--author", metavar="NAME|ID")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_log)

    c = sub.add_parser("verify", help="re-check every stored event")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_verify)


def cmd_log(args) -> int:
    with open_home(args) as store:
        roster = store.roster()
        author = None
        if args.author:
            member = roster.find(args.author)
            if member is None:
                raise NotFoundError(f"no device is named or has id {args.author!r}: see `agentlog devices list`")
            author = member.device
        rows = [{
            "author": roster.name_of(e.header.author), "author_id": e.header.author.hex(), "seq": e.header.seq,
            "kind": e.header.kind, "scope": e.header.scope, "time": iso(e.header.time_ms), "id": e.id.hex(),
        } for e in store.events(author)]
    rows.sort(key=lambda r: (r["time"], r["author_id"], r["seq"]))
    if args.json:
        print_json(rows)
        return 0
    for r in shown(rows):
        print(f"{r['time']}  {r['author']:<12} {r['seq']:>6}  {r['kind']:<14} {r['scope']:<10} {r['id'][:16]}")
    return 0


def cmd_verify(args) -> int:
    from agentlog.progress import Progress
    from agentlog.store.verify import verify_store

    with open_home(args) as store:
        with Progress("verify", enabled=not args.json) as progress:
            report = verify_store(store, progress.update)
        roster = None if report.damage else store.roster()     # a damaged file may not read
    if args.json:
        print_json(_verify_doc(report))
        return 0 if report.ok else EXIT_PROBLEMS
    for line in report.damage:
        print(line)
    for p in report.problems:
        print(shown(p.line(roster), LINE_LIMIT))
    for p in report.forks + report.after_revocation + report.bad_signatures + report.withheld:
        print(f"warning: {shown(p.line(roster), LINE_LIMIT)}")
    for note in report.notes:
        print(f"note: {note}")
    n = len(report.problems) + len(report.damage)
    runs = len(report.withheld)
    missing = f", {runs} run{'' if runs == 1 else 's'} of payloads missing" if report.withheld else ""
    print(f"{report.checked} events checked, {n} problem{'' if n == 1 else 's'}{missing}", file=sys.stderr)
    return 0 if report.ok else EXIT_PROBLEMS


def _verify_doc(report) -> dict:
    """What `agentlog verify --json` prints."""
    return {
        "ok": report.ok, "checked": report.checked,
        "problems": [{"author": p.author.hex(), "seq": p.seq, "problem": p.what} for p in report.problems],
        "forks": [{"author": p.author.hex(), "seq": p.seq} for p in report.forks],
        "after_revocation": [{"author": p.author.hex(), "seq": p.seq, "note": p.what} for p in report.after_revocation],
        "withheld": [{"author": p.author.hex(), "seq": p.seq, "note": p.what} for p in report.withheld],
        "uncarried": report.uncarried,
        "damaged_signatures": [{"author": p.author.hex(), "seq": p.seq, "last": p.last, "signed": p.signed,
                                "peer": p.peer.hex() if p.peer else None} for p in report.bad_signatures],
        "damage": report.damage, "notes": report.notes,
    }
