"""`agentlog observe|decide|correct`, `agentlog pref get|list|set|forget|policy|config|confirm` and
`agentlog override set|clear`: recording evidence about preferences, and reading them.

`pref get` and `pref list` stay import-light: they answer through agentlog.store.pref_lookup and open
the store (which loads the event codec) only when the lookup cannot answer, or for --explain.
"""

from __future__ import annotations

import argparse
import sys

from agentlog.cli.common import actions, context, context_option, open_home, print_json, shown
from agentlog.cli.scopes import scope_argument, scope_option
from agentlog.errors import UsageError

_UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}


def register(sub, common) -> None:
    c = sub.add_parser("observe", help="record that the user was seen using a setting's value")
    c.add_argument("setting")
    c.add_argument("value")
    context_option(c)
    c.add_argument("--weight", type=float, default=1.0, help="1 is one ordinary observation (above 0, at most 1000000)")
    scope_option(c)
    c.set_defaults(func=cmd_observe)

    c = sub.add_parser("decide", help="record the agent's choice of a value; prints its id for corrections")
    c.add_argument("setting")
    c.add_argument("value")
    c.add_argument("--confidence", type=float, default=0.5, help="how sure the agent was, 0 to 1 (default 0.5)")
    context_option(c)
    c.add_argument("--reason", default="")
    scope_option(c)
    c.set_defaults(func=cmd_decide)

    c = sub.add_parser("correct", help="record that the user corrected a decision to another value")
    c.add_argument("decision_id", metavar="DECISION_ID", help="the event id `agentlog decide` printed (hex)")
    c.add_argument("value")
    c.add_argument("--reason", default="")
    scope_option(c)
    c.set_defaults(func=cmd_correct)

    _register_pref(actions(sub.add_parser("pref", help="ask for, state, forget and configure preferences"), common))

    override = actions(sub.add_parser("override", help="set or clear a value on this device only"), common)
    c = override.add_parser("set", help="override a setting on this device")
    c.add_argument("setting")
    c.add_argument("value")
    c.set_defaults(func=cmd_override_set)
    c = override.add_parser("clear", help="remove this device's override")
    c.add_argument("setting")
    c.set_defaults(func=cmd_override_clear)


def _register_pref(pref) -> None:
    c = pref.add_parser("get", help="what this device believes about a setting")
    c.add_argument("setting")
    context_option(c)
    c.add_argument("--json", action="store_true")
    c.add_argument("--explain", action="store_true", help="also list the events that decided it, strongest first")
    c.add_argument("--limit", type=int, default=10, help="with --explain: how many events at most (default 10)")
    c.set_defaults(func=cmd_pref_get)
    c = pref.add_parser("list", help="every setting's value on this device, with no context")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_pref_list)
    c = pref.add_parser("set", help="state a value explicitly: it outranks learned evidence")
    c.add_argument("setting")
    c.add_argument("value")
    context_option(c)
    scope_option(c)
    c.set_defaults(func=cmd_pref_set)
    c = pref.add_parser("forget", help="drop everything learned and stated about a setting so far; with --erase, "
                                       "also erase that evidence's content on every device")
    c.add_argument("setting")
    c.add_argument("--erase", action="store_true",
                   help="erase every observation, decision, correction and statement about it so far from the "
                        "whole history (docs/erasure.md); prints the forget's id, then the erase request's")
    c.add_argument("--reason", help="with --erase: why, in a few words (every device of the group reads it)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_pref_forget)
    c = pref.add_parser("policy", help="what an override does when the shared belief moves")
    c.add_argument("setting")
    c.add_argument("policy", metavar="sticky|vote|reconfirm")
    c.set_defaults(func=cmd_pref_policy)
    c = pref.add_parser("config", help="set a setting's policy, evidence half-life or value type")
    c.add_argument("setting")
    c.add_argument("--policy", metavar="sticky|vote|reconfirm")
    c.add_argument("--half-life", type=duration_ms, metavar="DURATION",
                   help="e.g. 14d, 36h, 90m (1 hour to 3650 days)")
    c.add_argument("--type", dest="value_type", metavar="text|bool|number|choice")
    c.add_argument("--choices", metavar="A,B,C", help="with --type choice: the allowed values")
    c.set_defaults(func=cmd_pref_config)
    c = pref.add_parser("confirm", help="keep this device's override beside the shared belief as it is now")
    c.add_argument("setting")
    c.set_defaults(func=cmd_pref_confirm)


def duration_ms(text: str) -> int:
    """A duration such as 14d, 36h or 90m, in milliseconds (argparse type)."""
    number, unit = text[:-1], text[-1:]
    if not (number.isascii() and number.isdigit() and len(number) <= 9 and unit in _UNITS_MS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 14d, 36h or 90m")
    return int(number) * _UNITS_MS[unit]


# -- writing --------------------------------------------------------------------------------------------

def _record(args, write) -> int:
    """Open the home, append with write(store.prefs) and print the new event's id."""
    with open_home(args) as store:
        print(write(store.prefs).hex())
    return 0


def cmd_observe(args) -> int:
    pairs = context(args.context)
    return _record(args, lambda prefs: prefs.observe(args.setting, args.value, pairs, args.weight,
                                                              **scope_argument(args)))


def cmd_decide(args) -> int:
    pairs = context(args.context)
    return _record(args, lambda prefs: prefs.decide(args.setting, args.value, args.confidence, pairs, args.reason,
                                                    **scope_argument(args)))


def cmd_correct(args) -> int:
    try:
        decision = bytes.fromhex(args.decision_id)
    except ValueError:
        decision = b""
    if len(decision) != 32:
        raise UsageError(f"decision id {args.decision_id!r} is not an event id "
                         "(64 hex digits, as `agentlog decide` prints)")
    return _record(args, lambda prefs: prefs.correct(decision, args.value, args.reason, **scope_argument(args)))


def cmd_pref_set(args) -> int:
    pairs = context(args.context)
    return _record(args, lambda prefs: prefs.set(args.setting, args.value, pairs, **scope_argument(args)))


def cmd_pref_forget(args) -> int:
    from agentlog.cli.forget import print_requests

    if args.reason is not None and not args.erase:
        raise UsageError("--reason goes with --erase (a forget without it records no reason)")
    with open_home(args) as store:
        if not args.erase:
            forget, requests = store.prefs.forget(args.setting), []
        else:
            forget, requests = store.prefs.forget(args.setting, erase=True, reason=args.reason or "")
    if args.json:
        print_requests(args, requests, {"setting": args.setting, "forget": forget.hex()})
        return 0
    print(forget.hex())
    if args.erase:
        print_requests(args, requests, {})
    return 0


def cmd_pref_policy(args) -> int:
    return _record(args, lambda prefs: prefs.configure(args.setting, policy=args.policy))


def cmd_pref_config(args) -> int:
    choices = tuple(args.choices.split(",")) if args.choices is not None else ()
    return _record(args, lambda prefs: prefs.configure(args.setting, policy=args.policy, half_life_ms=args.half_life,
                                                       value_type=args.value_type, choices=choices))


def cmd_pref_confirm(args) -> int:
    return _record(args, lambda prefs: prefs.confirm(args.setting))


def cmd_override_set(args) -> int:
    return _record(args, lambda prefs: prefs.override(args.setting, args.value))


def cmd_override_clear(args) -> int:
    return _record(args, lambda prefs: prefs.clear_override(args.setting))


# -- reading --------------------------------------------------------------------------------------------

def cmd_pref_get(args) -> int:
    pairs = context(args.context)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if not args.explain:
        from agentlog.store import pref_lookup

        found = pref_lookup.get(args.home, args.setting, pairs)
        if found is not None:
            return _show_answer(args, *found)
    from agentlog.documents import contribution, frontier_by_name

    with open_home(args) as store:
        roster = store.roster()
        if args.explain:
            explained = store.prefs.explain(args.setting, pairs, limit=args.limit)
            answer, frontier = explained.answer, explained.frontier
            contributions = [contribution(c, roster) for c in explained.contributions]
        else:
            looked_up = store.prefs.get(args.setting, pairs)
            answer, frontier, contributions = looked_up.answer, looked_up.frontier, None
    return _show_answer(args, answer, frontier_by_name(roster, frontier), contributions)


def cmd_pref_list(args) -> int:
    from agentlog.store import pref_lookup

    found = pref_lookup.list_all(args.home)
    if found is None:
        from agentlog.documents import frontier_by_name

        with open_home(args) as store:
            frontier = store.frontier()          # read first: the answers reflect at least this much
            found = store.prefs.list(), frontier_by_name(store.roster(), frontier)
    answers, frontier = found
    docs = [{**a.to_json(), "frontier": frontier} for a in answers]
    if args.json:
        print_json(docs)
        return 0
    if not docs:
        print("no settings recorded yet", file=sys.stderr)
        return 0
    docs = shown(docs)
    width = max(len(d["setting"]) for d in docs)
    for d in docs:
        value = "-" if d["value"] is None else d["value"]
        line = f"{d['setting']:<{width}}  {value:<16} {d['source']:<9} {d['confidence']:>6.2f}  {', '.join(_flags(d))}"
        print(line.rstrip())
    return 0


def _flags(doc: dict) -> list[str]:
    return [name for name, on in (("uncertain", doc["uncertain"]), ("stale override", doc["stale_override"])) if on]


def _show_answer(args, answer, frontier: dict[str, int], contributions: list[dict] | None = None) -> int:
    doc = {**answer.to_json(), "frontier": frontier}
    if contributions is not None:
        doc["contributions"] = contributions
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    if doc["value"] is None:
        print(f"{doc['setting']}: no value (default)")
    else:
        bucket = doc["context_bucket"]
        where = [f"context {' '.join(f'{k}={v}' for k, v in bucket.items())}"] if bucket else []
        details = ", ".join([doc["source"], f"confidence {doc['confidence']:.2f}", *where, *_flags(doc)])
        print(f"{doc['setting']} = {doc['value']}  ({details})")
    for c in doc.get("contributions", ()):
        weight = "-" if c["weight"] is None else f"{c['weight']:.3f}"
        print(f"  {weight:>9}  {c['kind']:<12} {c['value']:<16} {c['author']:<12} {c['time']}  {c['id'][:16]}")
    return 0
