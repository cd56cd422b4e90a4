"""Preferences: the pure reducer (evidence folded into one belief per setting, integer decay),
its LMDB view folded in the store's transactions, the fast read-only lookup, and the API.

`reducer` and `decay` are pure. May import: `agentlog.log`, `agentlog.codec` and the
top-level helpers; `lookup` reads LMDB through `agentlog.store.env` only.
"""
