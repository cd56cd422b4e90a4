"""Replay: the views as this device held them at any point, folded again in a scratch LMDB
environment; a setting's or entry's history and the difference between two points.

May import: `agentlog.store` and everything below it.
"""
