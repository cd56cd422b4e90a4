"""The MCP tools' output schemas and titles: what each tool's structured result holds, for the model that reads
it. Every object also allows fields not named here (a later agentlog may add some); every `X_ms` time (Unix
milliseconds) has an `X_iso` beside it (ISO 8601 UTC, or null for 0), added by `with_iso`."""

from __future__ import annotations

from typing import Any

from agentlog.text import iso


def _obj(description: str, required: tuple[str, ...] = (), **properties: dict) -> dict:
    return {"type": "object", "description": description, "properties": properties, "required": list(required),
            "additionalProperties": True}


def _s(description: str, nullable: bool = False) -> dict:
    return {"type": ["string", "null"] if nullable else "string", "description": description}


def _n(description: str, kind: str = "number", nullable: bool = False) -> dict:
    return {"type": [kind, "null"] if nullable else kind, "description": description}


def _list(description: str, items: dict) -> dict:
    return {"type": "array", "description": description, "items": items}


EVENT = _obj("The event written.", ("event",), event=_s("Its event id (64 hex digits)."))
FRONTIER = {"type": "object", "description": "Device name -> how much of its log (seq) the answer reflects.",
            "additionalProperties": {"type": "integer"}}
ANSWER = _obj(
    "A setting's answer on this device.", ("setting", "value", "source", "confidence", "uncertain"),
    setting=_s("The setting's name."), value=_s("The value; null when nothing is known.", True),
    confidence=_n("How sure, 0 to 1."), source=_s("override, explicit, learned or default."),
    uncertain={"type": "boolean", "description": "Do not act on it automatically: ask the user."},
    stale_override={"type": "boolean", "description": "This device's override stands beside a changed belief."},
    context_bucket={"type": ["object", "null"], "description": "The part of the context that answered."},
    scores={"type": "object", "description": "Each value's decayed learned weight.",
            "additionalProperties": {"type": "number"}},
    frontier=FRONTIER,
    contributions=_list("With explain: the events behind the answer, strongest first.", _obj(
        "One event that decided the answer.", (), id=_s("Its event id."), author=_s("The device that wrote it."),
        kind=_s("observation, decision, correction, pref.set or summary."), value=_s("Its value.", True),
        time=_s("When it was written (ISO 8601 UTC)."), weight=_n("Its weight now.", nullable=True))))
CANDIDATE = _obj("One standing value of a field.", ("value", "device", "event"), value={"description": "The value."},
                 device=_s("The device that wrote it."), event=_s("Its event id."),
                 time_ms=_n("When (Unix ms).", "integer"), time_iso=_s("When (ISO 8601 UTC)."))
ENTRY = _obj(
    "A memory entry as this device sees it.", ("id", "content", "tags", "deleted", "conflicts"),
    id=_s("The entry id (32 hex digits)."), type=_s("fact, preference, decision, finding, context or conversation; "
                                                    "null when deleted.", True),
    content=_s("What is remembered; null when deleted.", True), tags=_list("Its tags.", {"type": "string"}),
    confidence=_n("0 to 1; null when deleted.", nullable=True), scope=_s("user, or a sealed scope."),
    device=_s("The device that put it."), created_ms=_n("When it was put (Unix ms).", "integer"),
    created_iso=_s("When it was put (ISO 8601 UTC)."), updated_ms=_n("Last change (Unix ms).", "integer"),
    updated_iso=_s("Last change (ISO 8601 UTC)."),
    deleted=_list("Who deleted it (empty: not deleted).", CANDIDATE),
    merged_into=_s("The entry it was merged into (then deleted names the merge), or null.", True),
    conflicts={"type": "object", "description": "Field -> its standing values, the shown one first: settle with "
               "memory_resolve.", "additionalProperties": {"type": "array", "items": CANDIDATE}})
WRITTEN = _obj("The entry written.", ("id", "event", "entry"), id=_s("The entry id."), event=_s("The event id."),
               entry=ENTRY)
ERASED = _obj("What was erased.", ("requests",), requests=_list("The erase requests' event ids.", {"type": "string"}))
SCOPE = _obj("A sealed scope.", ("scope", "can_read"), scope=_s("Its name, to pass as scope to a write."),
             readers=_list("Its reader devices.", {"type": "object"}), epoch=_n("Its key epoch.", "integer"),
             can_read={"type": "boolean", "description": "Whether this device reads it."})
STATUS = _obj(
    "This device and how it syncs.", ("device", "name", "events", "peers"), device=_s("This device's id."),
    name=_s("This device's name."), group=_s("The group id.", True), events=_n("Events held.", "integer"),
    heads={"type": "object", "description": "Device name -> its latest event held here."},
    views={"type": "object", "description": "View -> version, digest (equal on devices holding the same events)."},
    peers=_list("Each known peer.", _obj(
        "A peer.", ("state",), name=_s("Its name."), address=_s("Its address.", True),
        state=_s("connected, partitioned or never (a relay: connecting, live, unreachable, refused, never; an address "
                 "found on the local network and not connected yet: announced or gone)."),
        discovered={"type": "boolean", "description": "Found announced on the local network (docs/discovery.md)."},
        last_seen_ms=_n("Last seen (Unix ms, 0: never).", "integer"),
        last_seen_iso=_s("Last seen (ISO 8601 UTC).", True),
        we_lack=_n("Its events this device lacked.", "integer", True),
        they_lack=_n("This device's events it lacked.", "integer", True), error=_s("The last error."))),
    scopes=_list("The sealed scopes, each with unread: sealed events held but not readable here.", SCOPE))

OUTPUTS: dict[str, dict] = {
    "observe": EVENT, "correct": EVENT, "set_preference": EVENT, "set_override": EVENT, "clear_override": EVENT,
    "decide": _obj("The decision written.", ("decision_id",), decision_id=_s("Its id: pass it to correct.")),
    "pref_forget": _obj("The forget written.", ("setting", "forget", "requests"), setting=_s("The setting."),
                        forget=_s("The forget's event id."),
                        requests=_list("With erase: the erase requests' ids.", {"type": "string"})),
    "get_preference": ANSWER,
    "list_preferences": _obj("Every setting's answer.", ("settings",), settings=_list("By name.", ANSWER)),
    "memory_put": _obj("The entry put.", ("id", "entry"), id=_s("The new entry's id."), entry=ENTRY),
    "memory_update": WRITTEN, "memory_delete": WRITTEN, "memory_resolve": WRITTEN, "memory_merge": WRITTEN,
    "memory_forget": _obj("The erasure.", ("id", "requests"), id=_s("The entry id."),
                          requests=_list("The erase request's id.", {"type": "string"})),
    "forget_events": ERASED,
    "memory_get": ENTRY,
    "memory_search": _obj("Hits, best first.", ("hits",), hits=_list("Each hit.", _obj(
        "A hit.", ("entry", "score"), entry=ENTRY, score=_n("Higher is nearer."))), model=_s("The query's model."),
        mode=_s("lexical (words only: the built-in embedder), hybrid (words and meaning) or semantic (meaning)."),
        ranking=_s("hybrid, lexical or vector."), searched=_n("Entries considered.", "integer")),
    "memory_duplicates": _obj("Pairs that say nearly the same thing, most similar first.", ("pairs",),
                              pairs=_list("Each pair.", _obj("A pair.", ("a", "b", "similarity"), a=ENTRY, b=ENTRY,
                                                             similarity=_n("0 to 1.")))),
    "memory_conflicts": _obj("Entries with a field in conflict.", ("entries",), entries=_list("By id.", ENTRY)),
    "list_scopes": _obj("The sealed scopes.", ("scopes",), scopes=_list("By name.", SCOPE)),
    "status": STATUS,
}

TITLES = {
    "observe": "Record an observation", "decide": "Record a decision", "correct": "Record a correction",
    "set_preference": "State a preference", "set_override": "Override on this device",
    "clear_override": "Clear this device's override", "pref_forget": "Forget a setting",
    "get_preference": "Get a preference", "list_preferences": "List preferences", "memory_put": "Remember",
    "memory_update": "Update a memory", "memory_delete": "Delete a memory", "memory_forget": "Erase a memory",
    "forget_events": "Erase events", "memory_resolve": "Settle a memory conflict", "memory_get": "Get a memory",
    "memory_search": "Search memory", "memory_conflicts": "List memory conflicts", "memory_merge": "Merge memories",
    "memory_duplicates": "Find duplicate memories", "list_scopes": "List sealed scopes",
    "status": "Device and sync status",
}


def with_iso(doc: Any) -> Any:
    """`doc` with an `X_iso` (ISO 8601 UTC; null for 0) beside every integer `X_ms`, at any depth."""
    if isinstance(doc, list):
        return [with_iso(d) for d in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        out[key] = with_iso(value)
        if key.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool):
            out[key[:-3] + "_iso"] = iso(value) if value > 0 else None
    return out

