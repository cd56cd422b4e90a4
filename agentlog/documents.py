"""The JSON documents the CLI prints with --json and the MCP server returns: one builder each, so an
agent sees the same fields either way. Devices appear by name, with their ids beside where it matters.

Imported by agentlog.cli (inside its handlers) and agentlog.mcp; imports the parts below them.
"""

from __future__ import annotations

from agentlog.log.event import MAX_SEQ
from agentlog.store.peers import Peers, behind
from agentlog.text import iso


def frontier_by_name(roster, frontier: dict[bytes, int]) -> dict[str, int]:
    """A frontier (author id -> seq) keyed by the authors' names."""
    return {roster.name_of(a): seq for a, seq in sorted(frontier.items())}


def contribution(c, roster) -> dict:
    """One event (or a snapshot's summary of one day's evidence) that decided a preference, as --explain lists it."""
    if c.kind == "summary":          # a snapshot's sum of one day's evidence (time_ms holds how many events)
        return {"id": c.eid.hex(), "author": "(summary)", "author_id": None, "kind": "summary", "value": c.value,
                "time": iso(c.effective_ms), "effective_time": iso(c.effective_ms), "events": c.time_ms,
                "weight": None if c.weight is None else round(c.weight, 4)}
    return {"id": c.eid.hex(), "author": roster.name_of(c.author), "author_id": c.author.hex(), "kind": c.kind,
            "value": c.value, "time": iso(c.time_ms), "effective_time": iso(c.effective_ms),
            "weight": None if c.weight is None else round(c.weight, 4)}


def erasure_doc(erasure, roster) -> dict | None:
    """An erased event's erasure (store.erased's Erasure, or None) as every --json document shows it: the
    request's id (by), the device that asked, when and why. Never anything of the erased content."""
    if erasure is None:
        return None
    return {"by": erasure.request.hex(), "device": roster.name_of(erasure.by) if erasure.by else "?",
            "device_id": erasure.by.hex() or None, "time": iso(erasure.time_ms), "reason": erasure.reason}


def erased_text(doc: dict) -> str:
    """An erasure (erasure_doc) as one line for people and errors: "erased by REQUEST (device NAME, TIME): REASON"."""
    reason = f": {doc['reason']}" if doc["reason"] else ""
    return f"erased by {doc['by']} (device {doc['device']}, {doc['time']}){reason}"


def entry_doc(store, text: str) -> dict:
    """The memory entry `text` names (its id or a unique prefix), as `memory get --json` prints it; noted as
    read on this device (search decay, docs/memory.md).

    Raises:
        NotFoundError: no such entry here; for an entry an erase request forgot (named by its full id), the
            message says by which request, whose, when and why.
    """
    from agentlog.errors import NotFoundError

    memory = store.memory
    try:
        entry = memory.get(memory.id(text))
    except NotFoundError:
        gone = _entry_erasure(store, text)
        if gone is None:
            raise
        raise NotFoundError(f"memory {text.strip().lower()} was {erased_text(gone)}") from None
    memory.note_read(entry.id)
    return entry.to_json(author_names(store))


def _entry_erasure(store, text: str) -> dict | None:
    """The erasure of the memory entry whose full hex id is `text`, if an erase request forgot it."""
    from agentlog.errors import InvalidValueError
    from agentlog.ids import id_bytes
    from agentlog.store.erasure import Erasure, request_at

    try:
        entry = id_bytes(text.strip().lower(), "memory id", 16)
    except InvalidValueError:
        return None
    rid = store.erasure_rule(entry=entry)
    req = store.read(lambda txn: request_at(store.dbs, txn, rid)) if rid is not None else None
    if req is None:
        return None
    return erasure_doc(Erasure(rid, req.author, req.time_ms, req.payload.reason), store.roster())


def event_doc(store, event, roster) -> dict:
    """One held event as `agentlog log` lists it: its signed header's fields, and its erasure if it was erased."""
    h = event.header
    erased = store.erased(event.id) if event.payload is None else None
    return {"author": roster.name_of(h.author), "author_id": h.author.hex(), "seq": h.seq, "kind": h.kind,
            "scope": h.scope, "time": iso(h.time_ms), "id": event.id.hex(), "erased": erasure_doc(erased, roster)}


def author_names(store) -> dict[bytes, str]:
    """Device id -> name, for memory entries' authors (Entry.to_json)."""
    return {device: member.name for device, member in store.roster().members.items()}


def fork_doc(store, roster) -> dict:
    """Each fork this store holds proof of (where, when, both branch heads, the epoch that healed it) and the
    devices forked twice or more ("copied_keys": two live devices writing with one key)."""
    from agentlog.store import forks

    found = forks.summary(store)
    for f in found["forks"]:
        f["name"] = roster.name_of(bytes.fromhex(f["author"]))
    return {"forks": found["forks"],
            "copied_keys": [{"author": a, "name": roster.name_of(bytes.fromhex(a))} for a in found["copied_keys"]]}


def status_doc(store, home_path) -> dict:
    """What `agentlog status --json` prints (and the MCP status tool returns): device, group, heads, views, peers,
    carry mode, sealed scopes and who is known to hold their ciphertext."""
    roster, heads = store.roster(), store.heads()
    scopes = sorted(store.scopes.list(), key=lambda info: info.name)
    unread = store.scopes.unread_counts() if scopes else {}
    uncarried = store.uncarried_counts() if scopes else {}
    return {
        "device": store.device.hex(), "name": store.name, "home": str(home_path),
        "group": store.group.hex() if store.group else None, "events": store.count(),
        "payloads_missing": store.withheld_count(),
        "carry": store.carry, "payloads_uncarried": sum(uncarried.values()),
        "erasure": store.erasure_status(),
        "signatures_damaged": sum(hi - lo + 1 for _, _, lo, hi in store.damaged()),
        "heads": {roster.name_of(a): {"id": a.hex(), "epoch": h.epoch, "seq": h.seq} for a, h in sorted(heads.items())},
        **fork_doc(store, roster),
        "views": {name: {"version": v["version"], "digest": v["digest"].hex(),
                         "frontier": frontier_by_name(roster, v["frontier"])}
                  for name, v in store.views().items()},
        "peers": peer_status(store, roster),
        "compaction": {"snapshot": (store.meta("base") or b"").hex() or None,
                       "truncated": {roster.name_of(a): h.seq for a, h in sorted(store.truncated().items())}},
        "scopes": [{**scope_doc(info), "unread": unread.get(info.name, 0), "uncarried": uncarried.get(info.name, 0)}
                   for info in scopes],
        "scope_holders": scope_holders(store, scopes, unread, roster),
    }


def scope_doc(info) -> dict:
    """One sealed scope (a store.scopes ScopeInfo) as `agentlog scopes list --json` prints it: its readers by
    name with their ids, its key epoch, and whether this device can read it."""
    readers = sorted(({"name": name, "id": device.hex()} for device, name in info.readers),
                     key=lambda r: (r["name"], r["id"]))
    return {"scope": info.name, "readers": readers, "epoch": info.epoch, "can_read": info.can_read}


def scope_docs(store) -> list[dict]:
    """Every sealed scope of the group, by name."""
    return [scope_doc(info) for info in sorted(store.scopes.list(), key=lambda info: info.name)]


def scope_holders(store, scopes: list, unread: dict[str, int], roster) -> dict[str, list[dict]]:
    """Per sealed scope (`scopes`, with `unread`: the sealed events held here unopened, per scope), the devices
    other than its readers that this device knows to hold its events as ciphertext, each with why it knows
    (authored, sent, received: its ledger; stored here); see agentlog.store.exposure. This device's knowledge:
    a peer may have passed events on further."""
    if not scopes:
        return {}
    from agentlog.store.exposure import exposure

    seen = exposure(store, sealed_only=True)
    out = {}
    for info in scopes:
        why = seen.holders(info.name)
        if unread.get(info.name):
            why.setdefault(store.device, []).append("stored here")
        readers = {device for device, _ in info.readers}
        out[info.name] = sorted(({"name": roster.name_of(d), "id": d.hex(), "because": because}
                                 for d, because in why.items() if d not in readers),
                                key=lambda h: (h["name"], h["id"]))
    return out


def peer_status(store, roster) -> list[dict]:
    """Each known peer: a device (state connected|partitioned|never) or a relay (state connecting|live|unreachable|
    refused|never), last seen, events behind each way (None when unknown), the last error; `discovered` when `serve`
    found it announced on the local network, and a row of kind discovered (state announced|gone) for such an
    address no connection came from yet."""
    book, ours = Peers(store), store.frontier()
    out, addresses, states = [], set(), book.states()
    for device, s in sorted(states.items(), key=lambda item: item[1].name):
        # a peer's claims count only for enrolled authors and seqs an event may hold (a rogue or old claim does not)
        claims = {a: n for a, n in s.frontier.items() if 0 < n <= MAX_SEQ and bytes.fromhex(a) in roster.members}
        we_lack, they_lack = behind(ours, claims)
        addresses.add(s.address)
        out.append({"kind": "device", "device": device.hex(), "name": roster.name_of(device), "address": s.address,
                    "state": s.state, "last_seen_ms": s.last_seen_ms, "we_lack": we_lack, "they_lack": they_lack,
                    "error": s.error})
    for addr in book.addresses():
        if addr not in addresses:
            out.append({"kind": "device", "device": None, "name": "", "address": addr, "state": "never",
                        "last_seen_ms": 0, "we_lack": None, "they_lack": None, "error": ""})
    found = book.found()
    devices = {f.device for f in found.values() if f.device}
    for row in out:
        row["discovered"] = row["address"] in found or row["device"] in devices
    for addr, f in found.items():
        if addr not in addresses and bytes.fromhex(f.device) not in states:    # no connection yet (dialing, or failing)
            out.append({"kind": "discovered", "device": f.device or None, "name": "", "address": addr, "state": f.state,
                        "last_seen_ms": f.seen_ms, "we_lack": None, "they_lack": None, "error": f.error,
                        "discovered": True})
    for addr, r in book.relay_states().items():
        out.append({"kind": "relay", "device": None, "name": "relay", "address": addr, "state": r.state,
                    "last_seen_ms": r.last_seen_ms, "we_lack": r.we_lack, "they_lack": r.they_lack, "error": r.error,
                    "discovered": False})
    return out
