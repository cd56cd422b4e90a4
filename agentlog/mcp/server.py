"""`agentlog mcp`: one device's preferences, memory and status as Model Context Protocol tools over stdio.

An AI agent's MCP client starts `agentlog mcp --home HOME` and calls these tools instead of
shelling out to the CLI. One Store stays open for the server's life. Each tool is a thin
wrapper over store.prefs or store.memory and returns the document the matching CLI command
prints with --json, built by the same helpers in agentlog.documents, so an agent sees the same
fields either way (a list comes wrapped in an object: a tool's structured result is one), plus an
`X_iso` time beside each `X_ms` one. The tool descriptions (one paragraph each), titles and output
schemas (agentlog.mcp.schemas) are written for the language model that reads them. The resources and
their subscriptions are agentlog.mcp.resources (docs/watching.md).

Errors: an AgentlogError becomes a tool error (isError) whose text is exactly str(exc): for
what the Python API refuses, the message the CLI prints after "agentlog: error: ", without
that prefix. Arguments of the wrong JSON type are refused by the SDK's check, as a tool error of
one line of ours naming the tool, the argument, what it must be and what it got. A bug is the SDK's bare
"Error executing tool NAME", its traceback logged to stderr only. Stdout is the protocol channel: the SDK points fd 1 at
stderr while it serves, and nothing here prints.

The SDK runs each call on a worker thread; a lock runs them one at a time, because the
store's lookup and search caches are not shared across threads.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, SubscribeRequestParams, TextContent, ToolAnnotations, UnsubscribeRequestParams
from pydantic import Field, ValidationError

from agentlog.documents import author_names, contribution, entry_doc, frontier_by_name, scope_docs, status_doc
from agentlog.errors import AgentlogError, UsageError
from agentlog.mcp.resources import Resources, Subscriptions
from agentlog.mcp.schemas import OUTPUTS, TITLES, with_iso
from agentlog.text import printable

INSTRUCTIONS = """\
agentlog holds the user's preferences and this agent's long-term memory, shared by all of the \
user's devices: each device keeps a signed log and syncs with the others, so what you record \
here is known on the user's other devices too.
Before choosing anything the user may care about (a theme, a unit, a tone, a tool), call \
get_preference. If it answers with no value, or with "uncertain": true, do not act on your own: \
ask the user, then record the answer. Record what you see the user do with observe, what the \
user states outright with set_preference, your own choices with decide, and the user's \
corrections of those choices with correct. Keep durable \
facts about the user and their work with memory_put; find them with memory_search. When the user \
asks you to forget something for good, memory_forget (an entry) and pref_forget with erase (a \
setting) erase it from the whole history on every device.
What the user wants kept to some devices only (health notes, say) goes in a sealed scope: pass its \
name as scope to the write (list_scopes shows them and whether this device reads each).
A tool error says what was wrong; fix the arguments and call again."""

Setting = Annotated[str, Field(description="The setting's name, without spaces, e.g. editor.theme, units.temperature, "
                                           "reply.length. Use the same name every time for the same setting.")]
Value = Annotated[str, Field(description="The value as text, e.g. dark, celsius, short, 14, true.")]
Context = Annotated[dict[str, str] | None, Field(
    description="Where this applies, as up to 4 key/value pairs, e.g. {\"daypart\": \"night\", \"app\": \"terminal\"}. "
                "Omit it for everywhere. Keys: letters, digits and _ . : -")]
Reason = Annotated[str, Field(description="Optional: why, in a few words.")]
MemoryId = Annotated[str, Field(description="The entry's id (32 hex digits) as memory_put returned it, "
                                            "or a unique prefix of at least 4 hex digits.")]
MemoryType = Annotated[str, Field(description="One of fact, preference, decision, finding, context, conversation.")]
Confidence = Annotated[float, Field(description="How sure you are, from 0 to 1.")]
Weight = Annotated[float, Field(description="1 is one ordinary observation; more for a stronger "
                                           "signal (above 0, at most 1000000).")]
Scope = Annotated[str | None, Field(description="Optional: a sealed scope (see list_scopes), e.g. health, for what "
                                                "only that scope's reader devices may read. Omit it for scope user, "
                                                "which every device of the user reads.")]


def _scoped(scope: str | None) -> dict:
    """The scope= keyword of a write when the tool was given one; without it the API's default applies."""
    return {} if scope is None else {"scope": scope}


def _event(eid: bytes) -> dict:
    return {"event": eid.hex()}


class Tools:
    """The server's tools over one open store; each method is one tool and its docstring is its description."""

    def __init__(self, store, home_path):
        self.store = store
        self.home_path = home_path

    # -- preferences: recording ---------------------------------------------------------

    def observe(self, setting: Setting, value: Value, context: Context = None,
                weight: Weight = 1.0, scope: Scope = None) -> dict[str, Any]:
        """Record that the user was seen using a value of a setting (they switched the theme to dark, they
        wrote in celsius). Observations are the main evidence get_preference learns from; one observation
        is weak, several agree into a confident preference. Returns the event id."""
        return _event(self.store.prefs.observe(setting, value, context, weight, **_scoped(scope)))

    def decide(self, setting: Setting, value: Value, confidence: Confidence = 0.5, context: Context = None,
               reason: Reason = "", scope: Scope = None) -> dict[str, Any]:
        """Record a choice you made for the user without being told (you picked a short reply, a dark theme).
        It counts as weak evidence. Returns decision_id: keep it, and if the user then changes or rejects
        your choice, pass it to correct."""
        return {"decision_id": self.store.prefs.decide(setting, value, confidence, context, reason,
                                                       **_scoped(scope)).hex()}

    def correct(self, decision_id: Annotated[str, Field(description="The decision_id that decide returned "
                                                                    "(64 hex digits).")],
                value: Annotated[str, Field(description="The value the user wanted instead.")],
                reason: Reason = "", scope: Scope = None) -> dict[str, Any]:
        """Record that the user corrected one of your decisions to another value. A correction is strong
        evidence for the value the user wanted and against the one you chose. Returns the event id."""
        try:
            decision = bytes.fromhex(decision_id)
        except ValueError:
            decision = b""
        if len(decision) != 32:
            raise UsageError(f"decision id {decision_id!r} is not an event id (64 hex digits, as decide returns)")
        return _event(self.store.prefs.correct(decision, value, reason, **_scoped(scope)))

    def set_preference(self, setting: Setting, value: Value, context: Context = None,
                       scope: Scope = None) -> dict[str, Any]:
        """Record a preference the user stated explicitly ("always use metric units"). It outranks everything
        learned from observations and decisions, on every device, until the user states another. Do not use
        it for what you merely inferred: use observe or decide. Returns the event id."""
        return _event(self.store.prefs.set(setting, value, context, **_scoped(scope)))

    def set_override(self, setting: Setting, value: Value) -> dict[str, Any]:
        """Set a value on this device only, in every context, when the user wants it different here than on
        their other devices ("on this laptop, use the light theme"). get_preference then answers it with
        source "override" on this device; other devices keep the shared belief. Returns the event id."""
        return _event(self.store.prefs.override(setting, value))

    def pref_forget(self, setting: Setting,
                    erase: Annotated[bool, Field(description="Also erase the content of every observation, decision, "
                                                             "correction and statement about the setting so far, "
                                                             "on every device.")] = False,
                    reason: Annotated[str, Field(description="With erase: why, in a few words. Every device of the "
                                                             "user reads it; never repeat what is erased.")] = ""
                    ) -> dict[str, Any]:
        """Drop everything learned and stated about a setting so far, on every device: get_preference then
        answers from overrides alone, or as if nothing was known (overrides and the setting's configuration
        stay). With erase (when the user asks that what they did or said about it be forgotten, not only no
        longer used), that evidence's content and the overrides set so far are also erased from the whole
        history on every device. Returns the forget's event id and the erase requests' ids."""
        prefs = self.store.prefs
        if not erase:
            if reason:
                raise UsageError("reason goes with erase (a forget without it records no reason)")
            return {"setting": setting, "forget": prefs.forget(setting).hex(), "requests": []}
        forget, requests = prefs.forget(setting, erase=True, reason=reason)
        return {"setting": setting, "forget": forget.hex(), "requests": [r.hex() for r in requests]}

    def clear_override(self, setting: Setting) -> dict[str, Any]:
        """Remove this device's override of a setting, so it follows the shared belief again. An error if
        this device has no override of it. Returns the event id."""
        return _event(self.store.prefs.clear_override(setting))

    # -- preferences: reading -----------------------------------------------------------

    def get_preference(self, setting: Setting, context: Context = None,
                       explain: Annotated[bool, Field(description="Also list the events that decided the answer, "
                                                                  "strongest first.")] = False,
                       limit: Annotated[int, Field(description="With explain: at most this many events.")] = 10
                       ) -> dict[str, Any]:
        """What the user prefers for a setting, as this device believes it. Call it before choosing for the user.
        Fields: value (null when nothing is known yet); source: override (set on this device), explicit (the
        user stated it), learned (from observations, decisions and corrections) or default (nothing known);
        confidence from 0 to 1; uncertain: true means do not act on it automatically: ask the user, then
        record the answer; stale_override: this device's override was set against a shared belief that has
        since changed, so ask whether to keep it; context_bucket: which part of the context answered; scores:
        each value's decayed weight; frontier: how much of each device's log the answer reflects. With
        explain, contributions lists the events behind the answer (kind, value, device, weight)."""
        if limit < 1:
            raise UsageError("limit must be at least 1")
        prefs, roster = self.store.prefs, self.store.roster()
        if explain:
            found = prefs.explain(setting, context, limit=limit)
            contributions = [contribution(c, roster) for c in found.contributions]
            return {**found.answer.to_json(), "frontier": frontier_by_name(roster, found.frontier),
                    "contributions": contributions}
        found = prefs.get(setting, context)
        return {**found.answer.to_json(), "frontier": frontier_by_name(roster, found.frontier)}

    def list_preferences(self) -> dict[str, Any]:
        """Every setting this device knows of, each answered with no context, by name: the same fields as
        get_preference for each. Use it to get an overview of the user's preferences."""
        store = self.store
        frontier = frontier_by_name(store.roster(), store.frontier())
        return {"settings": [{**a.to_json(), "frontier": frontier} for a in store.prefs.list()]}

    # -- memory ---------------------------------------------------------------------------

    def _written(self, entry_id: bytes, event: bytes) -> dict[str, Any]:
        return {"id": entry_id.hex(), "event": event.hex(),
                "entry": self.store.memory.get(entry_id).to_json(author_names(self.store))}

    def memory_put(self, content: Annotated[str, Field(description="What to remember, as a self-contained "
                                                                   "statement, e.g. \"Anna's birthday is 3 May\".")],
                   type: MemoryType = "fact",
                   tags: Annotated[list[str] | None, Field(description="Labels to filter by later, without spaces, "
                                                                       "e.g. [\"family\", \"dates\"].")] = None,
                   confidence: Confidence = 1.0,
                   scope: Annotated[str, Field(description="Who may read it: user (default), every device of the "
                                                           "user; or a sealed scope (see list_scopes), e.g. health, "
                                                           "read only by that scope's reader devices.")] = "user"
                   ) -> dict[str, Any]:
        """Remember something for the long term, on all of the user's devices: a fact about the user, a finding,
        a decision and why. Search first (memory_search) and update an entry that already holds it rather than
        putting a duplicate. Returns the new entry's id and the entry."""
        memory = self.store.memory
        entry_id = memory.put(content, type=type, tags=tags or (), confidence=confidence, scope=scope)
        return {"id": entry_id.hex(), "entry": memory.get(entry_id).to_json(author_names(self.store))}

    def memory_update(self, id: MemoryId,
                      content: Annotated[str | None, Field(description="The new content, replacing the old.")] = None,
                      type: Annotated[str | None, Field(description="The new type: fact, preference, decision, "
                                                                    "finding, context or conversation.")] = None,
                      confidence: Annotated[float | None, Field(description="The new confidence, 0 to 1.")] = None,
                      add_tags: Annotated[list[str] | None, Field(description="Tags to add.")] = None,
                      remove_tags: Annotated[list[str] | None, Field(description="Tags to remove.")] = None
                      ) -> dict[str, Any]:
        """Change an entry: give only what changes. Fields written here replace every value this device holds
        for them, so writing a field in conflict also settles that conflict. Returns the entry id, the update's
        event id and the entry as it is now."""
        memory = self.store.memory
        entry_id = memory.id(id)
        return self._written(entry_id, memory.update(entry_id, content=content, type=type, confidence=confidence,
                                                     add_tags=add_tags or (), remove_tags=remove_tags or ()))

    def memory_delete(self, id: MemoryId, reason: Reason = "") -> dict[str, Any]:
        """Delete an entry on every device, for good: it cannot be updated or restored afterwards (put a new
        one instead). Use it when an entry is plainly wrong or no longer true; its text stays in the history
        (memory_forget erases it). Returns the entry id, the event id and the entry, whose deleted field now
        says who deleted it and why."""
        memory = self.store.memory
        entry_id = memory.id(id)
        return self._written(entry_id, memory.delete(entry_id, reason))

    def memory_merge(self, id: MemoryId, other: Annotated[str, Field(description="The entry merged into id: "
                                                                              "its id or a prefix.")],
                     content: Annotated[str | None, Field(description="Optional: id's new content, saying what "
                                                                      "both said.")] = None) -> dict[str, Any]:
        """Fold a near-duplicate (other) into id on every device: other's tags join id's, searches that found
        other find id, and other is deleted pointing at id (merged_into). Use memory_duplicates to find pairs.
        Returns id, the merge's event id and the entry as it is now."""
        memory = self.store.memory
        keep, gone = memory.id(id), memory.id(other)
        return self._written(keep, memory.merge(keep, gone, content))

    def memory_duplicates(self, threshold: Annotated[float, Field(
            description="The least similarity listed, above 0 and at most 1.")] = 0.35) -> dict[str, Any]:
        """Pairs of entries that say nearly the same thing, most similar first, each with its similarity (0 to
        1): candidates for memory_merge. Ask the user before merging when the two differ in substance."""
        names = author_names(self.store)
        return {"pairs": [{"a": a.to_json(names), "b": b.to_json(names), "similarity": round(score, 6)}
                          for a, b, score in self.store.memory.duplicates(threshold)]}

    def memory_forget(self, id: MemoryId, reason: Annotated[str, Field(
            description="Optional: why, in a few words. Every device of the user reads it; never repeat what is "
                        "erased.")] = "") -> dict[str, Any]:
        """Erase an entry's content from the whole history on every device: every version of it, its search
        index and vectors, and the bytes on disk; only the signed headers stay, marked erased. Use it when the
        user asks you to forget something for good (memory_delete only hides the entry: its text stays in the
        history). Returns the entry id and the erase request's id."""
        memory = self.store.memory
        entry_id = memory.id(id)
        return {"id": entry_id.hex(), "requests": [memory.forget(entry_id, reason).hex()]}

    def forget_events(self, event_ids: Annotated[list[str], Field(
            description="The events' ids (64 hex digits each), as the tools that wrote them returned them.")],
                      reason: Annotated[str, Field(description="Optional: why, in a few words. Every device of the "
                                                               "user reads it.")] = "") -> dict[str, Any]:
        """Erase given events' content (observations, decisions, corrections, statements, memory writes) from
        the whole history on every device, keeping their signed headers marked erased. Prefer memory_forget for
        a memory entry and pref_forget with erase for a setting: they find every event about it. Returns the
        erase requests' ids."""
        from agentlog.ids import id_bytes

        events = [id_bytes(text) for text in event_ids]
        return {"events": [e.hex() for e in events],
                "requests": [r.hex() for r in self.store.erase(events, reason=reason)]}

    def memory_resolve(self, id: MemoryId,
                       field: Annotated[str, Field(description="The field in conflict: content, type, confidence "
                                                               "or embedding.")],
                       value: Annotated[str | float, Field(description="The value to keep: one of the standing "
                                                                       "values or a new one (for embedding: the "
                                                                       "event id of the write to keep).")]
                       ) -> dict[str, Any]:
        """Settle a conflict that memory_conflicts or memory_get shows: write one value for the field over all
        its standing values. Ask the user which is right when it is not clear. An error if the field is not in
        conflict. Returns the entry id, the event id and the entry."""
        memory = self.store.memory
        entry_id = memory.id(id)
        return self._written(entry_id, memory.resolve(entry_id, field, value))

    def memory_get(self, id: MemoryId) -> dict[str, Any]:
        """One entry as this device sees it. Fields: id, type, content, tags, confidence, scope, device (who put
        it), created_ms and updated_ms (Unix milliseconds); deleted: empty, or who deleted it (then content
        is null); conflicts: for a field two devices changed at the same time, all its standing values,
        the shown one first: settle it with memory_resolve. An entry erased by memory_forget is an error
        saying so."""
        return entry_doc(self.store, id)

    def memory_search(self, query: Annotated[str, Field(description="What you are looking for, in words.")],
                      k: Annotated[int, Field(description="How many hits at most (1 to 1000).")] = 10,
                      type: Annotated[str | None, Field(description="Only entries of this type.")] = None,
                      tag: Annotated[str | None, Field(description="Only entries with this tag.")] = None,
                      scope: Annotated[str | None, Field(description="Only entries in this scope.")] = None,
                      lexical: Annotated[bool, Field(description="Rank by the query's words alone (BM25).")] = False
                      ) -> dict[str, Any]:
        """Find remembered entries best matching the query, best first: its words (BM25) and the embedder's
        vectors fused, entries long unused ranked a little lower (or, with lexical, by its words alone). Each hit
        has the entry (as memory_get) and a score (higher is better). Deleted entries are never returned.
        mode: lexical when the ranking matches words only, hybrid when it also matches meaning.
        searched: how many entries were considered."""
        store = self.store
        found = store.memory.search(query, k, type=type, tag=tag, scope=scope, lexical=lexical)
        names = author_names(store)
        return {"hits": [{"entry": h.entry.to_json(names), "score": round(h.score, 6)} for h in found.hits],
                "model": found.model, "mode": found.mode, "ranking": found.ranking, "searched": found.searched,
                "reembedded": found.reembedded, "excluded": found.excluded}

    def memory_conflicts(self) -> dict[str, Any]:
        """Entries with a field that two devices changed at the same time, each with all its standing values
        (entry.conflicts). Check it now and then and settle each with memory_resolve, asking the user when the
        right value is not clear."""
        names = author_names(self.store)
        return {"entries": [e.to_json(names) for e in self.store.memory.conflicts()]}

    # -- the device ---------------------------------------------------------------------------

    def list_scopes(self) -> dict[str, Any]:
        """The user's sealed scopes (e.g. health): what is written in one is encrypted so that only its reader
        devices can read it. Each: scope (its name, to pass as scope to a write), readers (devices by name
        and id), epoch (its key epoch: a new one starts when a reader is revoked), can_read (whether this
        device reads it; you can only write to a scope this device reads). Scope user, readable by every
        device, is not listed. Granting and revoking readers is for the user, through the CLI."""
        return {"scopes": scope_docs(self.store)}

    def status(self) -> dict[str, Any]:
        """This device and how it syncs: device and name, group, events held, heads (each device's latest
        seq held here), forks, views (each view's digest: two devices that hold the same events show the same
        digests), peers (each: state connected, partitioned or never; last_seen_ms; we_lack and they_lack:
        events each side was missing when last seen; error) and scopes (as list_scopes, each with unread: the
        sealed events this device carries but cannot read). Use it when the user asks whether their devices
        are in sync."""
        return status_doc(self.store, self.home_path)


READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
APPEND = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
TOOLS = {
    "observe": APPEND, "decide": APPEND, "correct": APPEND, "set_preference": APPEND,
    "set_override": APPEND, "clear_override": APPEND, "pref_forget": DELETE, "get_preference": READ,
    "list_preferences": READ, "memory_put": APPEND, "memory_update": APPEND, "memory_delete": DELETE,
    "memory_forget": DELETE, "forget_events": DELETE, "memory_resolve": APPEND, "memory_merge": DELETE,
    "memory_duplicates": READ,
    "memory_get": READ, "memory_search": READ, "memory_conflicts": READ, "list_scopes": READ, "status": READ,
}


def _guarded(method: Callable[..., dict], lock: threading.Lock) -> Callable[..., dict | CallToolResult]:
    """The tool method, one call at a time, with an AgentlogError returned as a tool error holding its message,
    and an ISO time beside every millisecond one."""
    @functools.wraps(method)
    def call(**arguments):
        with lock:
            try:
                return with_iso(method(**arguments))
            except AgentlogError as exc:
                return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
    return call


def argument_error(tool: str, exc: ValidationError) -> str:
    """The first argument pydantic refused, as one line of ours: which argument, what it must be, what it got."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "arguments"
    if err["type"] == "missing":
        return f"{tool}: argument {where} is required"
    problem = err["msg"][0].lower() + err["msg"][1:]
    got = printable(repr(err.get("input")), 80)
    return f"{tool}: argument {where}: {problem} (got {got})"


class Server(MCPServer):
    """The SDK's server with what agentlog adds: resource subscriptions (the SDK serves `resources/subscribe` only
    through its low-level server), argument errors in our words, and output schemas that describe each result."""

    def serve_subscriptions(self, subscriptions: Subscriptions) -> None:
        self._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams,
                                                  subscriptions.subscribe)
        self._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams,
                                                  subscriptions.unsubscribe)

    async def call_tool(self, name: str, arguments: dict[str, Any], context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_error(name, exc.__cause__)) from None
            raise

    async def list_tools(self):
        return [t.model_copy(update={"output_schema": OUTPUTS[t.name]}) if t.name in OUTPUTS else t
                for t in await super().list_tools()]


def build(store, home_path) -> Server:
    """An MCP server whose tools and resources read and write `store` (an open agentlog Store at `home_path`)."""
    from importlib.metadata import version

    subscriptions = Subscriptions(store)

    @contextlib.asynccontextmanager
    async def watching(_server):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(subscriptions.run)
            yield {}
            tasks.cancel_scope.cancel()

    server = Server("agentlog", instructions=INSTRUCTIONS, version=version("agentlog"), log_level="WARNING",
                    lifespan=watching)
    tools, lock = Tools(store, home_path), threading.Lock()
    for name, hints in TOOLS.items():
        method = getattr(tools, name)
        server.add_tool(_guarded(method, lock), title=TITLES[name], description=" ".join(method.__doc__.split()),
                        annotations=hints)
    Resources(store, lock).register(server)
    server.serve_subscriptions(subscriptions)
    return server


def serve_stdio(store, home_path) -> None:
    """Serve `store` over stdin and stdout until the client closes stdin."""
    build(store, home_path).run("stdio")
