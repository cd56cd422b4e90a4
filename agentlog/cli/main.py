"""The `agentlog` command line: the entry point, the global options, and the dispatch to the command
modules beside it, each of which registers its own subcommands. Errors print one line and exit with
the code agentlog.cli.exits gives them; never a traceback for user mistakes or bad data.

Agents shell out to it, so each command imports what it needs inside its function:
`agentlog pref get` reads the view through agentlog.store.pref_lookup and never loads the
event codec (pycapnp). Keep module-level imports to the standard library's cheapest.
"""

from __future__ import annotations

import argparse
import sys

from agentlog.cli import (
    audit,
    backup,
    compact,
    devices,
    forget,
    log,
    mcp,
    memory,
    pair,
    peers,
    prefs,
    replay,
    scopes,
    scrub,
    status,
    sync,
    watch,
)
from agentlog.cli.common import LINE_LIMIT, Parser, actions, shown
from agentlog.cli.exits import EXIT_ERROR, exit_code
from agentlog.errors import AgentlogError

COMMANDS = (devices, pair, scopes, prefs, memory, watch, forget, log, replay, compact, scrub, status,   # --help's order
            sync, mcp, peers, audit, backup)
_TEXT_OPTIONS = frozenset({"--tag", "--add-tag", "--remove-tag", "--content", "--reason"})


def main(argv: list[str] | None = None) -> int:
    words = _attach_dash_values(sys.argv[1:] if argv is None else argv)
    parser = _parser(_command(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.func(args) or 0
    except AgentlogError as exc:
        print(f"agentlog: error: {shown(str(exc), LINE_LIMIT)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("agentlog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


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


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked (the lookup's import
    would cost every `agentlog pref get` several milliseconds)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import agentlog
        print(f"agentlog {agentlog.__version__}")
        parser.exit(0)


def _command(words: list[str]) -> str | None:
    """The command `words` name when only --home comes before it, else None (then every command's parser is built:
    the top level's help and errors list them all)."""
    i = 0
    while i < len(words) and words[i].startswith("--home"):
        i += 1 if "=" in words[i] else 2
    return words[i] if i < len(words) and not words[i].startswith("-") else None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line: global options, then each command module's subcommands; with `command`, only that
    command's parser is built (all of them cost every run ~15 ms of CPU), unless no module registers it."""
    home_help = "device home (default: $AGENTLOG_HOME or ~/.local/share/agentlog)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    p = Parser(prog="agentlog", description="Signed, hash-chained event logs for one agent across devices.")
    p.add_argument("--home", help=home_help)
    p.add_argument("--version", action=_Version, help="print agentlog's version and exit")
    sub = actions(p, common, "COMMAND")
    if command is not None:
        only = _Only(sub, command)
        for module in COMMANDS:
            module.register(only, common)
        if only.found:
            return p
    for module in COMMANDS:
        module.register(sub, common)
    return p


class _Only:
    """A subparsers action that adds the parser of one command and hands every other command's registration
    a stand-in that takes and ignores whatever is done to it."""

    def __init__(self, sub, command: str):
        self.sub, self.command, self.found = sub, command, False

    def add_parser(self, name: str, **kwargs):
        if name != self.command:
            return _Ignored()
        self.found = True
        return self.sub.add_parser(name, **kwargs)


class _Ignored:
    """Takes any call, attribute or assignment and ignores it (another command's parser, not built)."""

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name: str):
        return self

    def __setattr__(self, name: str, value) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
