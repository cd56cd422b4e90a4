"""Events for ingest tests: fresh ones, re-signed or garbled ones, and what a store holds of them."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import replace

from agentlog import crypto
from agentlog.log import payloads
from agentlog.log.event import Event, seal
from agentlog.store.store import event_key


def store_digest(store) -> str:
    """A digest of every key and value in every named database."""
    h = hashlib.blake2b()
    with store.raw_txn() as txn:
        for name in ("events", "payloads", "withheld", "ids", "heads", "forks", "views.roster", "meta"):
            for k, v in txn.cursor(db=store.db(name)):
                h.update(name.encode() + bytes(k) + b"=" + bytes(v))
    return h.hexdigest()


def phone_events(phone, n=3, value="v"):
    ids = [phone.append(payloads.Observation(setting="theme", value=f"{value}{i}")) for i in range(n)]
    return [phone.get(i) for i in ids]


def resign(event: Event, key: crypto.DeviceKey, **header_changes) -> Event:
    """The same event with header fields changed, correctly re-signed by `key`."""
    h = dataclasses.replace(event.header, **header_changes)
    return seal(h, key, event.payload)


def garbled(e: Event) -> Event:
    sig = bytearray(e.signature)
    sig[7] ^= 0x01
    return replace(e, signature=bytes(sig))


def own_events(store, n: int, tag: str = "m") -> list[Event]:
    store.append_many([payloads.Observation(setting="rogue", value=f"{tag}{i}") for i in range(n)])
    return list(store.events(store.device))[-n:]


def stored_record(store, e: Event) -> bytes:
    with store.raw_txn() as txn:
        return bytes(txn.get(event_key(e.header.author, e.header.epoch, e.header.seq), db=store.db("events")))
