"""`agentlog backup DEST` and `agentlog restore SRC`: a consistent copy of this home (store and key), and putting
one in place as a home that pulls its own later events from its peers first (docs/operations.md)."""

from __future__ import annotations

from agentlog.cli.common import home_path, open_home, print_json, shown


def register(sub, common) -> None:
    c = sub.add_parser("backup", help="copy this home (store and key) into a new directory; safe while serve runs")
    c.add_argument("dest", metavar="DEST", help="a new or empty directory to hold the backup")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_backup)
    c = sub.add_parser("restore", help="put a backup in place as this home; it asks peers for its later events")
    c.add_argument("src", metavar="SRC", help="a directory agentlog backup wrote")
    c.add_argument("--force", action="store_true", help="replace the device this home holds")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_restore)


def cmd_backup(args) -> int:
    from agentlog.progress import Progress
    from agentlog.store.backup import backup

    with open_home(args) as store, Progress("backup", enabled=not args.json) as progress:
        doc = backup(store, args.dest, progress.update)
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    print(f"backed up {doc['events']} events ({doc['bytes'] / 1e6:.1f} MB) and the device key to {doc['path']} "
          f"in {doc['elapsed_s']:.1f} s")
    print("keep it private: it holds the device key")
    return 0


def cmd_restore(args) -> int:
    from agentlog.store.backup import restore

    doc = restore(args.src, home_path(args), force=args.force)
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    at = doc["restored_at"]
    print(f"restored {doc['events']} events into {doc['home']}" + (f" (this device at seq {at['seq']})" if at else ""))
    print("run agentlog serve or agentlog sync: it asks its peers for the events it wrote after the backup; "
          "anything written before then forks its log, and the fork heals")
    return 0
