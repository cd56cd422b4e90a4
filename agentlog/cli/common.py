"""What every command module of the CLI shares: the one-line-error parser, subcommand groups, opening
the home, the --context option, and text made printable for people.

Imported on every command's path, `agentlog pref get` included: module-level imports stay the
standard library's cheapest; the store and the text helpers load inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import sys

from agentlog.cli.exits import EXIT_ERROR
from agentlog.errors import UsageError

LINE_LIMIT = 2000               # characters of an error or problem line shown (agentlog.text)
NO_GROUP = "this device has not joined a group yet: run agentlog devices join TOKEN"


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, like every other error."""

    def error(self, message: str):
        print(f"agentlog: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def actions(parser: argparse.ArgumentParser, common: argparse.ArgumentParser, metavar: str = "ACTION"):
    """Subcommands of `parser` that each take the common options; the bare group prints its help."""
    sub = parser.add_subparsers(metavar=metavar, parser_class=Parser)
    add = sub.add_parser
    sub.add_parser = lambda *a, **k: add(*a, parents=[common], **k)
    parser.set_defaults(func=lambda args: parser.print_help() or EXIT_ERROR)
    return sub


def open_home(args):
    """The store of the home --home names, as a context manager (agentlog.store.home.open_home)."""
    from agentlog.store import home

    return home.open_home(args.home)


def home_path(args):
    """The path of the home --home names ($AGENTLOG_HOME or the default when it names none)."""
    from agentlog.store import home

    return home.resolve(args.home)


def require_group(store) -> None:
    """Refuse to go on (UsageError) when this device has not joined a group yet."""
    if store.group is None:
        raise UsageError(NO_GROUP)


def print_json(doc) -> None:
    print(json.dumps(doc, indent=2))


def shown(doc, limit: int | None = None):
    """`doc` (a string, or a --json document) as printed for people: every string escaped and bounded by
    agentlog.text, since names, values, content and reasons may come from other devices."""
    from agentlog.text import LIMIT, printable_doc

    return printable_doc(doc, limit or LIMIT)


def iso(ms: int) -> str:
    """Epoch milliseconds as the ISO 8601 UTC time every command prints (agentlog.audit.format)."""
    from agentlog.audit import format as audit_format

    return audit_format.iso(ms)


def context_option(c: argparse.ArgumentParser) -> None:
    c.add_argument("--context", action="append", default=[], metavar="K=V",
                   help="where it applies, e.g. daypart=night (repeat, at most 4 keys)")


def context(pairs: list[str]) -> list[tuple[str, str]]:
    """--context key=value options as pairs, in the order given (the API checks keys and values)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--context {pair!r} must look like key=value")
        out.append((key, value))
    return out
