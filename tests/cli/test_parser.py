"""The command line built for one command (agentlog.cli.main._parser) is the whole one's part for that command."""

from __future__ import annotations

import argparse

import pytest

from agentlog.cli import main


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def _helps(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    """Every (sub)command's help text, by its words."""
    out = {prefix: parser.format_help()}
    for name, child in _commands(parser).items():
        out.update(_helps(child, f"{prefix} {name}"))
    return out


FULL = main._parser()


@pytest.mark.parametrize("command", sorted(_commands(FULL)))
def test_a_commands_own_parser_is_the_whole_parsers_part_for_it(command):
    narrow = main._parser(command)
    assert list(_commands(narrow)) == [command]
    assert _helps(_commands(narrow)[command]) == _helps(_commands(FULL)[command])


@pytest.mark.parametrize(("words", "command"), [
    (["serve", "--listen", "x:1"], "serve"), (["--home", "h", "pref", "get", "s"], "pref"),
    (["--home=h", "status"], "status"), (["--help"], None), (["--version"], None), ([], None), (["--home"], None),
    (["--home", "h"], None), (["--home", "h", "--help", "serve"], None),
])
def test_the_command_is_found_only_after_home_options(words, command):
    assert main._command(words) == command


def test_an_unknown_command_gets_the_whole_parser_and_its_error(capsys):
    assert main._parser("no-such-command").format_help() == FULL.format_help()
    with pytest.raises(SystemExit):
        main.main(["no-such-command"])
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
