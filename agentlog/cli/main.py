"""The `agentlog` command line. Errors print one line and exit non-zero; never a traceback
for user mistakes or bad data.

Agents shell out to it, so each command imports what it needs inside its function:
`agentlog pref get` reads the view through agentlog.prefs.lookup and never loads the
event codec (pycapnp). Keep module-level imports to the standard library's cheapest.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC

from agentlog.errors import AgentlogError, NotFoundError, PeerError, StoreError, UsageError

EXIT_PROBLEMS = 1               # a check found problems: verify, audit verify, replay
EXIT_ERROR = 2                  # a usage mistake or bad input: arguments, values, tokens, damaged files
EXIT_PEER = 3                   # a peer was unreachable, refused, timed out or broke the protocol
EXIT_NOT_FOUND = 4              # what was named does not exist: memory entry, decision, device, home
LINE_LIMIT = 2000               # characters of an error or problem line shown (agentlog.text)
CONTENT_LIMIT = 16 * 1024       # characters of a memory entry's content `memory get` shows (an API write's limit)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_attach_dash_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.func(args) or 0
    except AgentlogError as exc:
        print(f"agentlog: error: {_shown(str(exc), LINE_LIMIT)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("agentlog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def exit_code(exc: AgentlogError) -> int:
    """The exit code of a failure, from its place in the error hierarchy (README, "Exit codes")."""
    if isinstance(exc, PeerError):
        return EXIT_PEER
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_ERROR


_TEXT_OPTIONS = frozenset({"--tag", "--add-tag", "--remove-tag", "--content", "--reason"})


def _attach_dash_values(argv: list[str]) -> list[str]:
    """`--tag -X` as `--tag=-X`: argparse would take a value starting with one dash for an unknown option."""
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if word in _TEXT_OPTIONS and following.startswith("-") and not following.startswith("--"):
            out.append(f"{word}={following}")
            i += 2
        else:
            out.append(word)
            i += 1
    return out


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, like every other error."""

    def error(self, message: str):
        print(f"agentlog: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked (the lookup's import
    would cost every `agentlog pref get` several milliseconds)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import agentlog
        print(f"agentlog {agentlog.__version__}")
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    home_help = "device home (default: $AGENTLOG_HOME or ~/.local/share/agentlog)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    p = _Parser(prog="agentlog", description="Signed, hash-chained event logs for one agent across devices.")
    p.add_argument("--home", help=home_help)
    p.add_argument("--version", action=_Version, help="print agentlog's version and exit")
    sub = _actions(p, common, "COMMAND")

    c = sub.add_parser("init", help="create this device's home and key, and a new group (or wait to --join one)")
    c.add_argument("--name", required=True, help="this device's name, e.g. laptop")
    c.add_argument("--join", action="store_true", help="do not create a group; print the device id to enrol elsewhere")
    c.set_defaults(func=cmd_init)

    d = _actions(sub.add_parser("devices", help="enrol, join, list and revoke devices"), common)
    c = d.add_parser("add", help="enrol a new device and print its join token")
    c.add_argument("device_id")
    c.add_argument("--name", required=True)
    c.set_defaults(func=cmd_devices_add)
    c = d.add_parser("join", help="join the group with a token from an enrolled device")
    c.add_argument("token")
    c.set_defaults(func=cmd_devices_join)
    c = d.add_parser("list", help="list the group's devices")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_devices_list)
    c = d.add_parser("revoke", help="stop accepting a device's future events")
    c.add_argument("device", metavar="NAME|ID")
    c.add_argument("--reason", default="")
    c.set_defaults(func=cmd_devices_revoke)

    c = sub.add_parser("observe", help="record that the user was seen using a setting's value")
    c.add_argument("setting")
    c.add_argument("value")
    _context_option(c)
    c.add_argument("--weight", type=float, default=1.0, help="1 is one ordinary observation (above 0, at most 1000000)")
    c.set_defaults(func=cmd_observe)

    c = sub.add_parser("decide", help="record the agent's choice of a value; prints its id for corrections")
    c.add_argument("setting")
    c.add_argument("value")
    c.add_argument("--confidence", type=float, default=0.5, help="how sure the agent was, 0 to 1 (default 0.5)")
    _context_option(c)
    c.add_argument("--reason", default="")
    c.set_defaults(func=cmd_decide)

    c = sub.add_parser("correct", help="record that the user corrected a decision to another value")
    c.add_argument("decision_id", metavar="DECISION_ID", help="the event id `agentlog decide` printed (hex)")
    c.add_argument("value")
    c.add_argument("--reason", default="")
    c.set_defaults(func=cmd_correct)

    pref = _actions(sub.add_parser("pref", help="ask for, state, forget and configure preferences"), common)
    c = pref.add_parser("get", help="what this device believes about a setting")
    c.add_argument("setting")
    _context_option(c)
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
    _context_option(c)
    c.set_defaults(func=cmd_pref_set)
    c = pref.add_parser("forget", help="drop everything learned and stated about a setting so far")
    c.add_argument("setting")
    c.set_defaults(func=cmd_pref_forget)
    c = pref.add_parser("policy", help="what an override does when the shared belief moves")
    c.add_argument("setting")
    c.add_argument("policy", metavar="sticky|vote|reconfirm")
    c.set_defaults(func=cmd_pref_policy)
    c = pref.add_parser("config", help="set a setting's policy, evidence half-life or value type")
    c.add_argument("setting")
    c.add_argument("--policy", metavar="sticky|vote|reconfirm")
    c.add_argument("--half-life", type=_duration_ms, metavar="DURATION", help="e.g. 14d, 36h, 90m (1 hour to 3650 days)")
    c.add_argument("--type", dest="value_type", metavar="text|bool|number|choice")
    c.add_argument("--choices", metavar="A,B,C", help="with --type choice: the allowed values")
    c.set_defaults(func=cmd_pref_config)
    c = pref.add_parser("confirm", help="keep this device's override beside the shared belief as it is now")
    c.add_argument("setting")
    c.set_defaults(func=cmd_pref_confirm)

    override = _actions(sub.add_parser("override", help="set or clear a value on this device only"), common)
    c = override.add_parser("set", help="override a setting on this device")
    c.add_argument("setting")
    c.add_argument("value")
    c.set_defaults(func=cmd_override_set)
    c = override.add_parser("clear", help="remove this device's override")
    c.add_argument("setting")
    c.set_defaults(func=cmd_override_clear)

    memory = _actions(sub.add_parser("memory", help="put, update, delete, get, list and search what the agent knows"), common)
    c = memory.add_parser("put", help="add an entry; prints its id")
    c.add_argument("text")
    c.add_argument("--type", default="fact", help=f"{_MEMORY_TYPES} (default fact)")
    c.add_argument("--tag", action="append", default=[], help="a label (repeat)")
    c.add_argument("--confidence", type=float, default=1.0, help="how sure the agent is, 0 to 1 (default 1)")
    c.add_argument("--scope", default="user", help="default user, e.g. topic:home")
    _embedding_options(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_put)
    c = memory.add_parser("get", help="an entry as this device sees it, with its conflicts or its deletion")
    c.add_argument("id", metavar="ID", help="the id, or a unique prefix of at least 4 hex digits")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_get)
    c = memory.add_parser("update", help="change some fields and tags of an entry; prints the update's event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("--content")
    c.add_argument("--type", help=_MEMORY_TYPES)
    c.add_argument("--confidence", type=float, help="0 to 1")
    c.add_argument("--tag", action="append", default=[], metavar="+X|-X", help="add (+X or X) or remove (-X) a tag (repeat)")
    c.add_argument("--add-tag", action="append", default=[], metavar="X")
    c.add_argument("--remove-tag", action="append", default=[], metavar="X")
    _embedding_options(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_update)
    c = memory.add_parser("delete", help="delete an entry on every device (final); prints the event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("--reason", default="")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_delete)
    c = memory.add_parser("list", help="entries, newest change first (! marks a conflict)")
    _memory_filters(c)
    c.add_argument("--deleted", action="store_true", help="list the deleted entries instead")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_list)
    c = memory.add_parser("search", help="entries nearest a query by meaning, or holding its words (--lexical)")
    c.add_argument("query")
    c.add_argument("--k", type=int, default=10, help="how many hits at most (default 10)")
    _memory_filters(c)
    c.add_argument("--lexical", action="store_true", help="entries holding every word of the query, not nearest by meaning")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_search)
    c = memory.add_parser("conflicts", help="entries whose fields hold concurrent values")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_conflicts)
    c = memory.add_parser("resolve", help="settle a field's conflict with one value; prints the update's event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("field", metavar="FIELD", help="type, content, confidence or embedding")
    c.add_argument("value", metavar="VALUE", help="the value to keep (for embedding: the event id of the write to keep)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_resolve)
    c = memory.add_parser("embedder", help="the model this home's search embeds with; NAME sets it")
    c.add_argument("name", metavar="NAME", nargs="?", help="agentlog-hash-384 or a sentence-transformers model")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_embedder)

    c = sub.add_parser("log", help="list events")
    c.add_argument("--author", metavar="NAME|ID")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_log)

    c = sub.add_parser("verify", help="re-check every stored event")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_verify)

    c = sub.add_parser("replay", help="the views as this device held them at a point, folded in a scratch space "
                                      "(docs/replay.md); --rebuild folds the live views again")
    c.add_argument("--rebuild", action="store_true", help="drop every view and fold it again; compare digests")
    point = c.add_mutually_exclusive_group()
    point.add_argument("--until", metavar="TIME", help="as held at TIME: ISO 8601 (UTC if no zone) or epoch ms")
    point.add_argument("--at", metavar="AUTHOR:SEQ", help="as held right after this event (device name or id prefix)")
    point.add_argument("--diff", nargs=2, metavar=("P1", "P2"), help="what changed between two points (TIME or AUTHOR:SEQ)")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--setting", metavar="S", help="how the setting's value, confidence and source changed, event by event")
    what.add_argument("--memory", metavar="ID", help="how the memory entry changed, event by event")
    _context_option(c)
    c.add_argument("--every", action="store_true", help="with --setting or --memory: every event, not only changes")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_replay)

    c = sub.add_parser("compact", help="snapshot the views and drop the events every device has seen")
    c.add_argument("--horizon", type=float, default=30.0, metavar="DAYS",
                   help="leave out of the reckoning devices silent this many days (default 30; docs/compaction.md)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compact)

    c = sub.add_parser("status", help="this device, its group, what it holds, and its peers")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("serve", help="run the background replicator: listen, dial peers, stay in sync")
    c.add_argument("--listen", metavar="HOST:PORT", help="accept peers here (port 0: any free port)")
    c.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                   help="also dial this peer (repeat); `agentlog peers add` remembers peers")
    c.add_argument("--heartbeat", type=float, default=5.0, metavar="S", help="seconds between heartbeats (default 5)")
    c.add_argument("--compact-events", type=int, default=1_000_000, metavar="N",
                   help="compact when the log holds N events or more (default 1000000; 0: never by count)")
    c.add_argument("--compact-mb", type=float, default=1024.0, metavar="MB",
                   help="compact when the store uses MB megabytes or more (default 1024; 0: never by size)")
    c.add_argument("--horizon", type=float, default=30.0, metavar="DAYS",
                   help="for compaction: leave out devices silent this many days (default 30)")
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("sync", help="one round with a peer: exchange what each side lacks, then exit")
    c.add_argument("peer", metavar="HOST:PORT")
    c.add_argument("--timeout", type=float, default=60.0, metavar="S", help="give up after S seconds in which nothing moved (default 60)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_sync)

    c = sub.add_parser("mcp", help="serve this device's preferences and memory to an AI agent over MCP on stdio")
    c.set_defaults(func=cmd_mcp)

    peers = _actions(sub.add_parser("peers", help="the peers `agentlog serve` dials"), common)
    c = peers.add_parser("add", help="remember a peer address")
    c.add_argument("peer", metavar="HOST:PORT")
    c.set_defaults(func=cmd_peers_add)
    c = peers.add_parser("remove", help="forget a peer address")
    c.add_argument("peer", metavar="HOST:PORT")
    c.set_defaults(func=cmd_peers_remove)
    c = peers.add_parser("list", help="the remembered peer addresses")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_peers_list)

    audit = _actions(sub.add_parser("audit", help="export the history for a privacy review, verify an export"), common)
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
    return p


def _actions(parser: argparse.ArgumentParser, common: argparse.ArgumentParser, metavar: str = "ACTION"):
    """Subcommands of `parser` that each take the common options; the bare group prints its help."""
    sub = parser.add_subparsers(metavar=metavar, parser_class=_Parser)
    add = sub.add_parser
    sub.add_parser = lambda *a, **k: add(*a, parents=[common], **k)
    parser.set_defaults(func=lambda args: parser.print_help() or EXIT_ERROR)
    return sub


def _context_option(c: argparse.ArgumentParser) -> None:
    c.add_argument("--context", action="append", default=[], metavar="K=V",
                   help="where it applies, e.g. daypart=night (repeat, at most 4 keys)")


_MEMORY_TYPES = "fact, preference, decision, finding, context or conversation"


def _memory_filters(c: argparse.ArgumentParser) -> None:
    c.add_argument("--type", help=_MEMORY_TYPES)
    c.add_argument("--tag", help="only entries with this tag")
    c.add_argument("--scope", help="only entries of this scope")


def _embedding_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--embedding", metavar="FILE", help="the entry's vector: a JSON list of numbers (- reads stdin)")
    c.add_argument("--model", help="the model that made --embedding (default: this home's embedder)")


_UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000}


def _duration_ms(text: str) -> int:
    """A duration such as 14d, 36h or 90m, in milliseconds (argparse type)."""
    number, unit = text[:-1], text[-1:]
    if not (number.isascii() and number.isdigit() and len(number) <= 9 and unit in _UNITS_MS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 14d, 36h or 90m")
    return int(number) * _UNITS_MS[unit]


def _shown(doc, limit: int | None = None):
    """`doc` (a string, or a --json document) as printed for people: every string escaped and bounded by
    agentlog.text, since names, values, content and reasons may come from other devices."""
    from agentlog.text import LIMIT, printable_doc

    return printable_doc(doc, limit or LIMIT)


def _context(pairs: list[str]) -> list[tuple[str, str]]:
    """--context key=value options as pairs, in the order given (the API checks keys and values)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--context {pair!r} must look like key=value")
        out.append((key, value))
    return out


# -- devices -------------------------------------------------------------------------

def cmd_init(args) -> int:
    from agentlog.store import home

    store = home.create(args.home, args.name)
    with store:
        if args.join:
            print(store.device.hex())
            print(f"device {args.name!r} created at {home.resolve(args.home)}; on an enrolled device run:\n"
                  f"  agentlog devices add {store.device.hex()} --name {args.name}", file=sys.stderr)
        else:
            store.create_group(args.name)
            print(f"created group {store.group.hex()[:16]} with device {args.name!r} ({store.device.hex()[:16]})")
    return 0


def cmd_devices_add(args) -> int:
    from agentlog.store import devices, home

    device = devices.parse_device_id(args.device_id)
    with home.open_home(args.home) as store:
        print(devices.enroll(store, device, args.name))
    return 0


def cmd_devices_join(args) -> int:
    from agentlog.store import devices, home

    with home.open_home(args.home) as store:
        enrolment = devices.join(store, args.token)
        print(f"joined group {store.group.hex()[:16]} as '{_shown(enrolment.name)}'")
    return 0


def cmd_devices_list(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        roster, heads = store.roster(), store.heads()
        rows = []
        for m in sorted(roster.enrolled_members(), key=lambda m: (m.name, m.device)):
            head = heads.get(m.device)
            rows.append({
                "name": m.name, "id": m.device.hex(), "this_device": m.device == store.device,
                "founder": m.device == roster.founder, "enrolled_by": roster.name_of(m.enrolled_by[0].author),
                "enrolled_at": {"author": m.enrolled_by[0].author.hex(), "seq": m.enrolled_by[0].seq},
                "status": "active" if m.active else "revoked", "until_seq": m.until_seq, "seq": head.seq if head else 0,
            })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in _shown(rows):
        status = r["status"] if r["until_seq"] is None else f"revoked after seq {r['until_seq']}"
        mark = "*" if r["this_device"] else " "
        print(f"{mark} {r['name']:<16} {r['id'][:16]}  seq {r['seq']:<8} {status:<24} "
              f"enrolled by {r['enrolled_by']} at its seq {r['enrolled_at']['seq']}")
    return 0


def cmd_devices_revoke(args) -> int:
    from agentlog.store import devices, home

    with home.open_home(args.home) as store:
        revoked = devices.revoke(store, args.device, args.reason)
        print(f"revoked '{_shown(store.roster().name_of(revoked.device))}': events after its seq {revoked.until_seq} will be refused")
    return 0


# -- preferences: writing -----------------------------------------------------------------

def _record(args, write) -> int:
    """Open the home, append with write(store.prefs) and print the new event's id."""
    from agentlog.store import home

    with home.open_home(args.home) as store:
        print(write(store.prefs).hex())
    return 0


def cmd_observe(args) -> int:
    context = _context(args.context)
    return _record(args, lambda prefs: prefs.observe(args.setting, args.value, context, args.weight))


def cmd_decide(args) -> int:
    context = _context(args.context)
    return _record(args, lambda prefs: prefs.decide(args.setting, args.value, args.confidence, context, args.reason))


def cmd_correct(args) -> int:
    try:
        decision = bytes.fromhex(args.decision_id)
    except ValueError:
        decision = b""
    if len(decision) != 32:
        raise UsageError(f"decision id {args.decision_id!r} is not an event id (64 hex digits, as `agentlog decide` prints)")
    return _record(args, lambda prefs: prefs.correct(decision, args.value, args.reason))


def cmd_pref_set(args) -> int:
    context = _context(args.context)
    return _record(args, lambda prefs: prefs.set(args.setting, args.value, context))


def cmd_pref_forget(args) -> int:
    return _record(args, lambda prefs: prefs.forget(args.setting))


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


# -- preferences: reading -------------------------------------------------------------------

def cmd_pref_get(args) -> int:
    context = _context(args.context)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if not args.explain:
        from agentlog.store import pref_lookup

        found = pref_lookup.get(args.home, args.setting, context)
        if found is not None:
            return _show_answer(args, *found)
    from agentlog.store import home

    with home.open_home(args.home) as store:
        roster = store.roster()
        if args.explain:
            explained = store.prefs.explain(args.setting, context, limit=args.limit)
            answer, frontier = explained.answer, explained.frontier
            contributions = [_contribution(c, roster) for c in explained.contributions]
        else:
            looked_up = store.prefs.get(args.setting, context)
            answer, frontier, contributions = looked_up.answer, looked_up.frontier, None
    return _show_answer(args, answer, _by_name(roster, frontier), contributions)


def cmd_pref_list(args) -> int:
    from agentlog.store import pref_lookup

    found = pref_lookup.list_all(args.home)
    if found is None:
        from agentlog.store import home

        with home.open_home(args.home) as store:
            frontier = store.frontier()          # read first: the answers reflect at least this much
            found = store.prefs.list(), _by_name(store.roster(), frontier)
    answers, frontier = found
    docs = [{**a.to_json(), "frontier": frontier} for a in answers]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    if not docs:
        print("no settings recorded yet", file=sys.stderr)
        return 0
    docs = _shown(docs)
    width = max(len(d["setting"]) for d in docs)
    for d in docs:
        value = "-" if d["value"] is None else d["value"]
        print(f"{d['setting']:<{width}}  {value:<16} {d['source']:<9} {d['confidence']:>6.2f}  {', '.join(_flags(d))}".rstrip())
    return 0


def _by_name(roster, frontier: dict[bytes, int]) -> dict[str, int]:
    return {roster.name_of(a): seq for a, seq in sorted(frontier.items())}


def _contribution(c, roster) -> dict:
    if c.kind == "summary":          # a snapshot's sum of one day's evidence (time_ms holds how many events)
        return {"id": c.eid.hex(), "author": "(summary)", "author_id": None, "kind": "summary", "value": c.value,
                "time": _iso(c.effective_ms), "effective_time": _iso(c.effective_ms), "events": c.time_ms,
                "weight": None if c.weight is None else round(c.weight, 4)}
    return {"id": c.eid.hex(), "author": roster.name_of(c.author), "author_id": c.author.hex(), "kind": c.kind,
            "value": c.value, "time": _iso(c.time_ms), "effective_time": _iso(c.effective_ms),
            "weight": None if c.weight is None else round(c.weight, 4)}


def _flags(doc: dict) -> list[str]:
    return [name for name, on in (("uncertain", doc["uncertain"]), ("stale override", doc["stale_override"])) if on]


def _show_answer(args, answer, frontier: dict[str, int], contributions: list[dict] | None = None) -> int:
    doc = {**answer.to_json(), "frontier": frontier}
    if contributions is not None:
        doc["contributions"] = contributions
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    doc = _shown(doc)
    if doc["value"] is None:
        print(f"{doc['setting']}: no value (default)")
    else:
        where = [f"context {' '.join(f'{k}={v}' for k, v in doc['context_bucket'].items())}"] if doc["context_bucket"] else []
        details = ", ".join([doc["source"], f"confidence {doc['confidence']:.2f}", *where, *_flags(doc)])
        print(f"{doc['setting']} = {doc['value']}  ({details})")
    for c in doc.get("contributions", ()):
        weight = "-" if c["weight"] is None else f"{c['weight']:.3f}"
        print(f"  {weight:>9}  {c['kind']:<12} {c['value']:<16} {c['author']:<12} {c['time']}  {c['id'][:16]}")
    return 0


# -- memory --------------------------------------------------------------------------------

def _names(store) -> dict[bytes, str]:
    """Device id -> name, for the entries' authors."""
    return {device: member.name for device, member in store.roster().members.items()}


def _read_embedding(path: str | None) -> list[float] | None:
    """The vector in the --embedding file (or stdin for -): a JSON list of numbers."""
    from pathlib import Path

    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --embedding {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        vector = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--embedding {path} is not JSON: {exc}") from None
    if not isinstance(vector, list) or not all(type(x) in (int, float) for x in vector):
        raise UsageError(f"--embedding {path} must hold a JSON list of numbers")
    return vector


def _memory_written(args, write) -> int:
    """Open the home, write with write(store.memory) -> (entry id, event id) and print the event id (or JSON)."""
    from agentlog.store import home

    with home.open_home(args.home) as store:
        memory = store.memory
        entry_id, event = write(memory)
        doc = {"id": entry_id.hex(), "event": event.hex(), "entry": memory.get(entry_id).to_json(_names(store))}
    print(json.dumps(doc, indent=2) if args.json else doc["event"])
    return 0


def cmd_memory_put(args) -> int:
    from agentlog.store import home

    if not args.scope:
        raise UsageError("--scope cannot be empty")
    embedding = _read_embedding(args.embedding)
    with home.open_home(args.home) as store:
        memory = store.memory
        entry_id = memory.put(args.text, type=args.type, tags=args.tag, confidence=args.confidence, scope=args.scope,
                              embedding=embedding, model=args.model)
        doc = {"id": entry_id.hex(), "entry": memory.get(entry_id).to_json(_names(store))}
    print(json.dumps(doc, indent=2) if args.json else doc["id"])
    return 0


def cmd_memory_update(args) -> int:
    adds, removes = list(args.add_tag), list(args.remove_tag)
    for tag in args.tag:
        (removes if tag.startswith("-") else adds).append(tag[1:] if tag[:1] in "+-" else tag)
    embedding = _read_embedding(args.embedding)

    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.update(entry_id, content=args.content, type=args.type, confidence=args.confidence,
                                       add_tags=adds, remove_tags=removes, embedding=embedding, model=args.model)
    return _memory_written(args, write)


def cmd_memory_delete(args) -> int:
    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.delete(entry_id, args.reason)
    return _memory_written(args, write)


def cmd_memory_resolve(args) -> int:
    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.resolve(entry_id, args.field, args.value)
    return _memory_written(args, write)


def cmd_memory_get(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        memory = store.memory
        doc = memory.get(memory.id(args.id)).to_json(_names(store))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    conflicts = _conflict_lines(doc)
    doc = {**_shown(doc), "content": _shown(doc["content"], CONTENT_LIMIT)}
    print(f"id          {doc['id']}")
    if not doc["deleted"]:
        print(f"type        {doc['type']}")
        print(f"content     {doc['content']}")
        print(f"tags        {', '.join(doc['tags']) or '-'}")
        print(f"confidence  {doc['confidence']:.2f}")
    print(f"scope       {doc['scope']}")
    print(f"put by      {doc['device']} at {_iso(doc['created_ms'])}")
    for d in doc["deleted"]:
        print(_deleted_line(d))
    if doc["deleted"]:
        return 0
    print(f"updated     {_iso(doc['updated_ms'])}")
    print(f"embedding   {doc['embedding_model'] or 'none given (the search index embeds the content)'}")
    for line in conflicts:
        print(line)
    return 0


def _deleted_line(d: dict) -> str:
    return f"deleted by {d['device']} at {_iso(d['time_ms'])}" + (f": {d['value']}" if d["value"] else "")


def _conflict_lines(doc: dict) -> list[str]:
    """Each field in conflict with all its standing values, the shown one (the winner) first and marked;
    from the doc as stored, each line made printable."""
    lines = []
    for name, candidates in doc["conflicts"].items():
        lines.append(f"conflict in {name}: {len(candidates)} standing values")
        for i, c in enumerate(candidates):
            mark = "shown" if i == 0 else "     "
            lines.append(f"  {mark}  {json.dumps(c['value'], ensure_ascii=False)}  by {c['device']}, lamport {c['lamport']}, "
                         f"{_iso(c['time_ms'])}, event {c['event'][:16]}")
    return _shown(lines, LINE_LIMIT)


def _snippet(text: str, width: int = 60) -> str:
    """The text on one line, cut to `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 1] + "…"


def _entry_row(doc: dict) -> str:
    if doc["deleted"]:
        return f"  {doc['id'][:12]}  {_deleted_line(doc['deleted'][0])}"
    mark = "!" if doc["conflicts"] else " "
    return f"{mark} {doc['id'][:12]}  {doc['type']:<12} {','.join(doc['tags']) or '-':<16} {_snippet(doc['content'])}"


def cmd_memory_list(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        names = _names(store)
        docs = [e.to_json(names) for e in store.memory.list(type=args.type, tag=args.tag, scope=args.scope,
                                                              deleted=args.deleted)]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    if not docs:
        print("no deleted entries" if args.deleted else "no entries", file=sys.stderr)
    for doc in _shown(docs):
        print(_entry_row(doc))
    return 0


def _search_notes(found) -> list[str]:
    """What the search did with entries it could not rank by their own embedding."""
    notes = []
    if found.reembedded:
        one = found.reembedded == 1
        notes.append(f"{found.reembedded} {'entry' if one else 'entries'} embedded by another model "
                     f"{'was' if one else 'were'} embedded again with {found.model}")
    if found.excluded:
        one = found.excluded == 1
        notes.append(f"{found.excluded} {'entry' if one else 'entries'} left out: {'its' if one else 'their'} embedding "
                     f"claims model {found.model} but has the wrong size")
    return notes


def cmd_memory_search(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        names = _names(store)
        found = store.memory.search(args.query, args.k, type=args.type, tag=args.tag, scope=args.scope, lexical=args.lexical)
    hits = [{"entry": h.entry.to_json(names), "score": round(h.score, 6)} for h in found.hits]
    if args.json:
        print(json.dumps({"hits": hits, "model": found.model, "mode": found.mode, "searched": found.searched,
                          "reembedded": found.reembedded, "excluded": found.excluded}, indent=2))
        return 0
    for h in _shown(hits):
        print(f"{h['score']:6.3f} {_entry_row(h['entry'])}")
    for note in _search_notes(found) if found.mode == "semantic" else ():
        print(f"agentlog: note: {note}", file=sys.stderr)
    if not hits:
        print(f"no match among {found.searched} {'entry' if found.searched == 1 else 'entries'}", file=sys.stderr)
    return 0


def cmd_memory_conflicts(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        names = _names(store)
        docs = [e.to_json(names) for e in store.memory.conflicts()]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    if not docs:
        print("no conflicts")
    for doc in docs:
        print(_entry_row(_shown(doc)))
        for line in _conflict_lines(doc):
            print(f"    {line}")
    return 0


def cmd_memory_embedder(args) -> int:
    from agentlog.memory.api import EMBEDDER_META
    from agentlog.memory.embedding import embedder_for
    from agentlog.store import home

    with home.open_home(args.home) as store:
        if args.name is None:
            embedder = store.memory.embedder
        else:
            try:
                embedder = embedder_for(args.name)
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load the embedding model {args.name!r}: {exc}") from None
            store.set_meta({EMBEDDER_META: embedder.name.encode()})
    doc = {"name": embedder.name, "dim": embedder.dim}
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.name is None:
        print(f"{doc['name']} ({doc['dim']} dimensions)")
    else:
        print(f"this home now searches with {doc['name']} ({doc['dim']} dimensions); the next search embeds every entry again")
    return 0


# -- the log -------------------------------------------------------------------------------

def cmd_log(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        roster = store.roster()
        author = None
        if args.author:
            member = roster.find(args.author)
            if member is None:
                raise NotFoundError(f"no device is named or has id {args.author!r}: see `agentlog devices list`")
            author = member.device
        rows = [{
            "author": roster.name_of(e.header.author), "author_id": e.header.author.hex(), "seq": e.header.seq,
            "kind": e.header.kind, "scope": e.header.scope, "time": _iso(e.header.time_ms), "id": e.id.hex(),
        } for e in store.events(author)]
    rows.sort(key=lambda r: (r["time"], r["author_id"], r["seq"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in _shown(rows):
        print(f"{r['time']}  {r['author']:<12} {r['seq']:>6}  {r['kind']:<14} {r['scope']:<10} {r['id'][:16]}")
    return 0


def _iso(ms: int) -> str:
    from agentlog.audit.format import iso

    return iso(ms)


def cmd_verify(args) -> int:
    from agentlog.progress import Progress
    from agentlog.store import home
    from agentlog.store.verify import verify_store

    with home.open_home(args.home) as store:
        with Progress("verify", enabled=not args.json) as progress:
            report = verify_store(store, progress.update)
        roster = None if report.damage else store.roster()     # a damaged file may not read
    if args.json:
        print(json.dumps({
            "ok": report.ok, "checked": report.checked,
            "problems": [{"author": p.author.hex(), "seq": p.seq, "problem": p.what} for p in report.problems],
            "forks": [{"author": p.author.hex(), "seq": p.seq} for p in report.forks],
            "after_revocation": [{"author": p.author.hex(), "seq": p.seq, "note": p.what} for p in report.after_revocation],
            "withheld": [{"author": p.author.hex(), "seq": p.seq, "note": p.what} for p in report.withheld],
            "damaged_signatures": [{"author": p.author.hex(), "seq": p.seq, "last": p.last, "signed": p.signed,
                                    "peer": p.peer.hex() if p.peer else None} for p in report.bad_signatures],
            "damage": report.damage, "notes": report.notes,
        }, indent=2))
    else:
        for line in report.damage:
            print(line)
        for p in report.problems:
            print(_shown(p.line(roster), LINE_LIMIT))
        for p in report.forks + report.after_revocation + report.bad_signatures + report.withheld:
            print(f"warning: {_shown(p.line(roster), LINE_LIMIT)}")
        for note in report.notes:
            print(f"note: {note}")
        n = len(report.problems) + len(report.damage)
        missing = f", {len(report.withheld)} run{'' if len(report.withheld) == 1 else 's'} of payloads missing" \
            if report.withheld else ""
        print(f"{report.checked} events checked, {n} problem{'' if n == 1 else 's'}{missing}", file=sys.stderr)
    return 0 if report.ok else EXIT_PROBLEMS


def cmd_replay(args) -> int:
    if not args.rebuild:
        from agentlog.cli import replay as replay_cli
        from agentlog.store import pref_lookup
        return replay_cli.run(args, pref_lookup.checked_context(_context(args.context)))
    if args.until or args.at or args.diff or args.setting or args.memory or args.context or args.every:
        raise UsageError("--rebuild folds the live views again; it takes no point, setting or memory")
    import time

    from agentlog.progress import Progress
    from agentlog.store import home

    with home.open_home(args.home) as store:
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
    doc = {"events": replayed, "elapsed_s": round(elapsed, 6), "events_per_s": round(replayed / elapsed) if elapsed else None,
           "views": views, "same": same}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        rate = f"{doc['events_per_s']:,} events/s" if doc["events_per_s"] is not None else "too fast to time"
        print(f"replayed {replayed} events in {elapsed:.3f} s ({rate})")
        for name, v in views.items():
            print(f"view {name:<8} digest {v['before'][:16]} before, {v['after'][:16]} after: "
                  f"{'same' if v['same'] else 'DIFFERENT'}")
        print("every view folded to the same digest as before" if same
              else "the views differ from what was stored before: the stored view was wrong or the fold is not deterministic")
    return 0 if same else EXIT_PROBLEMS


def _status_doc(store, home_path) -> dict:
    """What `agentlog status --json` prints (and the MCP status tool returns): device, group, heads, views, peers."""
    roster, heads = store.roster(), store.heads()
    return {
        "device": store.device.hex(), "name": store.name, "home": str(home_path),
        "group": store.group.hex() if store.group else None, "events": store.count(),
        "payloads_missing": store.withheld_count(),
        "signatures_damaged": sum(hi - lo + 1 for _, _, lo, hi in store.damaged()),
        "heads": {roster.name_of(a): {"id": a.hex(), "epoch": h.epoch, "seq": h.seq} for a, h in sorted(heads.items())},
        "forks": [{"author": f.author.hex(), "epoch": f.epoch, "seq": f.seq} for f in store.forks()],
        "views": {name: {"version": v["version"], "digest": v["digest"].hex(), "frontier": _by_name(roster, v["frontier"])}
                  for name, v in store.views().items()},
        "peers": _peer_status(store, roster),
        "compaction": {"snapshot": (store.meta("base") or b"").hex() or None,
                       "truncated": {roster.name_of(a): h.seq for a, h in sorted(store.truncated().items())}},
    }


def cmd_status(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        doc = _status_doc(store, home.resolve(args.home))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    doc = _shown(doc)
    print(f"device {doc['name']} ({doc['device'][:16]}) in group {(doc['group'] or 'none (not joined yet)')[:16]}")
    print(f"{doc['events']} events")
    if doc["payloads_missing"]:
        print(f"{doc['payloads_missing']} events held without their payload (a peer withheld them): "
              "views lack them until a peer supplies them")
    if doc["signatures_damaged"]:
        n = doc["signatures_damaged"]
        print(f"{n} event{'' if n == 1 else 's'} with damaged signature bytes (a peer garbled them; the author's "
              "later signed event proves the content): asked of peers again")
    if doc["compaction"]["snapshot"]:
        dropped = ", ".join(f"{name} to seq {seq}" for name, seq in doc["compaction"]["truncated"].items())
        print(f"compacted: snapshot {doc['compaction']['snapshot'][:16]}; dropped {dropped or 'nothing yet'}")
    for name, h in doc["heads"].items():
        print(f"  {name:<16} seq {h['seq']}")
    for f in doc["forks"]:
        print(f"  fork: {f['author'][:16]} seq {f['seq']}")
    for name, v in doc["views"].items():
        print(f"view {name} v{v['version']} digest {v['digest'][:16]}")
    for p in doc["peers"]:
        seen = _ago(p["last_seen_ms"]) if p["last_seen_ms"] else "never"
        lag = f"we lack {p['we_lack']}, they lack {p['they_lack']}" if p["state"] != "never" else ""
        print(f"peer {p['name'] or '?':<12} {p['address'] or '-':<22} {p['state']:<11} seen {seen:<12} {lag}"
              + (f" ({p['error']})" if p["error"] else ""))
    return 0


def _peer_status(store, roster) -> list[dict]:
    """Each known peer: state (connected|partitioned|never), last seen, events behind each way."""
    from agentlog.log.event import MAX_SEQ
    from agentlog.store.peers import Peers, behind

    book, ours = Peers(store), store.frontier()
    out, addresses = [], set()
    for device, s in sorted(book.states().items(), key=lambda item: item[1].name):
        # a peer's claims count only for enrolled authors and seqs an event may hold (a rogue or old claim does not)
        claims = {a: n for a, n in s.frontier.items() if 0 < n <= MAX_SEQ and bytes.fromhex(a) in roster.members}
        we_lack, they_lack = behind(ours, claims)
        addresses.add(s.address)
        out.append({"device": device.hex(), "name": roster.name_of(device), "address": s.address, "state": s.state,
                    "last_seen_ms": s.last_seen_ms, "we_lack": we_lack, "they_lack": they_lack, "error": s.error})
    for addr in book.addresses():
        if addr not in addresses:
            out.append({"device": None, "name": "", "address": addr, "state": "never", "last_seen_ms": 0,
                        "we_lack": None, "they_lack": None, "error": ""})
    return out


def _ago(ms: int) -> str:
    import time

    s = max(0.0, time.time() - ms / 1000)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.0f} h ago"


def cmd_serve(args) -> int:
    import trio

    from agentlog.store import home
    from agentlog.store.peers import parse_address
    from agentlog.sync.serve import configure_logging, serve

    listen = parse_address(args.listen, listen=True) if args.listen else None
    for peer in args.peer:
        parse_address(peer)
    if args.heartbeat <= 0:
        raise UsageError("--heartbeat must be a positive number of seconds")
    policy = _compaction_policy(args)
    with home.open_home(args.home) as store:
        if store.group is None:
            raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
        if listen is None and not args.peer and not store.peer_book.addresses():
            raise UsageError("nothing to do: give --listen HOST:PORT, --peer HOST:PORT, or add peers first")
        damage = store.structure_problems()
        if damage:
            raise StoreError(f"{damage[0]} ({len(damage)} problems): run agentlog verify")
        configure_logging()
        try:
            trio.run(serve, store, listen, args.peer, args.heartbeat, policy)
        except (OSError, AgentlogError, BaseExceptionGroup) as exc:
            raise _serve_failure(exc, args.listen) from None
    return 0


def _serve_failure(exc: BaseException, listen: str | None) -> AgentlogError:
    """One line for what stopped `serve`: the store, a file it writes, or the listening socket."""
    found = _inner(exc, AgentlogError)
    if found is not None:
        return StoreError(f"serve stopped: {found}") if isinstance(found, StoreError) else found
    failure = _inner(exc, OSError)
    if failure is None:
        raise exc
    if failure.filename:
        return StoreError(f"serve stopped: cannot write {failure.filename}: {failure.strerror or failure}")
    if listen is None:
        return UsageError(f"serve stopped: {failure.strerror or failure}")
    return UsageError(f"cannot listen on {listen}: {failure.strerror or failure}")


def _compaction_policy(args):
    from agentlog.store.compaction import Policy

    if args.compact_events < 0 or args.compact_mb < 0:
        raise UsageError("--compact-events and --compact-mb must be 0 (never) or positive")
    return Policy(events=args.compact_events, bytes=int(args.compact_mb * 1024 * 1024), horizon_ms=_horizon_ms(args))


def _horizon_ms(args) -> int:
    from agentlog.store.compaction import DAY_MS

    if args.horizon <= 0:
        raise UsageError("--horizon must be a positive number of days")
    return int(args.horizon * DAY_MS)


def cmd_compact(args) -> int:
    import time

    from agentlog.progress import Progress
    from agentlog.store import compaction, home

    horizon_ms = _horizon_ms(args)
    with home.open_home(args.home) as store:
        if store.group is None:
            raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
        roster, before_events, before_bytes = store.roster(), store.count(), compaction.used_bytes(store)
        start = time.perf_counter()
        with Progress("compact", enabled=not args.json) as progress:
            report = compaction.compact(store, horizon_ms=horizon_ms, progress=progress.update)
        elapsed = time.perf_counter() - start
        after_bytes = compaction.used_bytes(store)
    doc = {"snapshot": report.snapshot.hex() if report.snapshot else None, "dropped": report.dropped,
           "events_before": before_events, "events_after": report.kept, "used_bytes_before": before_bytes,
           "used_bytes_after": after_bytes, "elapsed_s": round(elapsed, 3),
           "stable": {roster.name_of(a): seq for a, (_, seq) in sorted(report.stable.items())},
           "silent": [roster.name_of(d) for d in report.silent]}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    doc = _shown(doc)
    print(f"snapshot {doc['snapshot'][:16]} written" if report.snapshot else "the newest snapshot already covers every event held")
    print(f"dropped {report.dropped} events every device has seen; {report.kept} kept "
          f"({before_bytes / 1e6:.1f} MB -> {after_bytes / 1e6:.1f} MB in use) in {elapsed:.1f} s")
    for name, seq in doc["stable"].items():
        print(f"  {name}: every device has seen up to seq {seq}")
    for name in doc["silent"]:
        print(f"  {name}: silent past the horizon, left out; it starts from a snapshot when it returns")
    return 0


def _inner(exc: BaseException, kind: type):
    """The first `kind` exception in `exc` (trio wraps failures in exception groups), or None."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _inner(inner, kind)
            if found is not None:
                return found
    return None


def cmd_sync(args) -> int:
    import trio

    from agentlog.store import home
    from agentlog.store.peers import parse_address
    from agentlog.sync.replicator import sync_once
    from agentlog.sync.serve import configure_logging

    parse_address(args.peer)
    configure_logging(quiet=True)
    with home.open_home(args.home) as store:
        if store.group is None:
            raise UsageError("this device has not joined a group yet: run agentlog devices join TOKEN")
        before = store.count()
        from agentlog.progress import Progress

        with Progress("sync", enabled=not args.json) as progress, \
                Progress("snapshot bytes", enabled=not args.json) as snapshot_progress:
            result = trio.run(lambda: sync_once(store, args.peer, timeout=args.timeout, progress=progress.update,
                                                snapshot_progress=snapshot_progress.update))
        doc = {"peer": store.roster().name_of(result.peer), "device": result.peer.hex(), "address": result.address,
               "received": result.received, "sent": result.sent, "events": store.count(), "new": store.count() - before,
               "bootstrapped": result.bootstrapped}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        start = "started from its snapshot, " if result.bootstrapped else ""
        print(f"synced with {_shown(doc['peer'])} at {doc['address']}: {start}received {doc['received']} events, "
              f"sent {doc['sent']}; this device now holds {doc['events']}")
    return 0


def cmd_mcp(args) -> int:
    try:
        from agentlog.mcp import server as mcp_server
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("mcp", "mcp_types"):
            raise
        raise UsageError("agentlog mcp needs the optional extra: pip install 'agentlog[mcp]'") from None
    from agentlog.store import home

    with home.open_home(args.home) as store:
        mcp_server.serve_stdio(store, home.resolve(args.home))
    return 0


def cmd_peers_add(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        print(f"added peer {store.peer_book.add(args.peer)}")
    return 0


def cmd_peers_remove(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        print(f"removed peer {store.peer_book.remove(args.peer)}")
    return 0


def cmd_peers_list(args) -> int:
    from agentlog.store import home

    with home.open_home(args.home) as store:
        addresses = store.peer_book.addresses()
    if args.json:
        print(json.dumps(addresses))
    else:
        print("\n".join(addresses) if addresses else "no peers (add one with agentlog peers add HOST:PORT)")
    return 0


def _time_ms(text: str | None, option: str) -> int | None:
    from datetime import datetime

    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time (for example 2026-11-01 or 2026-11-01T08:00Z)") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_audit_export(args) -> int:
    from pathlib import Path

    from agentlog.audit.export import Selection, export
    from agentlog.audit.html import render
    from agentlog.progress import Progress
    from agentlog.store import home

    out = Path(args.out)
    html = Path(args.html) if args.html else out.with_suffix(".html")
    if html == out:
        raise UsageError("--html names the same file as --out")
    selection = Selection(_time_ms(args.since, "--since"), _time_ms(args.until, "--until"),
                          tuple(args.scope) if args.scope else None, args.redact_content)
    with home.open_home(args.home) as store:
        try:
            with open(out, "wb") as f, Progress("export", enabled=not args.json) as progress:
                summary = export(store, f, selection, progress.update)
            html.write_text(render(summary), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the export: {exc.strerror or exc} ({exc.filename or out})") from None
    doc = {"out": str(out), "html": str(html), "events": summary.events, "lines": summary.lines,
           "digest": summary.digest.hex()}
    if args.json:
        print(json.dumps(doc, indent=2))
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
        print(json.dumps({"ok": report.ok, "events": report.events, "lines": report.lines,
                          "problems": report.problems}, indent=2))
    else:
        for problem in report.problems:
            print(_shown(problem, LINE_LIMIT))
        n = len(report.problems)
        print(f"{report.events} events in {report.lines} lines checked, {n} problem{'' if n == 1 else 's'}",
              file=sys.stderr)
    return 0 if report.ok else EXIT_PROBLEMS


def cmd_audit_ledger(args) -> int:
    from agentlog.store import home
    from agentlog.store.ledger import Ledger

    with home.open_home(args.home) as store:
        roster, book = store.roster(), Ledger(store)
        rows = [{"direction": direction, "peer": roster.name_of(r.peer), "peer_id": r.peer.hex(),
                 "author": roster.name_of(r.author), "author_id": r.author.hex(), "epoch": r.epoch, "lo": r.lo,
                 "hi": r.hi, "first": _iso(r.first_ms), "last": _iso(r.last_ms)}
                for direction, found in (("sent", book.sent()), ("received", book.received())) for r in found]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in _shown(rows):
        arrow = "to" if r["direction"] == "sent" else "from"
        print(f"{r['direction']:<8} {arrow:<4} {r['peer']:<12} {r['author']:<12} seq {r['lo']}..{r['hi']}  "
              f"{r['first']} .. {r['last']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
