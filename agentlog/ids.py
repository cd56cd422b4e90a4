"""Ids handed to the Python API: the raw bytes, or the hex the CLI prints. Pure: no I/O."""

from __future__ import annotations

from agentlog.errors import InvalidValueError

EVENT_ID_LEN = 32
_HEX = frozenset("0123456789abcdefABCDEF")


def id_bytes(value: bytes | str, what: str = "event id", length: int = EVENT_ID_LEN) -> bytes:
    """`value` as raw id bytes: `length` bytes, or a string of exactly 2 * `length` hex digits.

    Raises:
        InvalidValueError: anything else, naming `what` and the length it must have.
    """
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == length:
        return bytes(value)
    if isinstance(value, str) and len(value) == 2 * length and _HEX.issuperset(value):
        return bytes.fromhex(value)
    raise InvalidValueError(f"{what} {_shown(value)} is not {length} bytes or {2 * length} hex digits")


def _shown(value) -> str:
    if isinstance(value, str):
        return repr(value[:80])
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"of {len(value)} bytes"
    return f"of type {type(value).__name__}"
