"""`agentlog audit export|verify|ledger`: the history for a privacy review, an export checked on its
own, and the replication ledger (what left this device to which peer, what arrived from which)."""

from __future__ import annotations

import sys
from datetime import UTC

from agentlog.cli.common import LINE_LIMIT, actions, iso, open_home, print_json, shown
from agentlog.cli.exits import EXIT_PROBLEMS
from agentlog.errors import UsageError


def register(sub, common) -> None:
    audit = actions(sub.add_parser("audit", help="export the history for a privacy review, verify an export"), common)
    c = audit.add_parser("export", help="every event, the roster, forks, compaction and the replication ledger: "
                                        "JSON Lines plus an HTML report")
    c.add_argument("--out", required=True, metavar="FILE", help="the JSON Lines file to write")
    c.add_argument("--html", metavar="FILE", help="the HTML report (default: FILE with .html)")
    c.add_argument("--since", metavar="TIME", help="events at or after TIME (ISO 8601, UTC unless it says)")
    c.add_argument("--until", metavar="TIME", help="events before TIME")
    c.add_argument("--scope", action="append", metavar="SCOPE", help="only this scope (repeat; device:* for a prefix)")
    c.add_argument("--redact-content", action="store_true", help="leave out payloads and content (hashes stay)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_audit_export)
    c = audit.add_parser("verify", help="check an export on its own: signatures, chains, completeness")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_audit_verify)
    c = audit.add_parser("ledger", help="what left this device to which peer, and what arrived from which")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_audit_ledger)


def _time_ms(text: str | None, option: str) -> int | None:
    from datetime import datetime

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time "
                         "(for example 2026-11-01 or 2026-11-01T08:00Z)") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_audit_export(args) -> int:
    from pathlib import Path

    from agentlog.audit.export import Selection, export
    from agentlog.audit.html import render
    from agentlog.progress import Progress

    out = Path(args.out)
    html = Path(args.html) if args.html else out.with_suffix(".html")
    if html == out:
        raise UsageError("--html names the same file as --out")
    selection = Selection(_time_ms(args.since, "--since"), _time_ms(args.until, "--until"),
                          tuple(args.scope) if args.scope else None, args.redact_content)
    with open_home(args) as store:
        try:
            with open(out, "wb") as f, Progress("export", enabled=not args.json) as progress:
                summary = export(store, f, selection, progress.update)
            html.write_text(render(summary), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the export: {exc.strerror or exc} ({exc.filename or out})") from None
    doc = {"out": str(out), "html": str(html), "events": summary.events, "lines": summary.lines,
           "digest": summary.digest.hex()}
    if args.json:
        print_json(doc)
    else:
        print(f"{summary.events} events in {summary.lines} lines to {out}; report {html}; digest {doc['digest'][:16]}")
    return 0


def cmd_audit_verify(args) -> int:
    from agentlog.audit.verify import verify_file
    from agentlog.progress import Progress

    try:
        with Progress("verify", enabled=not args.json) as progress:
            report = verify_file(args.file, progress.update)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if args.json:
        print_json({"ok": report.ok, "events": report.events, "lines": report.lines, "problems": report.problems})
    else:
        for problem in report.problems:
            print(shown(problem, LINE_LIMIT))
        n = len(report.problems)
        print(f"{report.events} events in {report.lines} lines checked, {n} problem{'' if n == 1 else 's'}",
              file=sys.stderr)
    return 0 if report.ok else EXIT_PROBLEMS


def cmd_audit_ledger(args) -> int:
    from agentlog.store.ledger import Ledger
    from agentlog.sync.relay_log import peer_id

    with open_home(args) as store:
        roster, book = store.roster(), Ledger(store)
        relays = {peer_id(address): f"relay {address}" for address in store.peer_book.relays()}
        rows = [{"direction": direction, "peer": relays.get(r.peer) or roster.name_of(r.peer), "peer_id": r.peer.hex(),
                 "author": roster.name_of(r.author), "author_id": r.author.hex(), "epoch": r.epoch, "lo": r.lo,
                 "hi": r.hi, "first": iso(r.first_ms), "last": iso(r.last_ms)}
                for direction, found in (("sent", book.sent()), ("received", book.received())) for r in found]
    if args.json:
        print_json(rows)
        return 0
    for r in shown(rows):
        arrow = "to" if r["direction"] == "sent" else "from"
        print(f"{r['direction']:<8} {arrow:<4} {r['peer']:<12} {r['author']:<12} seq {r['lo']}..{r['hi']}  "
              f"{r['first']} .. {r['last']}")
    return 0
