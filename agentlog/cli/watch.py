"""`agentlog watch`: one line per change to the preference and memory views as it commits, until interrupted."""

from __future__ import annotations

import json

from agentlog.cli.common import open_home, require_group, shown


def register(sub, common) -> None:
    c = sub.add_parser("watch", help="print each change to preferences and memory as it happens (Ctrl-C ends)")
    c.add_argument("--setting", action="append", default=[], metavar="S",
                   help="only settings whose name starts with S (repeat for several)")
    c.add_argument("--memory", action="store_true", help="memory entries (with --setting: those too)")
    c.add_argument("--scope", help="only entries of this scope, or preferences whose events are in it")
    c.add_argument("--position", type=int, help="resume after this change's position (default: from now)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.set_defaults(func=cmd_watch)


def cmd_watch(args) -> int:
    with open_home(args) as store:
        require_group(store)
        with store.watch(settings=args.setting or None, memory=True if args.memory else None, scope=args.scope,
                         position=args.position) as watcher:
            try:
                for change in watcher:
                    line = json.dumps(change.to_json()) if args.json else shown(change.line())
                    print(line, flush=True)
            except KeyboardInterrupt:
                return 0
    return 0
