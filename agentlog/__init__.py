"""agentlog: signed, hash-chained event logs for one agent across a person's devices."""

from __future__ import annotations

from . import payloads
from .errors import AgentlogError
from .event import Event, Header
from .home import open_home as open
from .store import Store

__all__ = ["AgentlogError", "Event", "Header", "Store", "open", "payloads"]
