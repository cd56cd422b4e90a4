"""`agentlog forget EVENT_ID...`: erase given events' content on every device (docs/erasure.md); prints the id of
each erase request it appended (one per MAX_ERASE_IDS events)."""

from __future__ import annotations

import sys

from agentlog.cli.common import open_home, print_json


def register(sub, common) -> None:
    c = sub.add_parser("forget", help="erase events' content on every device, keeping their signed headers; "
                                      "prints the erase request's id")
    c.add_argument("event_ids", nargs="+", metavar="EVENT_ID",
                   help="an event's id: 64 hex digits, as `agentlog log --json` prints it")
    c.add_argument("--reason", default="", help="why, in a few words (every device of the group reads it)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_forget)


def cmd_forget(args) -> int:
    from agentlog.ids import id_bytes

    events = [id_bytes(text) for text in args.event_ids]
    with open_home(args) as store:
        requests = store.erase(events, reason=args.reason)
    print_requests(args, requests, {"events": [e.hex() for e in events]})
    return 0


def print_requests(args, requests: list[bytes], doc: dict) -> None:
    """The erase requests' ids, one a line (none: a note that everything named was erased already), or with
    --json `doc` with "requests" added."""
    if args.json:
        print_json({**doc, "requests": [r.hex() for r in requests]})
        return
    for request in requests:
        print(request.hex())
    if not requests:
        print("agentlog: note: every event named is erased already: no request appended", file=sys.stderr)
