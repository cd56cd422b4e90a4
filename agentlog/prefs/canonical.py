"""A setting's canonical bytes, kept up to date piece by piece. Pure.

The bytes are the JSON text `json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
of the setting's state (docs/preferences.md). Encoding a busy setting whole costs far more than the
few sums one batch changes, so a `Canonical` keeps the text of every (bucket, value) sum and of every
bucket, and rebuilds only those marked since the last call: the same bytes, at the cost of the change.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class Canonical:
    """The encoded pieces of one setting's sums, and which of them changed since they were encoded.

    `dirty` maps a bucket to the values whose sums changed in it; None means every piece is stale
    (a new state, a rescaled or recomputed one). `meta` is the text of the configuration, statements and
    overrides, None when they may have changed.
    """

    __slots__ = ("dirty", "values", "buckets", "meta")

    def __init__(self) -> None:
        self.dirty: dict[str, set[str]] | None = None
        self.values: dict[str, dict[str, str]] = {}      # bucket -> value -> '"value":[total,old]', in key order
        self.buckets: dict[str, str] = {}                # bucket -> '"bucket":{...}', in key order
        self.meta: tuple[str, str, str] | None = None

    def stale(self) -> None:
        """Every piece must be encoded again."""
        self.dirty = None

    def encode(self, s) -> bytes:
        """The canonical bytes of Setting `s`; sums that cancelled to [0, 0] are dropped from `s.sums`."""
        sums, dirty = s.sums, self.dirty
        if dirty is None:
            self.values, self.buckets = {}, {}
            dirty = {b: set(vals) for b, vals in sums.items()}
        values, buckets = self.values, self.buckets
        added = False
        for b, changed in dirty.items():
            vals = sums.get(b) or {}
            texts = values.get(b)
            if texts is None:
                texts = values[b] = {}
            reorder = False
            for v in changed:
                t = vals.get(v)
                if t is None or not (t[0] or t[1]):
                    vals.pop(v, None)
                    texts.pop(v, None)
                else:
                    reorder |= v not in texts
                    texts[v] = f"{encode_basestring(v)}:[{t[0]},{t[1]}]"
            if not texts:
                sums.pop(b, None)
                values.pop(b)
                buckets.pop(b, None)
                continue
            if reorder:                       # the pieces are kept in key order: a new key sorts them again
                texts = values[b] = dict(sorted(texts.items()))
            added |= b not in buckets
            buckets[b] = encode_basestring(b) + ":{" + ",".join(texts.values()) + "}"
        if added:
            self.buckets = buckets = dict(sorted(buckets.items()))
        self.dirty = {}
        if self.meta is None:
            self.meta = (_dumps(s.config), _dumps(s.explicit), _dumps(s.overrides))
        config, explicit, overrides = self.meta
        tmax = "null" if s.tmax is None else s.tmax
        return (f'{{"anchor":{s.anchor},"config":{config},"explicit":{explicit},"forget":{s.forget},'
                f'"overrides":{overrides},"sums":{{{",".join(buckets.values())}}},"tmax":{tmax}}}').encode()
