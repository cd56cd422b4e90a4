"""Text that other devices wrote, made safe to show on a terminal or in a log line. Pure.

A peer's error text, a device name from an enrolment event, a memory entry's content: any of it
may hold escape sequences that rewrite a terminal, newlines that forge log lines, bidi overrides
that reorder what is read, or megabytes. `printable` shows such characters as visible escapes
(ESC as `\\x1b`, a newline as `\\n`, U+202E as `\\u202e`) and cuts the text at a limit, saying
how long it was. Printable text within the limit comes back unchanged; `--json` output is not
passed through here (JSON escapes control characters itself). `iso` writes an event's time as the
UTC text exports and replays show (here, below every part that shows one).
"""

from __future__ import annotations

import time
import unicodedata

from agentlog.limits import MAX_TIME_MS, MIN_TIME_MS

LIMIT = 300
"""Characters shown of one piece of text (a name, a value, a reason) unless the caller says."""

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories shown as escapes: controls (C0, DEL, C1), format characters (bidi
overrides and isolates, zero-width spaces and joiners, tag characters), lone surrogates,
line and paragraph separators."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                              else f"\\U{code:08x}")


def printable(text: str, limit: int = LIMIT) -> str:
    """`text` with every hidden character escaped, at most `limit` characters of it; a cut text ends
    with "… (N characters)", N its length before the cut."""
    if len(text) <= limit and text.isprintable():
        return text
    out, size = [], 0
    for ch in text[:limit]:
        piece = _escape(ch) if unicodedata.category(ch) in _HIDDEN else ch
        size += len(piece)
        if size > limit:
            break
        out.append(piece)
    else:
        if len(text) <= limit:
            return "".join(out)
    return "".join(out) + f"… ({len(text)} characters)"


def printable_doc(value, limit: int = LIMIT):
    """A copy of a JSON-like document (dicts, lists, strings, numbers) with every string, keys
    included, passed through `printable`: what a command prints for people from its --json doc."""
    if isinstance(value, str):
        return printable(value, limit)
    if isinstance(value, dict):
        return {printable_doc(k, limit): printable_doc(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_doc(v, limit) for v in value]
    return value


_SECOND: list = [None, ""]


def iso(ms: int) -> str:
    """UTC time with milliseconds, e.g. 2026-11-21T10:52:14.123Z (the second's text is cached: exports are sorted);
    a time outside the range events may hold (an older store may keep one) as its milliseconds, e.g. "-5ms"."""
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        return f"{ms}ms"
    second = ms // 1000
    if _SECOND[0] != second:
        _SECOND[0], _SECOND[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_SECOND[1]}.{ms % 1000:03d}Z"
