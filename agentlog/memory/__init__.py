"""Memory: the pure reducer (entries merged field by field), its LMDB view, the local search
index and embedders (numpy), and the API.

`reducer` is pure. May import: `agentlog.log`, `agentlog.codec` and the top-level helpers.
"""
