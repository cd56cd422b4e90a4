"""The preference API: record evidence, statements and overrides; ask what the user prefers.

`store.prefs` (a `Preferences`) checks every argument before anything is written
(InvalidValueError, naming what and where) and reads the view in one LMDB
snapshot. The rules are in docs/preferences.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from agentlog.errors import InvalidValueError, NotFoundError
from agentlog.ids import id_bytes
from agentlog.log import payloads
from agentlog.log.event import MAX_SCOPE_LEN
from agentlog.log.kinds import MAX_REASON_LEN
from agentlog.prefs import reducer as pr
from agentlog.prefs.reducer import Answer, Contribution

ContextArg = Mapping[str, str] | Iterable[tuple[str, str]] | None
_FRONTIER = ("frontier",)
"""The key of the frontier in store.pref_cache (beside settings' states, by name: never a tuple)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """An answer plus the frontier (author -> seq) of the view it was read from."""

    answer: Answer
    frontier: dict[bytes, int]

    def __getattr__(self, name):
        return getattr(self.answer, name)


@dataclass(frozen=True, slots=True)
class Explanation:
    """An answer and the events that decided it, strongest first."""

    answer: Answer
    frontier: dict[bytes, int]
    contributions: tuple[Contribution, ...]


def context_of(context: ContextArg) -> tuple[tuple[str, str], ...]:
    """A checked, sorted context from a mapping or pairs.

    Raises:
        InvalidValueError: too many keys, a key twice, or a malformed key or value.
    """
    if not context:
        return ()
    pairs = tuple(context.items()) if isinstance(context, Mapping) else tuple(tuple(p) for p in context)
    return _checked_context(pairs)


@lru_cache(maxsize=4096)
def _checked_context(pairs: tuple) -> tuple[tuple[str, str], ...]:
    problem = pr.context_problem(pairs)
    if problem:
        raise InvalidValueError(problem)
    return tuple(sorted(pairs))


def _check_setting(setting: str) -> None:
    problem = pr.setting_problem(setting)
    if problem:
        raise InvalidValueError(problem)


class Preferences:
    """Preference operations on one store (this device's log)."""

    def __init__(self, store, now_ms=None):
        self._store = store
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    # -- writing ---------------------------------------------------------------------

    def _value(self, setting: str, value: str) -> str:
        """`value` in canonical form for the setting's type; raises InvalidValueError if it does not fit."""
        _check_setting(setting)
        s = self.setting(setting)
        kind, choices = s.value_type if s else ("text", ())
        value = pr.normalize(value, kind)
        problem = pr.value_problem(value) or pr.typed_problem(value, kind, choices)
        if problem:
            raise InvalidValueError(f"{setting}: {problem}")
        return value

    def observe(self, setting: str, value: str, context: ContextArg = None, weight: float = 1.0, *,
                scope: str = "user") -> bytes:
        """Record that the user was seen using `value`; weight 1.0 is one ordinary observation. A sealed
        `scope` (e.g. health) is read only by its readers."""
        if not 0 < weight <= 1_000_000:
            raise InvalidValueError(f"weight {weight} must be above 0 and at most 1000000")
        return self._store.append(payloads.Observation(setting=setting, value=self._value(setting, value),
                                                       context=context_of(context), weight_milli=round(weight * 1000)),
                                  scope=_scope(scope))

    def decide(self, setting: str, value: str, confidence: float = 0.5, context: ContextArg = None,
               reason: str = "", *, scope: str = "user") -> bytes:
        """Record the agent's choice and how sure it was (0..1); returns the decision's id for corrections."""
        if not 0 <= confidence <= 1:
            raise InvalidValueError(f"confidence {confidence} must be between 0 and 1")
        return self._store.append(
            payloads.Decision(
                setting=setting,
                value=self._value(setting, value),
                context=context_of(context),
                confidence_bp=round(confidence * 10000),
                reason=reason,
            ),
            scope=_scope(scope),
        )

    def correct(self, decision: bytes | str, value: str, reason: str = "", *, scope: str | None = None) -> bytes:
        """Record that the user corrected decision `decision` (its event id: 32 bytes or 64 hex digits) to `value`;
        in `scope`, by default the decision's own (a correction of a health decision stays in health)."""
        decision = id_bytes(decision, "decision id")
        chosen = self._store.decision(decision)
        if chosen is None:
            raise NotFoundError(f"{decision.hex()} names no decision held on this device")
        if scope is None:
            event = self._store.get(decision)
            scope = event.header.scope if event is not None else "user"
        return self._store.append(payloads.Correction(decision=decision, value=self._value(chosen.setting, value),
                                                      reason=reason), scope=_scope(scope))

    def set(self, setting: str, value: str, context: ContextArg = None, *, scope: str = "user") -> bytes:
        """Record the user's explicit statement: it outranks learned evidence until a later statement."""
        return self._store.append(payloads.PrefSet(setting=setting, value=self._value(setting, value),
                                                   context=context_of(context)), scope=_scope(scope))

    def forget(self, setting: str, *, erase: bool = False, reason: str = "") -> bytes | tuple[bytes, list[bytes]]:
        """Drop everything learned and stated about `setting` so far (overrides and configuration stay); its id.

        erase: then erase that evidence from the whole history on every device (docs/erasure.md): returns
        (the pref.forget's id, the erase requests' ids).
        """
        _check_setting(setting)
        if len(reason) > MAX_REASON_LEN:
            raise InvalidValueError(f"a reason is at most {MAX_REASON_LEN} characters")
        forget = self._store.append(payloads.PrefForget(setting=setting))
        if not erase:
            return forget
        return forget, self._store.erase([], setting=setting, reason=reason)

    def configure(self, setting: str, *, policy: str | None = None, half_life_ms: int | None = None,
                  value_type: str | None = None, choices: Iterable[str] = ()) -> bytes:
        """Set the setting's override policy, evidence half-life or value type (None keeps each)."""
        _check_setting(setting)
        choices = tuple(choices)
        if policy is not None and policy not in pr.POLICIES:
            raise InvalidValueError(f"policy {policy!r} must be one of {', '.join(pr.POLICIES)}")
        if half_life_ms is not None and not pr.MIN_HALF_LIFE_MS <= half_life_ms <= pr.MAX_HALF_LIFE_MS:
            raise InvalidValueError("half-life must be between 1 hour and 3650 days")
        if value_type is not None and value_type not in pr.VALUE_TYPES:
            raise InvalidValueError(f"value type {value_type!r} must be one of {', '.join(pr.VALUE_TYPES)}")
        if (value_type == "choice") != bool(choices):
            raise InvalidValueError("choices go with value type choice, and it needs at least one")
        if len(choices) > pr.MAX_CHOICES or len(set(choices)) != len(choices):
            raise InvalidValueError(f"choices must be distinct, at most {pr.MAX_CHOICES}")
        for c in choices:
            problem = pr.value_problem(c)
            if problem:
                raise InvalidValueError(f"choice: {problem}")
        if policy is None and half_life_ms is None and value_type is None:
            raise InvalidValueError("nothing to configure: give a policy, a half-life or a value type")
        return self._store.append(payloads.PrefConfig(setting=setting, policy=policy or "unchanged",
                                                      half_life_ms=half_life_ms or 0,
                                                      value_type=value_type or "unchanged", choices=choices))

    def override(self, setting: str, value: str) -> bytes:
        """Override the setting on this device only, recording the shared belief it stands beside."""
        value = self._value(setting, value)
        baseline = self._shared_value(setting)
        return self._store.append(payloads.OverrideSet(setting=setting, value=value, baseline=baseline))

    def clear_override(self, setting: str) -> bytes:
        _check_setting(setting)
        if not self._has_override(setting):
            raise InvalidValueError(f"{setting} has no override on this device")
        return self._store.append(payloads.OverrideClear(setting=setting))

    def confirm(self, setting: str) -> bytes:
        """Keep this device's override beside the shared belief as it is now (clears stale_override)."""
        _check_setting(setting)
        if not self._has_override(setting):
            raise InvalidValueError(f"{setting} has no override on this device to confirm")
        return self._store.append(payloads.PrefConfirm(setting=setting, baseline=self._shared_value(setting)))

    def _has_override(self, setting: str) -> bool:
        s = self.setting(setting)
        ov = s.overrides.get(self._store.device.hex()) if s else None
        return ov is not None and ov["value"] is not None

    def _shared_value(self, setting: str) -> str:
        """The belief shared by every device (no override), "" when there is none."""
        s = self.setting(setting)
        if s is None:
            return ""
        return pr.answer(s, "", (), self._now_ms()).value or ""

    # -- reading -------------------------------------------------------------------------

    def setting(self, setting: str) -> pr.Setting | None:
        """The folded state of one setting, or None if nothing was recorded about it."""
        return self._store.read(lambda txn: self._store.pref_view.setting(txn, setting))

    def get(self, setting: str, context: ContextArg = None, now_ms: int | None = None) -> Lookup:
        """What this device believes about `setting` in `context`; source "default" if never seen."""
        _check_setting(setting)
        ctx = context_of(context)
        now = self._now_ms() if now_ms is None else now_ms
        store = self._store
        raw, frontier = store.read(lambda txn: (store.pref_view.raw_setting(txn, setting), self._frontier(txn)))
        if raw is None:
            return Lookup(pr.default_answer(setting), frontier)
        return Lookup(pr.answer(self._parsed(setting, ctx, raw), store.device.hex(), ctx, now), frontier)

    def _frontier(self, txn) -> dict[bytes, int]:
        """The view's frontier in `txn`, read once per commit (its id names the snapshot): every lookup gives it,
        and a writer commits far less often than agents ask. A copy: the caller may change it."""
        cache = self._store.pref_cache
        version, known = txn.id(), cache.get(_FRONTIER)
        if known is None or known[0] != version:
            known = cache[_FRONTIER] = (version, self._store.frontier_in(txn))
        return dict(known[1])

    def _parsed(self, setting: str, ctx: tuple[tuple[str, str], ...], raw: bytes) -> pr.Setting:
        """The setting's state, parsed once per version of its bytes (lookups repeat; the state is read-only here).
        A lookup with no context reads one bucket: until a lookup in a context parses the whole state, it
        parses only that bucket's sums (Setting.for_answer)."""
        cache = self._store.pref_cache
        hit = cache.get(setting)
        if hit is not None and hit[0] == raw:
            if hit[1] is not None:
                return hit[1]
            if not ctx:
                return hit[2]
        elif len(cache) >= 4096:
            cache.clear()
        if ctx:
            parsed = pr.Setting.from_bytes(setting, raw)
            cache[setting] = (raw, parsed, None)
        else:
            parsed = pr.Setting.for_answer(setting, raw, ctx)
            cache[setting] = (raw, None, parsed)
        return parsed

    def explain(
        self, setting: str, context: ContextArg = None, now_ms: int | None = None, limit: int = 10
    ) -> Explanation:
        """The answer and the events that contributed most to it, strongest first."""
        _check_setting(setting)
        ctx = context_of(context)
        now = self._now_ms() if now_ms is None else now_ms
        device = self._store.device.hex()

        def read(txn):
            view = self._store.pref_view
            return view.setting(txn, setting), view.evidence_of(txn, setting), self._store.frontier_in(txn)
        s, evidence, frontier = self._store.read(read)
        if s is None:
            return Explanation(pr.default_answer(setting), frontier, ())
        a = pr.answer(s, device, ctx, now)
        return Explanation(a, frontier, tuple(pr.contributions(s, a, device, evidence, now, limit)))

    def list(self, now_ms: int | None = None) -> list[Answer]:
        """Every setting's answer on this device with no context, by name."""
        now = self._now_ms() if now_ms is None else now_ms
        device = self._store.device.hex()

        def read(txn):
            view = self._store.pref_view
            return [view.setting(txn, name) for name in view.names(txn)]
        return [pr.answer(s, device, (), now) for s in self._store.read(read)]


def _scope(scope) -> str:
    """A scope a preference event may be written in: `user` or a sealed scope's name."""
    if scope == "user":
        return scope
    if not isinstance(scope, str) or not scope or len(scope) > MAX_SCOPE_LEN or not scope.isprintable() \
            or scope.startswith("device:"):
        raise InvalidValueError(f"scope must be user or a sealed scope's name (1 to {MAX_SCOPE_LEN} printable "
                                "characters, not device:...)")
    return scope
