"""A setting's canonical bytes: a compact binary encoding, kept up to date piece by piece. Pure.

The layout is in docs/preferences.md ("The stored state"): a format byte, the configuration, statements and
overrides as canonical JSON, the anchor, forget mark and newest time as integers, then each bucket (in key
order) with its values (in order) and each one's total and old sum as fixed-width big-endian integers, at
the least widths that hold the bucket's totals and its old sums. About half the JSON of the same state (whose sums are
33-digit decimals), so a batch writes, and the change log copies, that much less. Encoding a busy setting
whole costs far more than the few sums one batch changes, so a `Canonical` keeps the bytes of every sum and
of every bucket: a changed sum that still fits is written over its bytes as it is added, and `encode` rebuilds
only the pieces marked since the last call: the same bytes, at the cost of the change.
States stored as JSON (by reducer version 3 and earlier, as a compaction base may still hold) are read too.
"""

from __future__ import annotations

import json
from bisect import bisect_left

FORMAT = 1                       # the first byte of a binary state; a JSON state begins with "{"
_TAG = bytes((FORMAT,))
_SEP = "\x00"                    # between a bucket's values: no value holds a control character

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def uvarint(n: int) -> bytes:
    """n >= 0 as LEB128: seven bits a byte, low first, the high bit set on every byte but the last."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(bytes((i,)) for i in range(0x80))


def width(x: int) -> int:
    """Bytes of x as minimal two's complement (0 for 0)."""
    return (x.bit_length() + 8) >> 3 if x else 0


def integer(x: int) -> bytes:
    """x as uvarint(n) then n bytes of two's complement, big-endian, n minimal."""
    n = width(x)
    return _SMALL[n] + x.to_bytes(n, "big", signed=True) if n < 0x80 else uvarint(n) + x.to_bytes(n, "big",
                                                                                                    signed=True)


def _bucket_head(key: str, values: list[str], wt: int, wo: int) -> bytes:
    k, names = key.encode(), _SEP.join(values).encode()
    return b"".join((uvarint(len(k)), k, uvarint(len(values)), uvarint(wt), uvarint(wo), uvarint(len(names)), names))


class _Bucket:
    """One bucket's encoding, kept as a buffer: its head, then each value's total and old sum at the bucket's
    widths, in value order. A changed sum that still fits is written over its old bytes in place, a new value
    that fits is spliced in; a dropped value, or a width that changed, encodes the bucket again."""

    __slots__ = ("wt", "wo", "t_w", "o_w", "names", "at", "hl", "buf")

    def __init__(self) -> None:
        self.wt: dict[str, int] = {}          # value -> bytes its total needs
        self.wo: dict[str, int] = {}          # value -> bytes its old sum needs
        self.t_w = self.o_w = 0               # the bucket's widths: the largest of those
        self.names: list[str] = []            # the values, in order
        self.at: dict[str, int] | None = None     # value -> its place in `names`; None: not encoded
        self.hl = 0                           # the head's length: the sums follow it in `buf`
        self.buf = bytearray()

    def patch(self, v: str, x: int, y: int) -> bool:
        """Write value `v`'s new total `x` and old sum `y` over its bytes when the bucket's widths stay as they are
        (not [0, 0], within the widths, not narrowing a value that sets one); False, nothing written, otherwise."""
        at = self.at
        k = None if at is None else at.get(v)
        if k is None:
            return False
        t_w, o_w = self.t_w, self.o_w
        a, b = (x.bit_length() + 8) >> 3 if x else 0, (y.bit_length() + 8) >> 3 if y else 0
        if a > t_w or b > o_w or not (x or y) or a < self.wt[v] == t_w or b < self.wo[v] == o_w:
            return False
        self.wt[v], self.wo[v] = a, b
        j = t_w + o_w
        i = self.hl + k * j
        self.buf[i : i + j] = x.to_bytes(t_w, "big", signed=True) + y.to_bytes(o_w, "big", signed=True)
        return True

    def update(self, key: str, vals: dict[str, list[int]], changed: set[str]) -> bytearray | None:
        """The bucket's bytes after `changed` values' sums changed (those at [0, 0] dropped from `vals`);
        None when no sum is left. Values new to the bucket are spliced in and every changed sum patched; when
        one does not fit (a width changed, a value dropped), the bucket is encoded again from `vals`."""
        at = self.at
        if at is not None and all(v in vals for v in changed):
            new = [v for v in changed if v not in at]
            if new:
                self._insert(key, new)
            if all(self.patch(v, *vals[v]) for v in changed):
                return self.buf
        return self._encode(key, vals)

    def _insert(self, key: str, values: list[str]) -> None:
        """Make room for new values at the bucket's widths, their sums zero until patched."""
        names, j, hl, buf = self.names, self.t_w + self.o_w, self.hl, self.buf
        for v in values:
            self.wt[v] = self.wo[v] = 0
            k = bisect_left(names, v)
            names.insert(k, v)
            buf[hl + k * j : hl + k * j] = bytes(j)
        head = _bucket_head(key, names, self.t_w, self.o_w)
        buf[:hl] = head
        self.hl, self.at = len(head), dict(zip(names, range(len(names))))

    def _encode(self, key: str, vals: dict[str, list[int]]) -> bytearray | None:
        for v in [v for v, t in vals.items() if not (t[0] or t[1])]:
            del vals[v]
        if not vals:
            self.at = None
            return None
        names = self.names = sorted(vals)
        wt = self.wt = {v: width(vals[v][0]) for v in names}
        wo = self.wo = {v: width(vals[v][1]) for v in names}
        t_w, o_w = self.t_w, self.o_w = max(wt.values()), max(wo.values())
        head = _bucket_head(key, names, t_w, o_w)
        self.hl, self.at = len(head), dict(zip(names, range(len(names))))
        buf = self.buf = bytearray(head)
        for v in names:
            x, y = vals[v]
            buf += x.to_bytes(t_w, "big", signed=True)
            buf += y.to_bytes(o_w, "big", signed=True)
        return buf


class Canonical:
    """The encoded pieces of one setting's sums, and which of them changed since they were encoded.

    `dirty` maps a bucket to the values whose sums changed in it; None means every piece is stale
    (a new state, a rescaled or recomputed one). `meta` is the JSON of the configuration, statements and
    overrides, None when they may have changed.
    """

    __slots__ = ("dirty", "pieces", "buckets", "meta", "head")

    def __init__(self) -> None:
        self.dirty: dict[str, set[str]] | None = None
        self.pieces: dict[str, _Bucket] = {}
        self.buckets: dict[str, bytes] = {}             # bucket -> its whole encoding, in key order
        self.meta: bytes | None = None
        self.head = b""                                  # the last bytes' part before the buckets

    def stale(self) -> None:
        """Every piece must be encoded again."""
        self.dirty = None

    def changed(self, bucket: str, value: str, sums: list[int] | None) -> None:
        """The sums of `value` in `bucket` changed to `sums` (None: a value new to the bucket): written over
        their bytes at once when they fit, while the bucket's other bytes are current and its sums are at hand
        (most of a batch's changes: cheaper than finding them again at `encode`), else marked for `encode`."""
        dirty = self.dirty
        if dirty is None:
            return
        marked = dirty.get(bucket)
        if marked is not None:
            marked.add(value)
            return
        piece = self.pieces.get(bucket)
        if sums is None or piece is None or not piece.patch(value, sums[0], sums[1]):
            dirty[bucket] = {value}

    def encode(self, s) -> bytes:
        """The canonical bytes of Setting `s`; sums that cancelled to [0, 0] are dropped from `s.sums`."""
        sums, dirty = s.sums, self.dirty
        if dirty is None:
            self.pieces, self.buckets = {}, {}
            dirty = {b: set(vals) for b, vals in sums.items()}
        pieces, buckets = self.pieces, self.buckets
        added = False
        for b, changed in dirty.items():
            bucket = pieces.get(b)
            if bucket is None:
                bucket = pieces[b] = _Bucket()
            encoded = bucket.update(b, sums.get(b) or {}, changed)
            if encoded is None:
                sums.pop(b, None)
                del pieces[b]
                buckets.pop(b, None)
                continue
            added |= b not in buckets
            buckets[b] = encoded
        if added:
            self.buckets = buckets = dict(sorted(buckets.items()))
        self.dirty = {}
        if self.meta is None:
            meta = _dumps([s.config, s.explicit, s.overrides]).encode()
            self.meta = uvarint(len(meta)) + meta
        tmax = b"\x00" if s.tmax is None else b"\x01" + integer(s.tmax)
        self.head = head = b"".join((_TAG, self.meta, integer(s.anchor), integer(s.forget), tmax))
        return b"".join((head, uvarint(len(buckets)), *buckets.values()))

    def only(self, keys) -> bytes:
        """`only` of the bytes `encode` gave last, from their pieces (valid while nothing changed since)."""
        kept = [piece for b, piece in self.buckets.items() if b in keys]
        return b"".join((self.head, uvarint(len(kept)), *kept))


def decode(raw: bytes, only=None) -> tuple[dict, dict, dict, int, int, int | None, dict[str, dict[str, list[int]]]]:
    """(config, explicit, overrides, anchor, forget, tmax, sums) of a state's bytes, binary or JSON; with
    `only` (bucket keys), the sums of those buckets alone (a lookup reads a few of a setting's buckets)."""
    if raw[:1] != _TAG:
        d = json.loads(raw)
        return d["config"], d["explicit"], d["overrides"], d["anchor"], d["forget"], d["tmax"], d["sums"]
    r = _Reader(raw, 1)
    n = r.uvarint()
    config, explicit, overrides = json.loads(raw[r.at : r.at + n])
    r.at += n
    anchor, forget = r.integer(), r.integer()
    r.at += 1
    tmax = r.integer() if raw[r.at - 1] else None
    sums, fb = {}, int.from_bytes
    for _ in range(r.uvarint()):
        key = r.text()
        count, wt, wo = r.uvarint(), r.uvarint(), r.uvarint()
        if only is not None and key not in only:
            skip = r.uvarint() + count * (wt + wo)
            r.at += skip
            continue
        values = r.text().split(_SEP)
        at, step = r.at, wt + wo
        end = at + count * step
        if wo:
            sums[key] = {v: [fb(raw[i : i + wt], "big", signed=True), fb(raw[i + wt : i + step], "big", signed=True)]
                         for v, i in zip(values, range(at, end, step))}
        else:
            sums[key] = {v: [fb(raw[i : i + wt], "big", signed=True), 0] for v, i in zip(values, range(at, end, step))}
        r.at = end
    return config, explicit, overrides, anchor, forget, tmax, sums


def only(raw: bytes, keys) -> bytes:
    """A binary state's bytes with the buckets named in `keys` alone (cut out, not re-encoded): it answers
    a lookup that reads only those buckets as the whole state does. A JSON state comes back whole."""
    if raw[:1] != _TAG:
        return raw
    n, at = _uvarint_at(raw, 1)
    n, at = _uvarint_at(raw, at + n)             # past the configuration, statements and overrides: the anchor
    n, at = _uvarint_at(raw, at + n)             # the forget mark
    at += n + 1
    if raw[at - 1]:                              # the newest time
        n, at = _uvarint_at(raw, at)
        at += n
    head = at
    count, at = _uvarint_at(raw, at)
    kept = []
    for _ in range(count):
        start = at
        n, at = _uvarint_at(raw, at)
        key = raw[at : at + n].decode()
        at += n
        values, wt, wo = raw[at], raw[at + 1], raw[at + 2]
        if values < 0x80 and wt < 0x80 and wo < 0x80:
            at += 3
        else:
            values, at = _uvarint_at(raw, at)
            wt, at = _uvarint_at(raw, at)
            wo, at = _uvarint_at(raw, at)
        n, at = _uvarint_at(raw, at)
        at += n + values * (wt + wo)
        if key in keys:
            kept.append(raw[start:at])
            if len(kept) == len(keys):
                break
    return b"".join((raw[:head], uvarint(len(kept)), *kept))


def _uvarint_at(raw: bytes, at: int) -> tuple[int, int]:
    """The uvarint at `at`, and where it ends."""
    b = raw[at]
    if b < 0x80:
        return b, at + 1
    r = _Reader(raw, at)
    return r.uvarint(), r.at


class _Reader:
    """A position in a state's bytes."""

    __slots__ = ("raw", "at")

    def __init__(self, raw: bytes, at: int):
        self.raw, self.at = raw, at

    def uvarint(self) -> int:
        raw, at = self.raw, self.at
        b = raw[at]
        if b < 0x80:
            self.at = at + 1
            return b
        n = shift = 0
        while True:
            b = raw[at]
            at += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                self.at = at
                return n

    def integer(self) -> int:
        n = self.uvarint()
        at = self.at
        self.at = at + n
        return int.from_bytes(self.raw[at : at + n], "big", signed=True)

    def text(self) -> str:
        n = self.uvarint()
        at = self.at
        self.at = at + n
        return self.raw[at : at + n].decode()
