"""The privacy review: `audit export` (the whole history as JSON Lines, and an HTML page) and
`audit verify` (an export checked with nothing but the file).

May import: `agentlog.store` and everything below it.
"""
