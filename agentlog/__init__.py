"""agentlog: signed, hash-chained event logs for one agent across a person's devices.

Names load on first use, so `agentlog pref get` does not pay for the event codec.
"""

from __future__ import annotations

import importlib

from .errors import AgentlogError

__all__ = ["AgentlogError", "Event", "Header", "Store", "open", "payloads"]
_LAZY = {"Event": ("event", "Event"), "Header": ("event", "Header"), "Store": ("store", "Store"),
         "open": ("home", "open_home"), "payloads": ("payloads", None)}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'agentlog' has no attribute {name!r}")
    module, attr = _LAZY[name]
    found = importlib.import_module(f".{module}", __name__)
    value = found if attr is None else getattr(found, attr)
    globals()[name] = value
    return value
