"""Text full of escape codes and invisible characters, and the check that output holds none of them raw."""

from __future__ import annotations

import unicodedata

NASTY = "\x1b[2J\x1b]0;owned\x07first line\nsecond line\r\u202eevil\u200b\x00\x7f\x85tag\U000e0041"
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
EVIL_NAME = "ph\x1b[31mone\u202e\n"
LOG_LINE_MAX = 8192              # bytes of one daemon log line (its fields are at most 2048 characters)


def hidden(text: str) -> list[str]:
    """The characters of `text` a terminal would act on or hide, other than the newlines between lines."""
    return [c for line in text.split("\n") for c in line if unicodedata.category(c) in HIDDEN]


def assert_clean(text: str, max_line: int = 3000) -> None:
    assert not hidden(text), f"raw control characters {hidden(text)[:8]} in:\n{text[:2000]!r}"
    longest = max((len(line) for line in text.split("\n")), default=0)
    assert longest <= max_line, f"a line of {longest} characters"
