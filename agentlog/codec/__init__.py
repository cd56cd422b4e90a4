"""Cap'n Proto bytes: the schemas (package data), strict framing checks, and a pure encoder and
decoder laid out from the schemas.

Pure: no files beyond reading the schemas once, no sockets, clocks, threads or logging.
May import: `agentlog.errors` and pycapnp (for the schemas and framing only).
"""
