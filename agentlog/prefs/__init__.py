"""Preferences: the pure reducer (evidence folded into one belief per setting, integer decay),
its LMDB view folded in the store's transactions, and the API (the fast read-only lookup is
agentlog.store.pref_lookup: only the store opens LMDB).

`reducer` and `decay` are pure. May import: `agentlog.log`, `agentlog.codec` and the
top-level helpers.
"""
