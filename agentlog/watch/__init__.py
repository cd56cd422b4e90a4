"""Watching the views: which setting or memory entry changed, as each write commits (docs/watching.md).

`changelog` is the writer's half: in the append's or ingest's own transaction it records, for each setting
and memory entry the batch named, its state before and after the fold (one row per change, numbered, kept
for a bounded number of changes). `changes` turns a row into a `Change` (values, confidence, conflicts, the
events behind it) and filters them; `watcher` is the reader's half (`store.watch(...)`): a position in that
numbering, woken by `agentlog serve` over loopback UDP; `waiting` waits for a wake-up inside asyncio or trio.

May import `prefs`, `memory`, `log` and the helpers below them (the store is above: it hands the watcher its
transactions). `waiting` is the one module outside `agentlog.sync` that imports trio, to wait in the caller's
event loop.
"""
