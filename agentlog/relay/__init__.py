"""The blind relay: a NATS JetStream server that stores and forwards a group's events sealed with the group's
relay key (docs/relay.md).

`envelope` (pure: keyed tags, subjects, message ids, sealing with the relay key), `config` (pure: a relay's
address and options), `bridge` (the NATS client on its own asyncio loop in one thread: the only module that
imports `nats`). Sits beside `agentlog.sync`, which drives it: may import `agentlog.store` and everything below
it; never `agentlog.sync`, the CLI or the MCP server.
"""
