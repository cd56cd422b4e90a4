"""Snapshots an enrolled member gone rogue signs, covering positions it made up."""

from __future__ import annotations

from agentlog import crypto
from agentlog.log import payloads, snapshot
from agentlog.store.store import Store


def forged(signer: Store, cover: dict[bytes, tuple[int, int, bytes]], roster: bytes) -> snapshot.Bundle:
    """A snapshot `signer` signs as the next event of its own chain: covering author -> (epoch, seq, id),
    carrying the roster state given and wiped preference and memory views."""
    states = {"roster": roster, "pref": b"\xff" * len(snapshot.VIEW_DBS["pref"]),
              "memory": b"\xff" * len(snapshot.VIEW_DBS["memory"])}
    points = tuple(payloads.LogPoint(author=a, epoch=e, seq=s, id=eid, lamport=1, time=0)
                   for a, (e, s, eid) in sorted(cover.items()))
    snap = payloads.Snapshot(frontier=points, views=tuple(
        payloads.ViewState(name=n, version=0, digest=crypto.blake2b256(states[n]), state=b"") for n in snapshot.VIEWS))
    event = signer.get(signer.append(snap))
    return snapshot.Bundle(event.record, event.payload, states)


def past(store: Store, author: bytes, ahead: int) -> tuple[int, int, bytes]:
    """A position `ahead` seqs past `author`'s head on `store` (0 if it holds nothing of it), with a made-up id."""
    h = store.heads().get(author)
    epoch, seq = (h.epoch, h.seq) if h else (0, 0)
    return epoch, seq + ahead, crypto.blake2b256(b"made up")
