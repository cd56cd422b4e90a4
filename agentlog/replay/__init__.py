"""Replay: points in time as a user names them, and a setting's or entry's history between
them, on the scratch fold of the views as held at a point (agentlog.store.scratch).

May import: `agentlog.store` and everything below it.
"""
