"""A change as a watcher sees it (`Change`), built from a change-log row, and the filters a watcher applies.

A preference change carries the setting's answer on this device (no context) before and after the write, both
read at the write's time, so decay between writes is not a change; a memory change carries the entry before
and after. `conflict` says whether the write opened or resolved one: for a memory entry, a field holding
concurrent values; for a preference, the answer turning `uncertain` (docs/preferences.md) or ceasing to be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentlog.errors import InvalidValueError
from agentlog.log.kinds import MEMORY_TYPES
from agentlog.memory.reducer import Entry
from agentlog.prefs import reducer as pr
from agentlog.text import iso as iso_time
from agentlog.watch.changelog import MEMORY, PREF, REFOLD, Row

PREF_VIEW, MEMORY_VIEW, REFOLDED, GAP = "pref", "memory", "refold", "gap"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a view. `view`: pref, memory, refold (the views were folded again: re-read what you show)
    or gap (changes were missed: the watcher was further behind than the store keeps). `position` is the
    watcher's place after this change: pass it back as `position=` to resume after it. `events` are the last 16
    (changelog.REFS_KEPT) of the `events_total` events behind the change."""

    position: int
    view: str
    time_ms: int
    setting: str | None = None
    entry: bytes | None = None
    old: dict | None = None
    new: dict | None = None
    conflict: str | None = None
    events: tuple[dict, ...] = field(default_factory=tuple)
    events_total: int = 0

    @property
    def value(self):
        """The new value (a preference's answer, a memory entry's content); None when there is none."""
        if self.new is None:
            return None
        return self.new.get("value") if self.view == PREF_VIEW else self.new.get("content")

    @property
    def devices(self) -> tuple[str, ...]:
        """The names of the devices whose events made the change, in order, each once."""
        return tuple(dict.fromkeys(e["device"] for e in self.events))

    def to_json(self) -> dict:
        doc = {"position": self.position, "view": self.view, "time_ms": self.time_ms, "time": iso_time(self.time_ms)}
        if self.view == PREF_VIEW:
            new = self.new or {}
            doc.update(setting=self.setting, value=new.get("value"), confidence=new.get("confidence"),
                       uncertain=new.get("uncertain"), old_value=(self.old or {}).get("value"))
        elif self.view == MEMORY_VIEW:
            doc.update(entry=self.entry.hex(), value=self.value)
        if self.view in (PREF_VIEW, MEMORY_VIEW):
            doc.update(conflict=self.conflict, devices=list(self.devices), events=list(self.events),
                       events_total=self.events_total, old=self.old, new=self.new)
        return doc

    def line(self) -> str:
        """One line for a person: what changed, to what, and which device's events did it."""
        when = iso_time(self.time_ms)
        if self.view == REFOLDED:
            return f"{when} views folded again: re-read what you show"
        if self.view == GAP:
            return f"{when} changes up to position {self.position} were missed (kept no longer)"
        by = ", ".join(self.devices) or "?"
        kinds = ", ".join(dict.fromkeys(e["kind"] for e in self.events))
        conflict = f" conflict {self.conflict}" if self.conflict else ""
        if self.view == PREF_VIEW:
            new, old = self.new or {}, self.old or {}
            sure = " uncertain" if new.get("uncertain") else ""
            return (f"{when} {self.setting}: {old.get('value')} -> {new.get('value')} "
                    f"(confidence {new.get('confidence')}{sure}{conflict}) by {by} [{kinds}]")
        state = "deleted" if self.new and self.new["deleted"] else "new" if self.old is None else "changed"
        return f"{when} memory {self.entry.hex()} {state}: {self.value!r}{conflict} by {by} [{kinds}]"


@dataclass(frozen=True, slots=True)
class Filter:
    """Which changes a watcher passes on. `settings`: name prefixes (empty: every setting); `prefs`/`memory`:
    whether each view is watched; `types`, `tags`: a memory entry's (any of them); `scope`: the entry's scope,
    or for a preference the scope of an event behind the change."""

    settings: tuple[str, ...] = ()
    prefs: bool = True
    memory: bool = True
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    scope: str | None = None

    @classmethod
    def of(cls, settings=None, memory=None, types=(), tags=(), scope=None) -> Filter:
        """Settings given: only those (and memory only if asked); memory (or a type or tag) asked: only memory
        unless settings are given too; neither: both views."""
        settings = (settings,) if isinstance(settings, str) else tuple(settings or ())
        types, tags = ((t,) if isinstance(t, str) else tuple(t or ()) for t in (types, tags))
        for t in types:
            if t not in MEMORY_TYPES:
                raise InvalidValueError(f"memory type {t!r} must be one of {', '.join(MEMORY_TYPES)}")
        for s in settings:
            if not s or not s.isprintable() or " " in s:
                raise InvalidValueError(f"setting prefix {s!r} must be printable, without spaces")
        wants_memory = bool(memory) or bool(types or tags)
        if settings or wants_memory or memory is not None:
            return cls(settings, bool(settings) or memory is False, wants_memory, types, tags, scope)
        return cls((), True, True, (), (), scope)

    def wants(self, row: Row) -> bool:
        """Whether the row's view and key pass, before decoding it."""
        if row.view == PREF:
            return self.prefs and (not self.settings or any(row.name.decode().startswith(s) for s in self.settings))
        return row.view == MEMORY and self.memory or row.view == REFOLD

    def keeps(self, change: Change) -> bool:
        """Whether the decoded change passes the scope, type and tag filters."""
        if change.view == PREF_VIEW:
            return self.scope is None or any(e["scope"] == self.scope for e in change.events)
        if change.view != MEMORY_VIEW:
            return True
        states = [s for s in (change.old, change.new) if s is not None]
        if self.scope is not None and not any(s["scope"] == self.scope for s in states):
            return False
        if self.types and not any(s["type"] in self.types or s["type"] is None for s in states):
            return False
        return not self.tags or any(set(self.tags) & set(s["tags"]) for s in states)


def change_of(row: Row, device: str, names: dict[bytes, str]) -> Change:
    """The change a row records, as `device` (hex) sees it; `names` gives devices' names."""
    if row.view == REFOLD:
        return Change(row.position, REFOLDED, row.time_ms)
    events = tuple({"event": r.eid.hex(), "kind": r.kind, "device": names.get(r.author, r.author.hex()[:16]),
                    "author": r.author.hex(), "seq": r.seq, "scope": r.scope} for r in row.refs)
    if row.view == PREF:
        name = row.name.decode()
        old, new = (_answer(name, raw, device, row.time_ms) for raw in (row.old, row.new))
        return Change(row.position, PREF_VIEW, row.time_ms, setting=name, old=old, new=new,
                      conflict=_turned(old["uncertain"], new["uncertain"]), events=events, events_total=row.events)
    from agentlog.memory.api import entry_of  # it loads numpy: `serve`, which imports this module, needs neither

    entry = bytes(row.name)
    old, new = (entry_of(Entry.from_bytes(entry, raw)).to_json(names) if raw is not None else None
                for raw in (row.old, row.new))
    return Change(row.position, MEMORY_VIEW, row.time_ms, entry=entry, old=old, new=new,
                  conflict=_turned(bool(old and old["conflicts"]), bool(new and new["conflicts"])), events=events,
                  events_total=row.events)


def _answer(name: str, raw: bytes | None, device: str, time_ms: int) -> dict:
    a = pr.answer(pr.Setting.from_bytes(name, raw), device, (), time_ms) if raw is not None \
        else pr.default_answer(name)
    return a.to_json()


def _turned(before: bool, after: bool) -> str | None:
    return "opened" if after and not before else "resolved" if before and not after else None
