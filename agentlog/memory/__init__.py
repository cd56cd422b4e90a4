"""Memory: the pure reducer (entries merged field by field), its LMDB view, the local search
index and embedders (numpy), BM25 and the ranking that fuses it with the vectors, near-duplicate
pairs, and the API.

`reducer` and `ranking` are pure. May import: `agentlog.log`, `agentlog.codec` and the top-level helpers.
"""
