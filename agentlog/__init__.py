"""agentlog: signed, hash-chained event logs for one agent across a person's devices.

`agentlog.open(home)` gives a `Store`; `store.prefs` (`Preferences`) and `store.memory`
(`Memory`) are the APIs the CLI uses, and they answer with the types named in `__all__`.
Every error agentlog raises on purpose is an `AgentlogError`. Ids are taken as bytes or as
the hex the CLI prints.

Names load on first use, so `agentlog pref get` does not pay for the event codec.
"""

from __future__ import annotations

import importlib

from agentlog.errors import (
    AgentlogError,
    EventError,
    HomeError,
    InvalidValueError,
    PeerError,
    SnapshotError,
    StoreError,
    TokenError,
    UsageError,
)

__all__ = [
    "AgentlogError", "Answer", "Candidate", "Contribution", "Event", "EventError", "Explanation", "Header", "Hit",
    "HomeError", "InvalidValueError", "Lookup", "Memory", "MemoryEntry", "PeerError", "Preferences", "SearchResult",
    "SnapshotError", "Store", "StoreError", "TokenError", "UsageError", "__version__", "open", "payloads",
]
_LAZY = {
    "Event": ("log.event", "Event"),
    "Header": ("log.event", "Header"),
    "Store": ("store.store", "Store"),
    "open": ("store.home", "open_home"),
    "payloads": ("log.payloads", None),
    "Preferences": ("prefs.api", "Preferences"),
    "Lookup": ("prefs.api", "Lookup"),
    "Explanation": ("prefs.api", "Explanation"),
    "Answer": ("prefs.reducer", "Answer"),
    "Contribution": ("prefs.reducer", "Contribution"),
    "Memory": ("memory.api", "Memory"),
    "MemoryEntry": ("memory.api", "MemoryEntry"),
    "Candidate": ("memory.api", "Candidate"),
    "Hit": ("memory.api", "Hit"),
    "SearchResult": ("memory.api", "SearchResult"),
}


def __getattr__(name: str):
    if name == "__version__":
        return _version()
    if name not in _LAZY:
        raise AttributeError(f"module 'agentlog' has no attribute {name!r}")
    module, attr = _LAZY[name]
    found = importlib.import_module(f".{module}", __name__)
    value = found if attr is None else getattr(found, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    """The installed distribution's version (the metadata lookup costs milliseconds, so only when asked)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        found = version("agentlog")
    except PackageNotFoundError:
        found = "unknown (not installed)"
    globals()["__version__"] = found
    return found
