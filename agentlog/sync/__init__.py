"""Replication between devices: the messages and the per-connection protocol state machine
(sans-IO), a snapshot's transfer and the handshake (pure), and the trio shell around them:
framed TCP, the replicator and the wake-ups writers send it, the listener and the `serve` process.

Only this part imports trio. May import: `agentlog.store` and everything below it.
"""
