"""`agentlog scopes create|grant|revoke|list`: sealed scopes, their reader devices and key epochs
(docs/scopes.md). The work is store.scopes'; this module parses, calls it and prints."""

from __future__ import annotations

import sys

from agentlog.cli.common import actions, open_home, print_json, require_group, shown


def register(sub, common) -> None:
    s = actions(sub.add_parser("scopes", help="create sealed scopes, grant and revoke their readers, list them"),
                common)
    c = s.add_parser("create", help="create a sealed scope; this device becomes its first reader")
    c.add_argument("scope", metavar="SCOPE", help="e.g. health, topic:home (not user, not device:...)")
    c.set_defaults(func=cmd_scopes_create)
    c = s.add_parser("grant", help="make devices readers of a scope, handing them its keys so far")
    c.add_argument("scope", metavar="SCOPE")
    c.add_argument("devices", metavar="DEVICE", nargs="+", help="a device's name or id")
    c.set_defaults(func=cmd_scopes_grant)
    c = s.add_parser("revoke", help="stop a device reading a scope from now on (a new key epoch)")
    c.add_argument("scope", metavar="SCOPE")
    c.add_argument("device", metavar="DEVICE", help="a device's name or id")
    c.set_defaults(func=cmd_scopes_revoke)
    c = s.add_parser("list", help="each scope, its readers, its key epoch, and whether this device reads it")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_scopes_list)


def scope_option(c) -> None:
    """--scope on a preference write: the sealed scope it goes into (default user, readable by every device)."""
    c.add_argument("--scope", help="a sealed scope this device reads, e.g. health (default user: every device)")


def scope_argument(args) -> dict:
    """The scope= keyword of a write when --scope was given; without it the API's default applies."""
    return {} if args.scope is None else {"scope": args.scope}


def scope_names(text: str) -> list[str]:
    """--scopes a,b as names in the order given, each once; an empty name is a usage mistake."""
    from agentlog.errors import UsageError

    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UsageError(f"--scopes {text!r} must list scope names separated by commas, e.g. health,topic:home")
    return list(dict.fromkeys(names))


def cmd_scopes_create(args) -> int:
    from agentlog.documents import scope_doc

    with open_home(args) as store:
        require_group(store)
        store.scopes.create(args.scope)
        doc = shown(scope_doc(store.scopes.get(args.scope)))
    print(f"created scope '{doc['scope']}' (key epoch {doc['epoch']}); readers: {_readers(doc)}")
    return 0


def cmd_scopes_grant(args) -> int:
    from agentlog.documents import scope_doc

    with open_home(args) as store:
        require_group(store)
        store.scopes.grant(args.scope, args.devices)
        doc = shown(scope_doc(store.scopes.get(args.scope)))
    print(f"granted '{doc['scope']}': readers now {_readers(doc)}")
    return 0


def cmd_scopes_revoke(args) -> int:
    from agentlog.documents import scope_doc

    with open_home(args) as store:
        require_group(store)
        store.scopes.revoke(args.scope, args.device)
        member = store.roster().find(args.device)
        name = shown(member.name if member is not None else args.device)
        doc = shown(scope_doc(store.scopes.get(args.scope)))
    print(f"revoked '{name}' from '{doc['scope']}': key epoch {doc['epoch']} from now on; "
          f"readers now {_readers(doc)} (what it already held stays readable to it)")
    return 0


def cmd_scopes_list(args) -> int:
    from agentlog.documents import scope_docs

    with open_home(args) as store:
        docs = scope_docs(store)
    if args.json:
        print_json(docs)
        return 0
    if not docs:
        print("no sealed scopes: everything is in scope user, readable by every device", file=sys.stderr)
        return 0
    docs = shown(docs)
    width = max(len(d["scope"]) for d in docs)
    for d in docs:
        reads = "reads" if d["can_read"] else "cannot read"
        print(f"{d['scope']:<{width}}  epoch {d['epoch']:<4} {reads:<12} readers: {_readers(d)}")
    return 0


def _readers(doc: dict) -> str:
    return ", ".join(r["name"] or r["id"][:16] for r in doc["readers"]) or "none"
