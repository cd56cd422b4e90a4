"""The preference reducer: evidence from every device folded into one belief per setting. Pure.

The rules are written out, with examples, in docs/preferences.md. In short: each
piece of evidence (observation, decision, correction) adds a decayed weight for a
value in every context bucket its context covers; explicit statements (pref.set)
outrank learned evidence; overrides hold on their own device under the setting's
policy. Everything stored is an exact integer or a latest-by-(lamport, author)
choice, so the state is a function of the set of events, whatever their order.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from agentlog.limits import MAX_TIME_MS, MIN_TIME_MS
from agentlog.log import kinds
from agentlog.prefs import decay
from agentlog.prefs.canonical import Canonical, decode

VERSION = 5                      # 2: unwitnessed evidence is capped by its witnesses (views.pref.early)
                                 # 3: a correction's evidence is never summarized
                                 # 4: a setting's state is stored in binary (agentlog/prefs/canonical.py)
                                 # 5: views.pref.early keys an unwitnessed event by its time, then id
DAY_MS = 86_400_000
DEFAULT_HALF_LIFE_MS = 30 * DAY_MS
MIN_HALF_LIFE_MS = 3_600_000
LEAD_MS = DAY_MS                 # how far past what it has seen from others a device's clock may count
KEEP_HALVINGS = 64               # evidence older than this many half-lives before the newest is dropped
DECISION_WEIGHT = 500            # milli, at confidence 1.0: the agent's own choice is weak evidence
CORRECTION_FOR = 4000            # milli, for the value the user wanted
CORRECTION_AGAINST = 2000        # milli, against the value the agent chose
VOTE_WEIGHT = 3000               # milli: an override under the vote policy
MIN_BUCKET_WEIGHT = 0.9          # decayed weight a context bucket needs to answer: one observation under ~4 days old
CONFIDENCE_PRIOR = 1.0           # pseudo-weight that keeps thin evidence from looking sure
UNCERTAIN_BELOW = 0.4
# the kinds, enumerations and limits the log checks payloads against (agentlog/log/kinds.py)
EVIDENCE_KINDS = kinds.EVIDENCE_KINDS
KINDS = kinds.PREF_KINDS
POLICIES = kinds.POLICIES
VALUE_TYPES = kinds.VALUE_TYPES
MAX_HALF_LIFE_MS = kinds.MAX_HALF_LIFE_MS
MAX_SETTING_LEN = kinds.MAX_SETTING_LEN
MAX_VALUE_LEN = kinds.MAX_VALUE_LEN
MAX_CONTEXT_KEYS = kinds.MAX_CONTEXT_KEYS
MAX_CONTEXT_LEN = kinds.MAX_CONTEXT_LEN
MAX_CHOICES = kinds.MAX_CHOICES
DEFAULT_POLICY = "sticky"

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
_CONTEXT_KEY = re.compile(r"[A-Za-z0-9_.:-]+")
SEP = "\x1f"


# -- names and values -----------------------------------------------------------

@lru_cache(maxsize=65536)
def setting_problem(name: str) -> str | None:
    """Why `name` cannot name a setting, or None."""
    if not name:
        return "a setting name cannot be empty"
    if len(name) > MAX_SETTING_LEN:
        return f"setting name is {len(name)} characters, over the limit of {MAX_SETTING_LEN}"
    if not name.isprintable() or any(c.isspace() for c in name):
        return f"setting name {name!r} holds a control or space character"
    return None


def value_problem(value: str) -> str | None:
    """Why `value` cannot be a preference value of any type, or None."""
    if not value:
        return "a value cannot be empty"
    if len(value) > MAX_VALUE_LEN:
        return f"value is {len(value)} characters, over the limit of {MAX_VALUE_LEN}"
    if not value.isprintable():
        return f"value {value[:40]!r} holds a control character"
    return None


def context_problem(context: Iterable[tuple[str, str]]) -> str | None:
    """Why a context (key=value pairs) is not allowed, or None."""
    pairs = list(context)
    if len(pairs) > MAX_CONTEXT_KEYS:
        return f"context has {len(pairs)} keys, over the limit of {MAX_CONTEXT_KEYS}"
    if len({k for k, _ in pairs}) != len(pairs):
        return "context names a key twice"
    for k, v in pairs:
        if not _CONTEXT_KEY.fullmatch(k) or len(k) > MAX_CONTEXT_LEN:
            return f"context key {k!r} must be 1 to {MAX_CONTEXT_LEN} of A-Z a-z 0-9 _ . : -"
        if not v or len(v) > MAX_CONTEXT_LEN or not v.isprintable():
            return f"context value for {k!r} must be 1 to {MAX_CONTEXT_LEN} printable characters"
    return None


def typed_problem(value: str, value_type: str, choices: tuple[str, ...]) -> str | None:
    """Why `value` is not of the setting's type, or None."""
    if value_type == "bool" and value not in ("true", "false"):
        return f"{value!r} is not a bool (true or false)"
    if value_type == "number" and not _NUMBER.fullmatch(value):
        return f"{value!r} is not a number in canonical form (like 20, -1.5)"
    if value_type == "choice" and value not in choices:
        return f"{value!r} is not one of {', '.join(choices)}"
    return None


def normalize(value: str, value_type: str) -> str:
    """The canonical spelling of a value a user typed (yes -> true, 1.50 -> 1.5); others unchanged."""
    v = value.strip()
    if value_type == "bool":
        return {"yes": "true", "on": "true", "1": "true", "no": "false", "off": "false", "0": "false"}.get(
            v.lower(), v.lower()
        )
    if value_type == "number":
        from decimal import Context, Decimal
        try:
            d = Decimal(v)
        except (ArithmeticError, ValueError):
            return value
        if not d.is_finite() or (d and abs(d.adjusted()) > MAX_VALUE_LEN):   # too long to be a value anyway
            return value
        text = format(d.normalize(Context(prec=len(d.as_tuple().digits))), "f")   # every digit: no rounding
        return "0" if text in ("-0", "0") else text
    return value


@lru_cache(maxsize=65536)
def bucket_key(context: tuple[tuple[str, str], ...]) -> str:
    """The key of a context bucket: sorted k=v pairs; "" is the bucket of every context."""
    return SEP.join(f"{k}={v}" for k, v in sorted(context))


def buckets_of(context: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Every bucket evidence in `context` counts in: each subset of its pairs, most specific first."""
    pairs = sorted(context)
    return tuple(bucket_key(c) for n in range(len(pairs), -1, -1) for c in combinations(pairs, n))


def effective_time(time_ms: int, seen_ms: int | None, witnessed_ms: int | None = None) -> int:
    """The time evidence counts at: its author's clock, but at most LEAD_MS past the newest
    time its author had seen from another device; while it has seen none, at most `witnessed_ms`
    (witness_cap: LEAD_MS past the earliest time of another device's event that names the author)."""
    t = clamp_time(time_ms)
    if seen_ms is not None:
        return min(t, seen_ms + LEAD_MS)
    return t if witnessed_ms is None else min(t, witnessed_ms)


def witness_cap(witness_time_ms: int) -> int:
    """The cap an event of another device puts, by naming an author in its clock, on that author's
    evidence written before it had seen any other device (docs/preferences.md, Clock skew)."""
    return clamp_time(witness_time_ms) + LEAD_MS


def clamp_time(time_ms: int) -> int:
    """An event's time within the range ingest enforces (a store from before the range checks may hold others)."""
    return min(max(time_ms, MIN_TIME_MS), MAX_TIME_MS)


# -- evidence -------------------------------------------------------------------

class Evidence(NamedTuple):
    """One weight for one value in a context (and every bucket it covers), indexed per setting by effective time."""

    eff: int
    eid: bytes
    role: int                # 0, or 1 for a correction's weight against the chosen value
    kind: str
    value: str
    context: str             # bucket key of the full context
    weight: int              # milli, signed
    lamport: int             # a summary's: the highest of the events it sums
    author: bytes            # a summary's: zeros
    time_ms: int             # a summary's: how many events it sums

    @property
    def buckets(self) -> tuple[str, ...]:
        return _subsets(self.context)

    def to_bytes(self) -> bytes:
        value = self.value.encode()
        return (_EVIDENCE.pack(KIND_CODES[self.kind], self.weight, self.lamport, self.time_ms, self.author, len(value))
                + value + self.context.encode())

    @classmethod
    def from_bytes(cls, eff: int, eid: bytes, role: int, raw: bytes) -> Evidence:
        """The evidence `to_bytes` gave `raw` (a fold reads rows back as the newest time moves)."""
        code, weight, lamport, time_ms, author, n = _EVIDENCE.unpack_from(raw)
        value, context = _value_context(n, raw[_EVIDENCE.size :])
        return _new(cls, (eff, eid, role, _KIND_NAMES[code], value, context, weight, lamport, author, time_ms))


_EVIDENCE = struct.Struct(">BqQQ32sH")
_new = tuple.__new__         # builds a NamedTuple without its Python-level __new__: the fold's hot path
_EFF = itemgetter(0)         # an Evidence's eff
_NONE_LEFT = 2**64           # Setting._recent_from when no evidence lies in or after the recent window
_KIND_NAMES = ("observation", "decision", "correction", "summary")
KIND_CODES = {name: i for i, name in enumerate(_KIND_NAMES)}     # an evidence row's kind byte


@lru_cache(maxsize=4096)
def _value_context(n: int, tail: bytes) -> tuple[str, str]:
    """An evidence row's value (its first n bytes) and context: the same few pairs repeat."""
    return tail[:n].decode(), tail[n:].decode()


@lru_cache(maxsize=4096)
def _subsets(context: str) -> tuple[str, ...]:
    return buckets_of(tuple(_bucket_pairs(context).items()))


class Fact(NamedTuple):
    """What the reducer needs of one event: its place, effective time, id and decoded payload."""

    author: bytes
    epoch: int
    seq: int
    lamport: int
    time_ms: int
    eff: int
    kind: str
    eid: bytes
    payload: Any


def evidence_of(fact: Fact, decision: Fact | None = None) -> list[Evidence]:
    """The evidence an observation, decision or (with its decision) correction gives; [] if malformed."""
    p = fact.payload
    if fact.kind == "correction":
        if decision is None or decision.kind != "decision":
            return []
        d = decision.payload
        ctx = _usable_bucket(d.setting, d.value, d.context)
        if value_problem(p.value) or ctx is None:
            return []
        return [_new(Evidence, (fact.eff, fact.eid, 0, "correction", p.value, ctx, CORRECTION_FOR, fact.lamport,
                                fact.author, fact.time_ms)),
                _new(Evidence, (fact.eff, fact.eid, 1, "correction", d.value, ctx, -CORRECTION_AGAINST, fact.lamport,
                                fact.author, fact.time_ms))]
    ev = direct_evidence(fact.kind, p, fact.eff, fact.eid, fact.lamport, fact.author, fact.time_ms)
    return [] if ev is None else [ev]


def direct_evidence(kind: str, p: Any, eff: int, eid: bytes, lamport: int, author: bytes,
                    time_ms: int) -> Evidence | None:
    """The evidence an observation or decision gives (None if malformed or of no weight): evidence_of's
    rule without building a Fact, for a rebuild's loop over every event."""
    ctx = _usable_bucket(p.setting, p.value, p.context)
    if ctx is None:
        return None
    weight = p.weight_milli if kind == "observation" else p.confidence_bp * DECISION_WEIGHT // 10000
    if weight == 0:
        return None
    return _new(Evidence, (eff, eid, 0, kind, p.value, ctx, weight, lamport, author, time_ms))


@lru_cache(maxsize=65536)
def _usable_bucket(setting: str, value: str, context: tuple) -> str | None:
    """The bucket key of evidence for `value` of `setting` in `context`, or None if any of them is malformed."""
    if setting_problem(setting) or value_problem(value) or context_problem(context):
        return None
    return bucket_key(context)


# -- summaries: what a snapshot folds old evidence into ------------------------------------

SUMMARY_CELL_MS = DAY_MS        # a summary holds one day's old evidence for one value in one context
SUMMARY_AGE_MS = DAY_MS         # a snapshot summarizes a setting's evidence this far behind its newest, or older
_NO_AUTHOR = bytes(32)


def summary_id(context: str, value: str) -> bytes:
    """The id of the summary of `value` in `context` (one per day cell; the cell is in the index key)."""
    return hashlib.blake2b(b"agentlog summary" + context.encode() + SEP.encode() + value.encode(),
                           digest_size=32).digest()


def summarize(covered: list[Evidence], existing: dict[bytes, Evidence]) -> dict[tuple[int, bytes], Evidence]:
    """Summaries after folding `covered` evidence into day cells, merged with the `existing` summaries
    (keyed by (cell time, id)); returns only the summaries that changed, keyed the same way.

    A summary's weight is the exact sum of its events' weights, counted at the start of its day; so
    merging is associative and every device that summarizes the same evidence holds the same rows.
    """
    changed: dict[tuple[int, bytes], Evidence] = {}
    for ev in covered:
        cell = ev.eff - ev.eff % SUMMARY_CELL_MS
        sid = summary_id(ev.context, ev.value)
        key = (cell, sid)
        old = changed.get(key) or existing.get(key)
        if old is None:
            changed[key] = _new(Evidence, (cell, sid, 0, "summary", ev.value, ev.context, ev.weight, ev.lamport,
                                           _NO_AUTHOR, 1))
        else:
            changed[key] = old._replace(weight=old.weight + ev.weight, lamport=max(old.lamport, ev.lamport),
                                        time_ms=old.time_ms + 1)
    return changed


# -- one setting's state --------------------------------------------------------------

class Index(Protocol):
    """One setting's evidence, ordered by effective time (the view's storage provides it)."""

    def scan(self, lo: int, hi: int) -> Iterable[Evidence]:
        """Evidence with lo <= eff < hi, in order."""

    def first(self, lo: int) -> int | None:
        """The effective time of the first evidence with eff >= lo (None: there is none)."""

    def put(self, ev: Evidence) -> None: ...
    def put_many(self, evs: list[Evidence]) -> None: ...
    def delete(self, ev: Evidence) -> None: ...


@dataclass
class Setting:
    """One setting's folded state: configuration, decayed sums per bucket and value, explicit
    statements, overrides. `to_bytes` is canonical: equal sets of events give equal bytes."""

    name: str
    config: dict[str, list] = field(default_factory=dict)   # field -> [lamport, author hex, value]
    forget: int = 0                                          # evidence below this lamport is forgotten
    tmax: int | None = None
    anchor: int = 0
    sums: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # bucket -> value -> [total, old]
    explicit: dict[str, list] = field(default_factory=dict)  # bucket -> [lamport, author hex, value, eid hex, time]
    overrides: dict[str, dict] = field(default_factory=dict)  # device hex -> override
    # the encoded pieces of the canonical bytes, and which sums changed since (agentlog.prefs.canonical)
    _canon: Canonical = field(default_factory=Canonical, init=False, repr=False, compare=False)
    # no evidence in the index from the recent window's start up to this (None: unknown): no promotion scan below
    _recent_from: int | None = field(default=None, init=False, repr=False, compare=False)

    # configuration
    @property
    def half_life(self) -> int:
        return self.config["half_life"][2] if "half_life" in self.config else DEFAULT_HALF_LIFE_MS

    @property
    def policy(self) -> str:
        return self.config["policy"][2] if "policy" in self.config else DEFAULT_POLICY

    @property
    def value_type(self) -> tuple[str, tuple[str, ...]]:
        if "type" in self.config:
            kind, choices = self.config["type"][2]
            return kind, tuple(choices)
        return "text", ()

    @property
    def recent_ms(self) -> int:
        """How long a change of winner counts as recent: a quarter half-life, at most a day."""
        return min(DAY_MS, self.half_life // 4)       # Setting.add computes it too, from its half-life

    def to_bytes(self) -> bytes:
        """The canonical bytes of the state (sums of [0, 0] left out), re-encoding only what changed."""
        return self._canon.encode(self)

    def only(self, keys) -> bytes:
        """canonical.only(self.to_bytes(), keys) without encoding again: valid right after `to_bytes`."""
        return self._canon.only(keys)

    @classmethod
    def from_bytes(cls, name: str, raw: bytes) -> Setting:
        """The state stored as `raw` (binary, or the JSON of reducer version 3 and earlier)."""
        config, explicit, overrides, anchor, forget, tmax, sums = decode(raw)
        return cls(name, config, forget, tmax, anchor, sums, explicit, overrides)

    @classmethod
    def for_answer(cls, name: str, raw: bytes, context: tuple[tuple[str, str], ...]) -> Setting:
        """The state stored as `raw` with only the sums `answer` reads in `context` (a lookup's few buckets
        of a busy setting's many): for answers only, never to fold into."""
        config, explicit, overrides, anchor, forget, tmax, sums = decode(raw, frozenset(lookup_buckets(context)))
        return cls(name, config, forget, tmax, anchor, sums, explicit, overrides)

    # evidence
    def _add_term(self, ev: Evidence, old: bool, h: int, sign: int = 1) -> None:
        """Add (or with sign -1, take away) ev's term to its buckets' sums; `h` is the half-life."""
        t = sign * decay.term(ev.weight, ev.eff, h, self.anchor)
        self._add_sums({(ev.context, ev.value): (t, t if old else 0)})

    def _add_sums(self, totals: dict[tuple[str, str], Any]) -> None:
        """Add each (context, value) -> (total, old) of `totals` to the total and old sum of the value in every
        bucket the context counts in (a sum that cancelled to [0, 0] was not stored: it is made again)."""
        sums, changed = self.sums, self._canon.changed
        for (context, value), (total, old) in totals.items():
            for b in _subsets(context):
                vals = sums.get(b)
                if vals is None:
                    vals = sums[b] = {}
                s = vals.get(value)
                if s is None:
                    vals[value] = [total, old]
                else:
                    s[0] += total
                    s[1] += old
                changed(b, value, s)

    def add(self, ev: Evidence, index: Index) -> None:
        """Fold one piece of evidence in, O(1) amortized (the cut-offs only move forward)."""
        if ev.lamport < self.forget:
            return
        index.put(ev)
        h, eff = self.half_life, ev.eff
        if self._recent_from is not None and eff < self._recent_from:
            self._recent_from = eff
        if self.tmax is None:
            self.tmax, self.anchor = eff, decay.halvings(eff, h) - KEEP_HALVINGS
            self._add_term(ev, False, h)
        elif eff > self.tmax:
            self._add_term(ev, False, h)
            self._advance(eff, index)
        elif eff >= self.anchor * h:
            self._add_term(ev, eff <= self.tmax - min(DAY_MS, h // 4), h)

    def add_many(self, evs: list[Evidence], index: Index) -> None:
        """Fold a batch of evidence in: the state `add` of each in turn leaves (a function of the set of
        evidence), with one move of the newest time and one change of each bucket's sum per (context, value)."""
        if len(evs) == 1:                    # an append of one: no batch to share the work
            return self.add(evs[0], index)
        forget = self.forget
        if forget:
            evs = [ev for ev in evs if ev.lamport >= forget]
        if not evs:
            return
        h, top = self.half_life, max(map(_EFF, evs))
        if self.tmax is None:
            self.tmax, self.anchor = top, decay.halvings(top, h) - KEEP_HALVINGS
        elif top > self.tmax:
            self._advance(top, index)        # over the evidence stored before this batch
        index.put_many(evs)
        if self._recent_from is not None:
            self._recent_from = min(self._recent_from, min(map(_EFF, evs)))
        self._add_sums(decay.totals(evs, h, self.anchor, self.tmax - self.recent_ms))

    def _advance(self, tmax: int, index: Index) -> None:
        """Move the newest time: promote evidence out of the recent window, drop what is too old."""
        h, anchor, recent = self.half_life, self.anchor, self.recent_ms
        floor, start = anchor * h, tmax - recent + 1
        if self._recent_from is None or start > self._recent_from:
            promoted = decay.totals(index.scan(max(floor, self.tmax - recent + 1), start), h, anchor, tmax)
            self._add_sums({key: (0, old) for key, (_, old) in promoted.items()})   # all old now
            first = index.first(start)
            self._recent_from = _NONE_LEFT if first is None else first
        anchor = decay.halvings(tmax, h) - KEEP_HALVINGS
        if anchor > self.anchor:
            dropped = decay.totals(index.scan(floor, anchor * h), h, self.anchor, tmax)
            self._add_sums({key: (-total, -total) for key, (total, _) in dropped.items()})
            shift = anchor - self.anchor
            for vals in self.sums.values():
                for s in vals.values():
                    s[0] >>= shift
                    s[1] >>= shift
            self.anchor = anchor
            self._canon.stale()
        self.tmax = tmax

    def swap(self, gone: Iterable[Evidence], deltas: Iterable[Evidence]) -> None:
        """Take `gone` evidence out of the sums and add `deltas` (summaries' added weight): a snapshot's
        summary step, exact because terms are linear in weight. All of it is old evidence."""
        self._recent_from = None                 # the caller moves the summaries' rows in the index
        h = self.half_life
        floor = self.anchor * h
        for ev in gone:
            if ev.eff >= floor and ev.lamport >= self.forget:
                self._add_term(ev, True, h, -1)
        for ev in deltas:
            if ev.eff >= floor and ev.lamport >= self.forget:
                self._add_term(ev, True, h)

    def recompute(self, everything: Iterable[Evidence]) -> None:
        """Fold the setting's evidence again from scratch (its half-life changed, or it was forgotten)."""
        forget = self.forget
        kept = [ev for ev in everything if ev.lamport >= forget] if forget else list(everything)
        self.sums, self._recent_from = {}, None
        self._canon.stale()
        if not kept:
            self.tmax, self.anchor = None, 0
            return
        h = self.half_life
        self.tmax = max(map(_EFF, kept))
        self.anchor = decay.halvings(self.tmax, h) - KEEP_HALVINGS
        self._add_sums(decay.totals(kept, h, self.anchor, self.tmax - self.recent_ms))

    # statements, configuration, overrides
    def state(self, fact: Fact) -> str:
        """Apply a non-evidence preference event; returns "recompute" when the sums must be folded again."""
        p, who = fact.payload, [fact.lamport, fact.author.hex()]
        self._canon.meta = None
        if fact.kind == "pref.set":
            if value_problem(p.value) or context_problem(p.context) or fact.lamport < self.forget:
                return ""
            b = bucket_key(p.context)
            entry = [*who, p.value, fact.eid.hex(), fact.time_ms]
            if b not in self.explicit or _later(entry, self.explicit[b]):
                self.explicit[b] = entry
        elif fact.kind == "pref.forget":
            if fact.lamport > self.forget:
                self.forget = fact.lamport
                self.explicit = {b: e for b, e in self.explicit.items() if e[0] >= self.forget}
                return "recompute"
        elif fact.kind == "pref.config":
            return self._configure(fact, who)
        elif fact.kind in ("override.set", "override.clear", "pref.confirm"):
            self._override(fact)
        return ""

    def _configure(self, fact: Fact, who: list) -> str:
        p, changes = fact.payload, {}
        if p.policy != "unchanged":
            changes["policy"] = p.policy
        if p.half_life_ms and MIN_HALF_LIFE_MS <= p.half_life_ms <= MAX_HALF_LIFE_MS:
            changes["half_life"] = p.half_life_ms
        if p.value_type != "unchanged" and (p.value_type != "choice" or 0 < len(p.choices) <= MAX_CHOICES):
            changes["type"] = [p.value_type, list(p.choices) if p.value_type == "choice" else []]
        before = self.half_life
        for name, value in changes.items():
            if name not in self.config or _later([*who, value], self.config[name]):
                self.config[name] = [*who, value]
        return "recompute" if self.half_life != before else ""

    def _override(self, fact: Fact) -> None:
        p, device, pos = fact.payload, fact.author.hex(), [fact.epoch, fact.seq]
        current = self.overrides.get(device)
        if current is not None and pos <= current["pos"]:
            return
        if fact.kind == "override.set":
            if p.context or value_problem(p.value):
                return
            self.overrides[device] = {"value": p.value, "baseline": p.baseline, "pos": pos, "eff": fact.eff,
                                      "eid": fact.eid.hex(), "time": fact.time_ms}
        elif fact.kind == "override.clear":
            self.overrides[device] = {"value": None, "pos": pos}
        elif current is not None and current["value"] is not None:
            current.update(baseline=p.baseline, pos=pos)


def _later(a: list, b: list) -> bool:
    """Whether entry a = [lamport, author hex, ...] is ordered after b: higher lamport, then author."""
    return (a[0], a[1]) > (b[0], b[1])


# -- answers ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Answer:
    """A preference lookup's result (see docs/preferences.md for each field)."""

    setting: str
    value: str | None
    confidence: float
    source: str                  # override | explicit | learned | default
    uncertain: bool
    stale_override: bool
    bucket: str | None = None    # the context bucket that answered ("" = every context)
    scores: tuple[tuple[str, float], ...] = ()   # learned weight per value in that bucket, highest first

    def to_json(self) -> dict:
        return {"setting": self.setting, "value": self.value, "confidence": round(self.confidence, 4),
                "source": self.source, "uncertain": self.uncertain, "stale_override": self.stale_override,
                "context_bucket": None if self.bucket is None else _bucket_pairs(self.bucket),
                "scores": {v: round(s, 4) for v, s in self.scores}}


def _bucket_pairs(bucket: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in bucket.split(SEP)) if bucket else {}


def default_answer(setting: str) -> Answer:
    return Answer(setting, None, 0.0, "default", False, False)


@lru_cache(maxsize=4096)
def lookup_buckets(context: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Buckets a lookup in `context` consults, most specific first (ties: by key)."""
    pairs = sorted(context)
    return tuple(b for n in range(len(pairs), -1, -1) for b in sorted(bucket_key(c) for c in combinations(pairs, n)))


def answer(s: Setting, device: str, context: tuple[tuple[str, str], ...], now_ms: int) -> Answer:
    """The belief on `device` (hex id) in `context` at `now_ms` (it reads the sums of `lookup_buckets(context)`
    alone, so `s` may be `Setting.for_answer`'s)."""
    now_ms = _reading_time(s, now_ms)
    kind, choices = s.value_type
    ok = None if kind == "text" else (lambda v: typed_problem(v, kind, choices) is None)
    buckets = lookup_buckets(context)
    ov = s.overrides.get(device)
    if ov is not None and (ov["value"] is None or ok and not ok(ov["value"])):
        ov = None
    shared = _shared(s, buckets, ok, now_ms, None)
    if ov is None:
        return shared
    # The baseline is the shared belief with no context (what override.set and pref.confirm record):
    # compare like with like, or a context's own belief would mark a fresh override stale.
    overall = _shared(s, ("",), ok, now_ms, None) if context else shared
    moved = (overall.value or "") != ov["baseline"]
    if s.policy == "vote" and moved:
        voted = _shared(s, buckets, ok, now_ms, ov)
        return Answer(s.name, voted.value, voted.confidence, voted.source, voted.uncertain, True, voted.bucket,
                      voted.scores)
    stale = moved and s.policy == "reconfirm"
    return Answer(s.name, ov["value"], 1.0, "override", stale, stale)


def _reading_time(s: Setting, now_ms: int) -> int:
    """When to decay to: `now_ms`, but never before the setting's newest evidence. A reader whose clock
    is behind would weigh evidence above its own weight, by 2^(1000+) past 1000 half-lives (an overflow)."""
    return now_ms if s.tmax is None or now_ms >= s.tmax else s.tmax


def _shared(s: Setting, buckets: tuple[str, ...], ok, now_ms: int, vote: dict | None) -> Answer:
    """The belief every device shares (explicit, else learned), with an override's vote when given."""
    for b in buckets:
        e = s.explicit.get(b)
        if e is not None and (ok is None or ok(e[2])):
            return Answer(s.name, e[2], 1.0, "explicit", False, False, b)
    chosen = None
    scale = decay.value_at(1, s.anchor, now_ms, s.half_life) / 1000
    for b in buckets:
        scores = _scores(s, b, ok, scale, now_ms, vote)
        total = sum(w for w in scores.values() if w > 0)
        if total >= MIN_BUCKET_WEIGHT or (b == "" and total > 0):
            chosen = (b, scores, total)
            break
    if chosen is None:
        return default_answer(s.name)
    b, scores, total = chosen
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    best, runner = ranked[0], ranked[1][1] if len(ranked) > 1 else 0.0
    if best[1] <= 0:
        return default_answer(s.name)
    confidence = (best[1] - max(runner, 0.0)) / (total + CONFIDENCE_PRIOR)
    before = _winner_before(s.sums.get(b, {}), ok) if s.tmax is not None and now_ms < s.tmax + s.recent_ms else None
    recent = before is not None and before != best[0]
    return Answer(s.name, best[0], confidence, "learned", confidence < UNCERTAIN_BELOW or recent, False, b,
                  tuple((v, w) for v, w in ranked))


def _scores(s: Setting, bucket: str, ok, scale: float, now_ms: int, vote: dict | None) -> dict[str, float]:
    """Decayed weight per value in one bucket (`scale`: one fixed-point unit of the sums, decayed to now)."""
    out = {v: t[0] * scale for v, t in s.sums.get(bucket, {}).items() if ok is None or ok(v)}
    if vote is not None:
        out[vote["value"]] = out.get(vote["value"], 0.0) + decay.decayed(VOTE_WEIGHT / 1000, min(vote["eff"], now_ms),
                                                                         now_ms, s.half_life)
    return out


def _winner_before(sums: dict[str, list[int]], ok) -> str | None:
    """The winner among the evidence older than the recent window: every sum shares one scale, so
    the integers rank as the decayed weights do."""
    best = min(((v, t[1]) for v, t in sums.items() if ok is None or ok(v)), key=lambda p: (-p[1], p[0]), default=None)
    return best[0] if best and best[1] > 0 else None


# -- explanations ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Contribution:
    """One event behind an answer, with its weight decayed to the time of asking."""

    eid: bytes
    author: bytes
    kind: str
    value: str
    time_ms: int
    effective_ms: int
    weight: float | None     # None: an override or explicit statement, which does not decay


def contributions(s: Setting, a: Answer, device: str, evidence: Iterable[Evidence], now_ms: int,
                  limit: int = 10) -> list[Contribution]:
    """The events that decided `a`, strongest first: the override or explicit statement, else the
    learned evidence in the bucket that answered."""
    if a.source == "override":
        ov = s.overrides[device]
        return [Contribution(bytes.fromhex(ov["eid"]), bytes.fromhex(device), "override.set", ov["value"], ov["time"],
                             ov["eff"], None)]
    if a.source == "explicit":
        lamport, author, value, eid, time_ms = s.explicit[a.bucket]
        return [Contribution(bytes.fromhex(eid), bytes.fromhex(author), "pref.set", value, time_ms, time_ms, None)]
    if a.source == "default" or a.bucket is None:
        return []
    floor, h, now_ms = s.anchor * s.half_life, s.half_life, _reading_time(s, now_ms)
    out = [Contribution(ev.eid, ev.author, ev.kind, ev.value, ev.time_ms, ev.eff,
                        decay.decayed(ev.weight / 1000, ev.eff, now_ms, h))
           for ev in evidence if a.bucket in ev.buckets and ev.eff >= floor and ev.lamport >= s.forget]
    ov = s.overrides.get(device) if a.stale_override else None
    if ov is not None and ov["value"] is not None:     # a learned answer beside a stale override: it voted
        out.append(Contribution(bytes.fromhex(ov["eid"]), bytes.fromhex(device), "override.set", ov["value"],
                                ov["time"], ov["eff"],
                                decay.decayed(VOTE_WEIGHT / 1000, min(ov["eff"], now_ms), now_ms, h)))
    out.sort(key=lambda c: (-abs(c.weight), c.eid))
    return out[:limit]

