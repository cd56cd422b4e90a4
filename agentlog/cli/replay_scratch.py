"""`agentlog replay` without --rebuild: a scratch replay at a point, a setting's or memory's history, a diff.

Reads the home's store read-only (agentlog.store.scratch); prints JSON with --json, else lines for people.
Loaded only when such a replay runs (agentlog.cli.replay registers the command): it imports the event codec.
"""

from __future__ import annotations

import json
import time

from agentlog.cli.exits import EXIT_PROBLEMS
from agentlog.crypto import DeviceKey
from agentlog.documents import erased_text
from agentlog.errors import UsageError
from agentlog.prefs import reducer as pr
from agentlog.progress import Progress
from agentlog.replay import history as rh
from agentlog.replay.points import point_of, resolve_point
from agentlog.store.home import STORE_DIR, read_key
from agentlog.store.keyring import Keyring
from agentlog.store.pref_lookup import check_home
from agentlog.store.scratch import LiveLog, Log, Point, check_truncation, replay
from agentlog.text import iso, printable_doc

ERASED_SHOWN = 20               # erased events a point lists for people (--json: every one)


def run(args, context: tuple[tuple[str, str], ...]) -> int:
    """Dispatch on the options; returns the exit code (errors raise, agentlog.cli.exits gives their code)."""
    if (args.setting or args.memory) and args.diff:
        raise UsageError("--diff compares two points; it does not go with --setting or --memory")
    if context and not args.setting:
        raise UsageError("--context goes with --setting")
    if args.setting and pr.setting_problem(args.setting):
        raise UsageError(pr.setting_problem(args.setting))
    path = check_home(args.home)
    keyring = Keyring(DeviceKey(read_key(args.home)[1]))      # sealed scopes fold as the live views fold them
    with LiveLog(path / STORE_DIR, keyring=keyring) as live:
        points = [point_of(live, p) for p in args.diff] if args.diff else [resolve_point(live, args.until, args.at)]
        if args.setting or args.memory:
            check_truncation(live, live.name_of)
        with Progress("replay: reading the log", enabled=not args.json) as progress:
            log = live.read(progress.update)
        if args.setting:
            steps = rh.setting_history(log, points[0], args.setting, live.device, context)
            return _print_history(args, live, steps, f"{args.setting}" + "".join(f" {k}={v}" for k, v in context))
        if args.memory:
            entry = rh.entry_named(log, args.memory)
            return _print_history(args, live, rh.memory_history(log, points[0], entry), f"memory {entry.hex()}")
        if args.diff:
            return _print_diff(args, live, log, points)
        return _print_point(args, live, log, points[0])


def _now_of(log: Log, point: Point, n: int) -> int:
    """When a point's lookups are read: its time, the arrival of its event, or now for everything."""
    if point.until is not None:
        return point.until
    if point.at is not None:
        return log.arrival[log.order[n - 1]]
    return time.time_ns() // 1_000_000


def _state(live: LiveLog, log: Log, point: Point):
    now = _now_of(log, point, log.prefix(point))
    return replay(live, point, log, keep=lambda scratch: rh.state_of(scratch, live.device, now))


def _print_point(args, live: LiveLog, log: Log, point: Point) -> int:
    start = time.perf_counter()
    done, state = _state(live, log, point)
    elapsed = time.perf_counter() - start
    doc = {"point": point.text, "until_ms": point.until, "held_at": iso(done.time_ms) if done.time_ms else None,
           "events": done.events, "held": done.held, "from_snapshot": done.base, "fold_s": round(elapsed, 6),
           "frontier": {live.name_of(a): seq for a, seq in sorted(done.frontier.items())},
           "views": {name: {"version": v["version"], "digest": v["digest"].hex()} for name, v in done.views.items()},
           "prefs": [a.to_json() for _, a in sorted(state.answers.items())],
           "memory": [{"id": i.hex(), **e} for i, e in sorted(state.entries.items())],
           "erased": _erased(live, log, log.prefix(point))}
    live_views = live.views() if point.until is None and point.at is None else None
    if live_views is not None:
        doc["same_as_live"] = all(live_views[n]["digest"].hex() == v["digest"] for n, v in doc["views"].items())
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if doc.get("same_as_live", True) else EXIT_PROBLEMS
    doc = printable_doc(doc)
    start = f" on {done.base}" if done.base else ""
    print(f"replayed {done.events} of the {done.held} events this device holds{start}, as held at {point.text}"
          f" (last arrival {doc['held_at'] or 'none'}), in a scratch space; the live store is untouched")
    for name, v in doc["views"].items():
        same = ""
        if live_views is not None:
            same = ": same as the live view" if live_views[name]["digest"].hex() == v["digest"] else \
                f": DIFFERENT from the live view's {live_views[name]['digest'].hex()[:16]}"
        print(f"view {name:<8} digest {v['digest'][:16]}{same}")
    print("frontier: " + (", ".join(f"{n} {s}" for n, s in doc["frontier"].items()) or "nothing"))
    for a in doc["prefs"]:
        print(f"  {a['setting']:<24} {str(a['value']):<16} {a['source']:<9} {a['confidence']:.2f}"
              f"{'  uncertain' if a['uncertain'] else ''}")
    for e in doc["memory"]:
        mark = "deleted" if e["deleted"] else e["type"]
        print(f"  memory {e['id'][:12]} {mark:<11} {e['content'][:60]}")
    if doc["erased"]:
        n = len(doc["erased"])
        print(f"{n} of the events held at this point {'was' if n == 1 else 'were'} erased since: folded without "
              f"{'its' if n == 1 else 'their'} content, which is shown nowhere")
    for e in doc["erased"][:ERASED_SHOWN]:
        print(f"  {e['event'][:12]} {e['device']}:{e['seq']} {e['kind']:<14} {erased_text(e['erased'])}")
    if len(doc["erased"]) > ERASED_SHOWN:
        print(f"  and {len(doc['erased']) - ERASED_SHOWN} more (--json lists every one)")
    return 0 if doc.get("same_as_live", True) else EXIT_PROBLEMS


def _erased(live: LiveLog, log: Log, n: int) -> list[dict]:
    """The erased events among the first n of the held order: their headers and erasures, never content."""
    rows: list[dict] = []
    if not log.erased:
        return rows
    for i in log.order[:n]:
        f = log.events[i]
        gone = log.erased.get(f.eid)
        if gone is not None:
            rows.append({"event": f.eid.hex(), "device": live.name_of(f.author), "seq": f.seq, "kind": f.kind,
                         "time": iso(f.time_ms), "erased": rh.erased_json(gone, live.name_of)})
    return rows


def _print_history(args, live: LiveLog, steps: list[rh.Step], what: str) -> int:
    rows = [s.to_json(live.name_of) for s in steps]
    if args.json:
        print(json.dumps({"history": what, "events": len(rows), "changes": sum(r["changed"] for r in rows),
                          "steps": rows}, indent=2))
        return 0
    shown = printable_doc(rows if args.every else [r for r in rows if r["changed"] or r["erased"]])
    events = [r for r in rows if not r["from_snapshot"]]
    start = " after the compaction snapshot it starts from" if len(events) < len(rows) else ""
    print(f"{what}: {len(events)} events touched it{start}, {sum(r['changed'] for r in events)} changed it"
          f"{'' if args.every else ' (shown; --every for all)'}")
    for r in shown:
        cause = f"{r['event'][:12]} {r['device']}:{r['seq']} {r['kind']:<14} {r['time']}"
        if r["from_snapshot"]:
            cause = f"from the compaction snapshot {r['device']}:{r['seq']} ({r['event'][:12]}) of {r['time']}"
        print(f"{'*' if r['changed'] else ' '} {cause}  {_summary(r)}")
    return 0


def _summary(r: dict) -> str:
    if r["erased"]:
        return f"ERASED: {erased_text(r['erased'])}"
    if "source" in r:
        flags = "".join(f" {f}" for f in ("uncertain", "stale_override") if r[f])
        return f"{r['value']} ({r['source']}, {r['confidence']:.2f}{flags})"
    if not r["exists"]:
        return "(not held)"
    conflicts = f" conflicts: {', '.join(r['conflicts'])}" if r["conflicts"] else ""
    gone = " DELETED" if r["deleted"] else ""
    return f"{r['type']} '{r['content'][:50]}' tags {','.join(r['tags']) or '-'} {r['confidence']:.2f}{gone}{conflicts}"


def _print_diff(args, live: LiveLog, log: Log, points: list[Point]) -> int:
    (first, before), (second, after) = _state(live, log, points[0]), _state(live, log, points[1])
    doc = {"from": points[0].text, "to": points[1].text, "events": [first.events, second.events],
           **rh.diff(before, after)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    doc = printable_doc(doc)
    print(f"from {points[0].text} ({first.events} events held) to {points[1].text} ({second.events} events held):")
    for s in doc["settings"]:
        a, b = s["before"], s["after"]
        print(f"  setting {s['setting']}: {a['value']} ({a['source']}) -> {b['value']} ({b['source']})")
    for change, rows in doc["memory"].items():
        for r in rows:
            detail = f" ({', '.join(r['fields'])})" if change == "changed" else ""
            print(f"  memory {r['id'][:12]} {change}{detail}")
    if not doc["settings"] and not any(doc["memory"].values()):
        print("  no setting's value or source and no memory entry changed")
    return 0
