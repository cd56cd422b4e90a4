"""Exponential decay in integers, so every device folds evidence to the same bytes. Pure.

Forward decay: evidence of weight w at time t is stored as w * 2^(t/h) (h the
half-life) relative to an anchor of whole half-lives, as an exact integer. Sums of
such terms do not depend on the order they were added in, and the ratio between two
values' sums does not depend on when it is read: reading at time `now` only scales
every sum by the same 2^(-now/h). 2^(j/256) comes from a table built with integer
square roots only (no libm), identical on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache

STEPS = 256          # fractional half-life resolution of a term's time
FRAC_BITS = 30       # fixed-point bits of the table entries


@cache
def _table() -> tuple[int, ...]:
    """2^(j/STEPS) for j in 0..STEPS-1 in FRAC_BITS fixed point, from isqrt alone."""
    one = 1 << 64
    roots, r = [], 2 * one
    for _ in range(8):                       # 2^(1/2), 2^(1/4), ... 2^(1/256), 64-bit fixed point
        r = math.isqrt(r << 64)
        roots.append(r)
    roots.reverse()                          # roots[i] = 2^(2^i / 256)
    out = []
    for j in range(STEPS):
        v = one
        for i in range(8):
            if j >> i & 1:
                v = v * roots[i] >> 64
        out.append(v >> (64 - FRAC_BITS))
    return tuple(out)


TABLE = _table()
"""2^(j/STEPS) in FRAC_BITS fixed point, for `term` and the folds' loops that compute terms inline."""


def position(time_ms: int, half_life_ms: int) -> int:
    """A time in 1/STEPS half-lives since 1970 (floor)."""
    return time_ms * STEPS // half_life_ms


def halvings(time_ms: int, half_life_ms: int) -> int:
    """Whole half-lives since 1970 (floor)."""
    return time_ms // half_life_ms


def term(weight: int, time_ms: int, half_life_ms: int, anchor: int) -> int:
    """weight * 2^(time/h - anchor) in FRAC_BITS fixed point, exact; time must be at or after the anchor."""
    k, j = divmod(time_ms * STEPS // half_life_ms, STEPS)
    if k < anchor:
        raise ValueError("a decay term before its anchor")
    return (weight * TABLE[j]) << (k - anchor)


def totals(evs: Iterable, h: int, anchor: int, cut: int) -> dict[tuple[str, str], list[int]]:
    """Per (context, value) of the evidence `evs` at or after the anchor (whole half-lives of `h`), the sum
    of their terms and of those at or before `cut` (old): exact integers, so adding them up first changes nothing."""
    floor = anchor * h
    out: dict[tuple[str, str], list[int]] = {}
    for ev in evs:
        eff = ev.eff
        if eff >= floor:
            k, j = divmod(eff * STEPS // h, STEPS)
            t = (ev.weight * TABLE[j]) << (k - anchor)
            key = (ev.context, ev.value)
            found = out.get(key)
            if found is None:
                out[key] = [t, t] if eff <= cut else [t, 0]
            else:
                found[0] += t
                if eff <= cut:
                    found[1] += t
    return out


def value_at(total: int, anchor: int, now_ms: int, half_life_ms: int) -> float:
    """A sum of terms as a float weight decayed to `now_ms` (for answers, never stored)."""
    if not total:
        return 0.0
    exponent = anchor - now_ms / half_life_ms
    whole = math.floor(exponent)
    return math.ldexp(float(total), whole - FRAC_BITS) * 2.0 ** (exponent - whole)


def decayed(weight: float, time_ms: int, now_ms: int, half_life_ms: int) -> float:
    """One weight decayed from `time_ms` to `now_ms` (for answers and explanations)."""
    return weight * 2.0 ** ((time_ms - now_ms) / half_life_ms)
