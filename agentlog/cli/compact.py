"""`agentlog compact`: snapshot the views and drop the events every device has seen; and the
--horizon and --compact-* options `agentlog serve` shares for compacting on its own."""

from __future__ import annotations

from agentlog.cli.common import open_home, print_json, require_group, shown
from agentlog.errors import UsageError


def register(sub, common) -> None:
    c = sub.add_parser("compact", help="snapshot the views and drop the events every device has seen")
    c.add_argument("--horizon", type=float, default=30.0, metavar="DAYS",
                   help="leave out of the reckoning devices silent this many days (default 30; docs/compaction.md)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compact)


def horizon_ms(args) -> int:
    """--horizon DAYS in milliseconds; UsageError unless positive."""
    from agentlog.store.compaction import DAY_MS

    if args.horizon <= 0:
        raise UsageError("--horizon must be a positive number of days")
    return int(args.horizon * DAY_MS)


def compaction_policy(args):
    """The compaction.Policy of `serve`'s --compact-events, --compact-mb and --horizon."""
    from agentlog.store.compaction import Policy

    if args.compact_events < 0 or args.compact_mb < 0:
        raise UsageError("--compact-events and --compact-mb must be 0 (never) or positive")
    return Policy(events=args.compact_events, bytes=int(args.compact_mb * 1024 * 1024), horizon_ms=horizon_ms(args))


def cmd_compact(args) -> int:
    import time

    from agentlog.progress import Progress
    from agentlog.store import compaction

    horizon = horizon_ms(args)
    with open_home(args) as store:
        require_group(store)
        roster, before_events, before_bytes = store.roster(), store.count(), compaction.used_bytes(store)
        start = time.perf_counter()
        with Progress("compact", enabled=not args.json) as progress:
            report = compaction.compact(store, horizon_ms=horizon, progress=progress.update)
        elapsed = time.perf_counter() - start
        after_bytes = compaction.used_bytes(store)
    doc = {"snapshot": report.snapshot.hex() if report.snapshot else None, "dropped": report.dropped,
           "events_before": before_events, "events_after": report.kept, "used_bytes_before": before_bytes,
           "used_bytes_after": after_bytes, "elapsed_s": round(elapsed, 3),
           "stable": {roster.name_of(a): seq for a, (_, seq) in sorted(report.stable.items())},
           "silent": [roster.name_of(d) for d in report.silent], "unacknowledged": report.unacknowledged}
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    print(f"snapshot {doc['snapshot'][:16]} written" if report.snapshot
          else "the newest snapshot already covers every event held")
    print(f"dropped {report.dropped} events every device has seen; {report.kept} kept "
          f"({before_bytes / 1e6:.1f} MB -> {after_bytes / 1e6:.1f} MB in use) in {elapsed:.1f} s")
    for name, seq in doc["stable"].items():
        print(f"  {name}: every device has seen up to seq {seq}")
    for name in doc["silent"]:
        print(f"  {name}: silent past the horizon, left out; it starts from a snapshot when it returns")
    if report.unacknowledged:
        print(f"kept {report.unacknowledged} own events no other device has acknowledged (the only copy: "
              f"dropped once another device writes after receiving them, or is revoked)")
    return 0
