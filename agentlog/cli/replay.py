"""`agentlog replay`: the views as this device held them at a point, folded in a scratch space
(agentlog.cli.replay_scratch), or with --rebuild the live views folded again and their digests compared."""

from __future__ import annotations

from agentlog.cli.common import context, context_option, open_home, print_json
from agentlog.cli.exits import EXIT_PROBLEMS
from agentlog.errors import UsageError


def register(sub, common) -> None:
    c = sub.add_parser("replay", help="the views as this device held them at a point, folded in a scratch space "
                                      "(docs/replay.md); --rebuild folds the live views again")
    c.add_argument("--rebuild", action="store_true", help="drop every view and fold it again; compare digests")
    point = c.add_mutually_exclusive_group()
    point.add_argument("--until", metavar="TIME", help="as held at TIME: ISO 8601 (UTC if no zone) or epoch ms")
    point.add_argument("--at", metavar="AUTHOR:SEQ", help="as held right after this event (device name or id prefix)")
    point.add_argument("--diff", nargs=2, metavar=("P1", "P2"),
                       help="what changed between two points (TIME or AUTHOR:SEQ)")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--setting", metavar="S",
                      help="how the setting's value, confidence and source changed, event by event")
    what.add_argument("--memory", metavar="ID", help="how the memory entry changed, event by event")
    context_option(c)
    c.add_argument("--every", action="store_true", help="with --setting or --memory: every event, not only changes")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    if not args.rebuild:
        from agentlog.cli import replay_scratch
        from agentlog.store import pref_lookup

        return replay_scratch.run(args, pref_lookup.checked_context(context(args.context)))
    if args.until or args.at or args.diff or args.setting or args.memory or args.context or args.every:
        raise UsageError("--rebuild folds the live views again; it takes no point, setting or memory")
    return _rebuild(args)


def _rebuild(args) -> int:
    """Drop every live view, fold it again from the log, and say whether each digest came out the same."""
    import time

    from agentlog.progress import Progress

    with open_home(args) as store:
        before, total = store.views(), store.count()
        with Progress("replay", enabled=not args.json) as progress:
            start = time.perf_counter()
            replayed = store.rebuild_views(lambda n: progress.update(n, total))
            elapsed = time.perf_counter() - start
            progress.update(replayed, replayed)
        after = store.views()
    views = {name: {"version": after[name]["version"], "before": before[name]["digest"].hex(),
                    "after": after[name]["digest"].hex(), "same": before[name]["digest"] == after[name]["digest"]}
             for name in after}
    same = all(v["same"] for v in views.values()) and set(before) == set(after)
    doc = {"events": replayed, "elapsed_s": round(elapsed, 6),
           "events_per_s": round(replayed / elapsed) if elapsed else None, "views": views, "same": same}
    if args.json:
        print_json(doc)
        return 0 if same else EXIT_PROBLEMS
    rate = f"{doc['events_per_s']:,} events/s" if doc["events_per_s"] is not None else "too fast to time"
    print(f"replayed {replayed} events in {elapsed:.3f} s ({rate})")
    for name, v in views.items():
        print(f"view {name:<8} digest {v['before'][:16]} before, {v['after'][:16]} after: "
              f"{'same' if v['same'] else 'DIFFERENT'}")
    print("every view folded to the same digest as before" if same else
          "the views differ from what was stored before: the stored view was wrong or the fold is not deterministic")
    return 0 if same else EXIT_PROBLEMS
