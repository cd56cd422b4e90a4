"""The MCP server's resources (the preference profile, each setting, each memory entry, the open conflicts) and
their subscriptions: `resources/subscribe` records a session's interest in a URI, and a watcher on the store
(agentlog.watch) sends `notifications/resources/updated` for each subscribed URI a change touches, whichever
device's events made it. Every resource is the JSON document the matching tool returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import EmptyResult

from agentlog.documents import entry_doc, frontier_by_name
from agentlog.errors import AgentlogError
from agentlog.mcp.schemas import with_iso

log = logging.getLogger(__name__)
PROFILE = "agentlog://preferences"
SETTING = "agentlog://preferences/{setting}"
ENTRY = "agentlog://memory/{id}"
CONFLICTS = "agentlog://conflicts"
JSON = "application/json"


def uris_of(change) -> set[str]:
    """The resource URIs a watch.Change touches."""
    if change.view == "pref":
        uris = {PROFILE, SETTING.format(setting=change.setting)}
    elif change.view == "memory":
        uris = {ENTRY.format(id=change.entry.hex())}
    else:                                       # the views were folded again, or changes were missed
        return {"*"}
    return uris | {CONFLICTS} if change.conflict else uris


class Resources:
    """Reads each resource from the store, one call at a time with the tools (`guard`)."""

    def __init__(self, store, guard: Callable):
        self.store, self.guard = store, guard

    def _read(self, build: Callable[[], dict]) -> str:
        with self.guard:
            try:
                return json.dumps(with_iso(build()))
            except AgentlogError as exc:
                raise ResourceError(str(exc)) from None

    def profile(self) -> str:
        """Every setting this device knows of, answered with no context: the user's preference profile."""
        def build():
            store = self.store
            frontier = frontier_by_name(store.roster(), store.frontier())
            return {"settings": [{**a.to_json(), "frontier": frontier} for a in store.prefs.list()]}
        return self._read(build)

    def setting(self, setting: str) -> str:
        """One setting's answer on this device with no context (as get_preference)."""
        def build():
            found = self.store.prefs.get(setting)
            return {**found.answer.to_json(), "frontier": frontier_by_name(self.store.roster(), found.frontier)}
        return self._read(build)

    def entry(self, id: str) -> str:          # noqa: A002 - the URI template's variable
        """One memory entry as this device sees it (as memory_get)."""
        return self._read(lambda: entry_doc(self.store, id))

    def conflicts(self) -> str:
        """What needs the user: memory entries with a field in conflict, and settings whose answer is uncertain."""
        def build():
            from agentlog.documents import author_names

            names = author_names(self.store)
            return {"memory": [e.to_json(names) for e in self.store.memory.conflicts()],
                    "preferences": [a.to_json() for a in self.store.prefs.list() if a.uncertain]}
        return self._read(build)

    def register(self, server) -> None:
        for uri, name, title, description, read in (
            (PROFILE, "preferences", "Preference profile",
             "Every setting this device knows of, each answered with no context (the fields of get_preference).",
             self.profile),
            (SETTING, "preference", "One preference", "One setting's answer on this device with no context, as "
             "get_preference gives it; subscribe to hear when it changes.", self.setting),
            (ENTRY, "memory_entry", "One memory entry", "One memory entry (32 hex digits) as memory_get gives it; "
             "subscribe to hear when it changes.", self.entry),
            (CONFLICTS, "conflicts", "Open conflicts", "Memory entries with a field two devices changed at once, "
             "and settings whose answer is uncertain: what to ask the user about.", self.conflicts)):
            server.resource(uri, name=name, title=title, description=description, mime_type=JSON)(read)


class Subscriptions:
    """Which session subscribed to which URI; `run` sends the updates as the store's views change."""

    def __init__(self, store):
        self.store = store
        self.sessions: dict[Any, set[str]] = {}

    async def subscribe(self, ctx, params) -> EmptyResult:
        self.sessions.setdefault(ctx.session, set()).add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(self, ctx, params) -> EmptyResult:
        self.sessions.get(ctx.session, set()).discard(str(params.uri))
        return EmptyResult()

    async def run(self) -> None:
        """Watch the store until cancelled, sending `notifications/resources/updated` for subscribed URIs."""
        with self.store.watch() as watcher:
            async for change in watcher:
                touched = uris_of(change)
                for session, uris in list(self.sessions.items()):
                    for uri in sorted(uris if "*" in touched else uris & touched):
                        try:
                            await session.send_resource_updated(uri)
                        except Exception as exc:           # a session that went away: forget it
                            log.info("dropping a subscriber: %s", exc)
                            self.sessions.pop(session, None)
                            break
