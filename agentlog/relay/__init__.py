"""The blind relay (docs/relay.md): events sealed for a NATS JetStream server that stores and forwards
ciphertext only. `bridge` is the NATS client in a thread of its own (the only module importing nats).

May import: `agentlog.store` and everything below it; never `agentlog.sync` or `agentlog.cli`.
"""
