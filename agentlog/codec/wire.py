"""Strict decoding of single-segment Cap'n Proto messages from outside.

Bytes are hashed exactly as received, so one message must have one encoding we
accept: a single segment, no trailing bytes, within a size limit, and a traversal
limit tied to its length so a crafted message cannot amplify work.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import capnp

from agentlog.errors import DecodeError, SizeLimitError

NESTING_LIMIT = 16
_TABLE = struct.Struct("<II")


def traversal_limit(raw: bytes) -> int:
    """How many words a reader may visit in `raw`: its length in words, plus 8."""
    return len(raw) // 8 + 8


def check_framing(raw: bytes, limit: int, what: str) -> None:
    """Raise unless `raw` is one single-segment message of at most `limit` bytes."""
    if len(raw) > limit:
        raise SizeLimitError(f"{what} is {len(raw)} bytes, over the limit of {limit}")
    if len(raw) < 8 or len(raw) % 8:
        raise DecodeError(f"{what} is {len(raw)} bytes, not a Cap'n Proto message")
    segments_minus_one, words = _TABLE.unpack_from(raw)
    if segments_minus_one != 0:
        raise DecodeError(f"{what} has {segments_minus_one + 1} segments; exactly one is allowed")
    if 8 + 8 * words != len(raw):
        raise DecodeError(f"{what} declares {8 + 8 * words} bytes but holds {len(raw)}")


def build(struct_type, fill, value) -> bytes:
    """Encode `value` with `fill(builder, value)` as one single-segment message, however large."""
    msg = struct_type.new_message()
    fill(msg, value)
    raw = msg.to_bytes()
    if struct.unpack_from("<I", raw)[0] != 0:
        msg = struct_type.new_message(num_first_segment_words=len(raw) // 8 + 8)
        fill(msg, value)
        raw = msg.to_bytes()
    return raw


@contextlib.contextmanager
def reader(struct_type, raw: bytes, limit: int, what: str) -> Iterator:
    """Open `raw` as `struct_type` after framing checks; capnp failures become DecodeError."""
    check_framing(raw, limit, what)
    try:
        with struct_type.from_bytes(raw, traversal_limit_in_words=traversal_limit(raw),
                                    nesting_limit=NESTING_LIMIT) as msg:
            yield msg
    except (
        capnp.KjException,
        ValueError,
        AttributeError,
        UnicodeDecodeError,
        RuntimeError,
        TypeError,
        IndexError,
    ) as exc:
        raise DecodeError(f"{what} does not decode: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split("; ", 1)[-1][:160]
