"""`agentlog log`, `agentlog log show` and `agentlog verify`: list the events this device holds, show one (an erased
one as erased: by which request, whose, when, why), and re-check every one."""

from __future__ import annotations

import json
import sys

from agentlog.cli.common import LINE_LIMIT, Parser, open_home, print_json, shown
from agentlog.cli.exits import EXIT_PROBLEMS
from agentlog.errors import NotFoundError, StoreError


def register(sub, common) -> None:
    c = sub.add_parser("log", help="list events; `log show EVENT_ID` shows one")
    c.add_argument("--author", metavar="NAME|ID")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_log)
    show = c.add_subparsers(metavar="show", parser_class=Parser).add_parser(
        "show", parents=[common], help="one event: its signed header and content, or who erased it and why")
    show.add_argument("id", metavar="EVENT_ID", help="64 hex digits, as `agentlog log --json` prints")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_log_show)

    c = sub.add_parser("verify", help="re-check every stored event")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_verify)


def cmd_log(args) -> int:
    from agentlog.documents import event_doc

    with open_home(args) as store:
        roster = store.roster()
        author = None
        if args.author:
            member = roster.find(args.author)
            if member is None:
                raise NotFoundError(f"no device is named or has id {args.author!r}: see `agentlog devices list`")
            author = member.device
        rows = [event_doc(store, e, roster) for e in store.events(author)]
    rows.sort(key=lambda r: (r["time"], r["author_id"], r["seq"]))
    if args.json:
        print_json(rows)
        return 0
    for r in shown(rows):
        erased = "  [erased]" if r["erased"] else ""
        print(f"{r['time']}  {r['author']:<12} {r['seq']:>6}  {r['kind']:<14} {r['scope']:<10} {r['id'][:16]}{erased}")
    return 0


def cmd_log_show(args) -> int:
    from agentlog.audit.format import content_of
    from agentlog.documents import erased_text, event_doc
    from agentlog.errors import EventError
    from agentlog.ids import id_bytes

    eid = id_bytes(args.id)
    with open_home(args) as store:
        event = store.get(eid)
        if event is None:
            raise NotFoundError(f"this device holds no event {eid.hex()}")
        roster = store.roster()
        h = event.header
        doc = {**event_doc(store, event, roster), "epoch": h.epoch, "lamport": h.lamport, "prev": h.prev.hex(),
               "codec": h.payload_codec, "payload_hash": h.payload_hash.hex(), "payload_len": h.payload_len,
               "content": None}
        doc["withheld"] = event.payload is None and doc["erased"] is None
    if event.payload is not None:
        try:
            doc["content"] = content_of(h.kind, h.payload_codec, event.payload)
        except EventError as exc:
            doc["content"] = {"undecodable": str(exc)}
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    print(f"event    {doc['id']}")
    print(f"author   {doc['author']} ({doc['author_id'][:16]}) epoch {doc['epoch']} seq {doc['seq']}, "
          f"lamport {doc['lamport']}")
    print(f"kind     {doc['kind']} in scope {doc['scope']}, at {doc['time']}")
    if doc["erased"]:
        print(erased_text(doc["erased"]))
    elif doc["withheld"]:
        print("payload  not held here (a peer withheld it): asked of peers again")
    else:
        print(f"content  {json.dumps(doc['content'], ensure_ascii=False)}")
    return 0


def cmd_verify(args) -> int:
    from agentlog.progress import Progress
    from agentlog.store.verify import verify_store

    with open_home(args) as store:
        with Progress("verify", enabled=not args.json) as progress:
            report = verify_store(store, progress.update)
        roster = _naming_roster(store)
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


def _naming_roster(store):
    """The store's roster, to name devices; an empty one (devices named by their keys) when a damaged file
    does not read."""
    from agentlog.log.roster import Roster

    try:
        return store.roster()
    except StoreError:
        return Roster()


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
