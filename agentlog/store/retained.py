"""The events compaction keeps as events: which they are, which of them a base snapshot stands beside, packing
them for a bootstrap and checking those a bootstrap brings (docs/compaction.md, "Sealed scopes").

Events of a sealed scope, and the scope and erase events that say who reads them and what was erased, are
never truncated, and a snapshot's view state folds their headers but not their payloads: it carries no sealed
content, every device keeps every key it may read, and a device starting from the snapshot folds the payloads
it can read on top of the state, each with the fold context the snapshot records for it (the newest time its
author had seen, its author's causal past), as a full replay folds them.
"""

from __future__ import annotations

from collections.abc import Callable

from agentlog import crypto
from agentlog.errors import EventError, SnapshotError
from agentlog.log import snapshot
from agentlog.log.event import decode_record, peek_record
from agentlog.log.kinds import SCOPE_KINDS
from agentlog.store.layout import POS, event_key
from agentlog.store.snapshots import base_in, kept_in

KEPT_KINDS = SCOPE_KINDS | {"erase"}
NO_CONTEXT = snapshot.pack_context(None, {})   # of a kept event whose payload no view folds (scope, erase)


def kept(kind: str, codec: str) -> bool:
    """Whether compaction keeps an event of this kind and payload codec (sealed: of a sealed scope)."""
    return codec == "sealed" or kind in KEPT_KINDS


def kept_record(record: bytes) -> bool:
    """Whether compaction keeps the stored record's event (an unreadable record: no)."""
    try:
        _, _, kind, codec, _ = peek_record(record)
    except EventError:
        return False
    return kept(kind, codec)


def sealed_record(record: bytes) -> bool:
    """Whether the stored record's payload is sealed (an event of a sealed scope)."""
    try:
        return peek_record(record)[3] == "sealed"
    except EventError:
        return False


def kept_keys(dbs: dict, txn, frontier: dict[bytes, tuple[int, int]]) -> list[bytes]:
    """Keys of the kept events held at or below `frontier` (author -> (epoch, seq)), in key order."""
    out = []
    for author, upto in sorted(frontier.items()):
        with txn.cursor(db=dbs["events"]) as cur:
            found = cur.set_range(author)
            while found:
                key = bytes(cur.key())
                if key[:32] != author or POS.unpack_from(key, 32) > upto:
                    break
                if kept_record(cur.value()):
                    out.append(key)
                found = cur.next()
    return out


def kept_beside(dbs: dict, txn) -> dict[bytes, bytes]:
    """The events kept beside the base snapshot, key -> fold context (none for a snapshot written before events
    were kept, and without a base)."""
    sid = txn.get(b"base", db=dbs["meta"])
    return kept_in(dbs, txn, bytes(sid)) if sid is not None else {}


def covered_by_base(dbs: dict, txn) -> Callable[[bytes], bool]:
    """Whether the base snapshot's state holds the event at an event key: at or below its frontier, and not kept
    beside it (always False without a base)."""
    bundle = base_in(dbs, txn)
    if bundle is None:
        return lambda key: False
    frontier = {p.author: (p.epoch, p.seq) for p in bundle.snapshot().frontier}
    beside = kept_beside(dbs, txn)
    return lambda key: POS.unpack_from(key, 32) <= frontier.get(bytes(key[:32]), (-1, -1)) and bytes(key) not in beside


def contexts(kept: dict[bytes, bytes], events: list) -> tuple[dict, dict]:
    """For the kept events among `events` (prefs.view.Folded): event id -> the newest time its author had seen,
    and event id -> its author's causal past, as the views' fold takes them (`kept`)."""
    newest, past = {}, {}
    for f in events:
        ctx = kept.get(event_key(f.author, f.epoch, f.seq))
        if ctx is not None:
            newest[f.eid], past[f.eid] = snapshot.unpack_context(ctx)
    return newest, past


def pack(dbs: dict, txn, kept: dict[bytes, bytes]) -> bytes:
    """The kept events as a bootstrap part: each signed record with its payload as held here, and its context."""
    events = []
    for key, ctx in kept.items():
        payload = txn.get(key, db=dbs["payloads"])
        events.append((bytes(txn.get(key, db=dbs["events"])), None if payload is None else bytes(payload), ctx))
    return snapshot.pack_retained(events)


def checked(bundle: snapshot.Bundle, group: bytes) -> list[tuple[bytes, bytes, bytes | None, bytes]]:
    """The kept events a bundle brings, as (key, record, payload or None, fold context), each checked: of this
    group, a kept kind, at or below the snapshot's frontier for its author, signed by its author, its payload
    matching the header's hash, its context readable (snapshot.check already matched their ids and contexts
    against the signed digest).

    Raises:
        SnapshotError: naming the first that does not hold.
    """
    frontier = {p.author: (p.epoch, p.seq) for p in bundle.snapshot().frontier}
    out = []
    for record, payload, ctx in snapshot.unpack_retained(bundle.retained):
        try:
            event = decode_record(record)
        except EventError as exc:
            raise SnapshotError(f"a kept event beside the snapshot does not decode: {exc}") from None
        h = event.header
        name = f"{h.author.hex()[:16]}:{h.seq}"
        if h.group != group:
            raise SnapshotError(f"the kept event {name} belongs to another group")
        if not kept(h.kind, h.payload_codec):
            raise SnapshotError(f"the kept event {name} is a {h.kind}, which compaction does not keep")
        if (h.epoch, h.seq) > frontier.get(h.author, (-1, -1)):
            raise SnapshotError(f"the kept event {name} lies past the snapshot's frontier")
        if not crypto.verify(h.author, event.id, event.signature):
            raise SnapshotError(f"the kept event {name}'s signature does not verify")
        if payload is not None and (crypto.blake2b256(payload) != h.payload_hash or len(payload) != h.payload_len):
            raise SnapshotError(f"the kept event {name}'s payload does not match its header's hash")
        snapshot.unpack_context(ctx)
        out.append((event_key(h.author, h.epoch, h.seq), record, payload, ctx))
    return out
