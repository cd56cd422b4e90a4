"""`agentlog audit export`: the whole history of this device's store as JSON Lines a reviewer can read and
check without agentlog (docs/audit.md), signed by this device at the end.

Lines, in order: export (who, when, the selection), device (the roster as folded), roster (every
enrol/revoke event, signed, whatever the selection), event (each selected event: readable fields,
exact signed header, signature, payload or a redaction marker; an erased event's line is header-only, with
the request that erased it, whose, when and why), base (the store's base snapshot: its signed event and
the roster's state at its frontier, for a compacted store), snapshot and truncation
(compaction boundaries), fork (both signed records), ledger (what left this device to which device, what
arrived), scope (each sealed scope: its readers, key epoch, and the devices this device knows to hold its
events as ciphertext), frontier (per author: the chain's bounds and the seqs selected), end (a digest of every
line before it, signed by this device). Events are read in one LMDB snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import queue
import threading
import time
from binascii import b2a_base64
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from agentlog.audit import format as fmt
from agentlog.codec.decode import Reader
from agentlog.codec.schema import event as _event_schema
from agentlog.crypto import SIG_LEN as _SIG_LEN
from agentlog.crypto import blake2b256
from agentlog.errors import EventError, StoreError, UsageError
from agentlog.log.event import decode_record
from agentlog.store import forks, ledger
from agentlog.store.compaction import base_bundle
from agentlog.store.exposure import Exposure, exposure
from agentlog.store.store import Store

PARALLEL_MIN_EVENTS = 20_000
PARTS_PER_JOB = 8
RECENT = 200
ERASED_ROWS = 500               # erased event lines the HTML report lists (the JSON Lines file holds every one)
BASE_STATES = ("roster",)      # the base snapshot's view states the export carries (pref and memory: digests only)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events an export holds: time window [since_ms, until_ms), scopes, and whether content is redacted."""

    since_ms: int | None = None
    until_ms: int | None = None
    scopes: tuple[str, ...] | None = None
    redact: bool = False

    def to_json(self) -> dict:
        return {"since_ms": self.since_ms, "until_ms": self.until_ms,
                "scopes": list(self.scopes) if self.scopes is not None else None, "redact_content": self.redact}


@dataclass(frozen=True, slots=True)
class Summary:
    """What an export wrote, and what its HTML report shows (agentlog.audit.html)."""

    events: int
    lines: int
    digest: bytes
    sections: list            # every line but the event lines, as dicts
    counts: Counter           # (author hex, scope, kind, day) -> selected events
    recent: list              # the last RECENT event lines, as dicts
    sent: Counter = field(default_factory=Counter)    # (peer hex, scope, kind) -> events the ledger says were sent
    erased: int = 0           # event lines of erased events (header-only)
    erased_rows: list = field(default_factory=list)   # the first ERASED_ROWS of them, as dicts


class _Writer:
    """Writes canonical lines and keeps the running digest the end line signs."""

    def __init__(self, out: BinaryIO):
        self.out, self.lines, self.sections = out, 0, []
        self.hash = hashlib.blake2b(fmt.DIGEST_PREFIX, digest_size=32)

    def line(self, obj: dict) -> None:
        self.sections.append(obj)
        self.text(fmt.dumps(obj))

    def chunk(self, raw: bytes, lines: int) -> None:
        """Lines already encoded (a part of the events)."""
        self.hash.update(raw)
        self.out.write(raw)
        self.lines += lines

    def text(self, line: str) -> None:
        raw = (line + "\n").encode("ascii")
        self.hash.update(raw)
        self.out.write(raw)
        self.lines += 1


def export(store: Store, out: BinaryIO, selection: Selection = Selection(),
           progress: Callable[[int, int], None] | None = None) -> Summary:
    """Write the export of `store` to `out` (binary); returns what was written.

    Raises:
        UsageError: the store has no group or no device key to sign with.
    """
    if store.group is None or store.key is None:
        raise UsageError("this device has not joined a group yet: nothing to export")
    roster = store.roster()
    names = {device: member.name for device, member in roster.members.items()}
    w = _Writer(out)
    w.line({"type": "export", "format": fmt.FORMAT, "created": fmt.iso(time.time_ns() // 1_000_000),
            "device": store.device.hex(), "device_name": store.name, "group": store.group.hex(),
            "founder": store.founder.hex(), "genesis": store.genesis.hex(), "selection": selection.to_json()})
    for device, member in sorted(roster.members.items(), key=lambda item: item[1].name):
        w.line({"type": "device", "device": device.hex(), "name": member.name,
                "enrolled_by": [[p.author.hex(), p.epoch, p.seq, p.id.hex()] for p in member.enrolled_by],
                "revoked_after_seq": member.until_seq,
                "revoked_by": [[p.author.hex(), p.epoch, p.seq, p.id.hex()] for p in member.revoked_by]})
    total = store.count()
    select = selection.to_json()
    parts = _render(store, names, select, selection.redact, total)
    frontier: dict[tuple[bytes, int], dict] = {}
    snapshots, roster_events = [], {}
    done = events = erased = 0
    counts, recent, authored, erased_rows = Counter(), [], {}, []
    for part in parts:
        w.chunk(part.text, part.events)
        events += part.events
        erased += part.erased
        erased_rows = (erased_rows + part.erased_rows)[:ERASED_ROWS]
        counts.update(part.counts)
        for author, scope in part.authored:
            authored.setdefault(scope, set()).add(author)
        if part.events:
            recent = (recent + part.text.rsplit(b"\n", RECENT + 1)[-RECENT - 1:-1])[-RECENT:]
        for chain_key, (first, head, head_id, seqs) in part.chains.items():
            chain = frontier.setdefault(chain_key, {"first": first, "seqs": []})
            chain["head"], chain["head_id"] = head, head_id
            chain["seqs"] += seqs
        for record, payload in part.roster:
            event = decode_record(record, payload)
            roster_events[event.id] = event
        snapshots += [decode_record(record, payload) for record, payload in part.snapshots]
        done += part.rows
        if progress:
            progress(done, total)
    anchor = store.anchor()
    if anchor is not None:
        roster_events.setdefault(anchor[0].id, _with_payload(anchor))
    for event in sorted(roster_events.values(), key=lambda e: (e.header.lamport, e.header.author, e.header.seq)):
        w.line({**event_line(event, names.get(event.header.author, ""), False), "type": "roster"})
    _compaction(w, store, snapshots, names)
    _forks(w, store)
    _ledger(w, store, names)
    seen = exposure(store, authored=authored)
    _scopes(w, store, seen, selection)
    truncated = store.truncated()
    w.line({"type": "frontier", "chains": [
        {"author": a.hex(), "epoch": e, "from": _from(truncated.get(a), c["first"]), "head": c["head"],
         "head_id": c["head_id"].hex(), "selected": fmt.runs(c["seqs"]), "count": len(c["seqs"])}
        for (a, e), c in sorted(frontier.items())]})
    digest = w.hash.digest()
    w.line({"type": "end", "lines": w.lines, "events": events, "digest": digest.hex(),
            "signature": store.key.sign(digest).hex()})
    if progress:
        progress(total, total)
    sent = Counter({(peer.hex(), scope, kind): n for (peer, scope, kind), n in seen.sent.items()})
    return Summary(events, w.lines, digest, w.sections, counts, [json.loads(line) for line in recent], sent, erased,
                   erased_rows)


@dataclass(slots=True)
class Part:
    """The event lines of one key range, and what the lines after them need to know of it."""

    text: bytes = b""
    rows: int = 0                                   # events read, selected or not
    events: int = 0                                 # event lines written
    erased: int = 0                                 # of them, erased events' (header-only)
    erased_rows: list = field(default_factory=list) # the first ERASED_ROWS of those lines, as dicts
    chains: dict = field(default_factory=dict)      # (author, epoch) -> (first seq, head seq, head id, selected seqs)
    roster: list = field(default_factory=list)      # (record, payload) of enrol/revoke events
    snapshots: list = field(default_factory=list)   # (record, payload) of selected snapshot events
    counts: Counter = field(default_factory=Counter)  # (author hex, scope, kind, day) -> selected events
    authored: set = field(default_factory=set)      # (author, scope) of every event read, selected or not


# The header fields a line shows, read from stored records without the checks ingest already made
# (decode_header's): a tuple, no Header object. Input from outside never takes this path.
_STORED_HEADER = Reader(_event_schema.Header, ("author", "epoch", "seq", "prev", "lamport", "time", "scope", "kind",
                                               "payloadHash", "payloadLen", "payloadCodec"))


def render_part(store: Store, lo: bytes | None, hi: bytes | None, names: dict, select: dict, redact: bool) -> Part:
    """Event lines for the stored events with lo <= key < hi, in key order.

    The export's hot path: headers are read as stored (validated at ingest), each author's hex and name
    are made once, and the line is one format (`_line`; tests check it is `fmt.dumps(event_line(...))`).
    """
    part, lines = Part(), []
    erased: list[tuple[int, bytes, tuple]] = []     # (index in lines, event id, _line's arguments) of erased events
    chains, counts, roster, snapshots = part.chains, part.counts, part.roster, part.snapshots
    wrote = part.authored.add
    read, line, iso = _STORED_HEADER.read_stored, _line, fmt.iso
    everything = select.get("since_ms") is None and select.get("until_ms") is None and select.get("scopes") is None
    authors: dict[bytes, tuple[str, str]] = {}
    rows, chain_author, chain_epoch = 0, None, None
    with store.raw_txn() as txn:
        get_payload = functools.partial(txn.get, db=store.db("payloads"))
        erased_row = functools.partial(txn.get, db=store.db("erased"))
        cur = txn.cursor(db=store.db("events"))
        found = cur.set_range(lo) if lo else cur.first()
        for key, record in (cur.iternext() if found else ()):
            if hi is not None and key >= hi:
                break
            rows += 1
            header_bytes, signature = record[:-_SIG_LEN], record[-_SIG_LEN:]
            author, epoch, seq, prev, lamport, time_ms, scope, kind, payload_hash, payload_len, codec = \
                read(header_bytes, "header")
            eid = blake2b256(header_bytes)
            payload = get_payload(key)
            if author != chain_author or epoch != chain_epoch:       # keys are sorted: a chain's events are together
                chain_author, chain_epoch = author, epoch
                seqs = chains[author, epoch][3] if (author, epoch) in chains else []
                first = chains[author, epoch][0] if (author, epoch) in chains else seq
                who = authors.get(author)
                if who is None:
                    who = authors[author] = (author.hex(), _string(names.get(author, "")))
            chains[author, epoch] = (first, seq, eid, seqs)
            wrote((author, scope))
            if kind in fmt.ROSTER_KINDS:
                roster.append((record, payload))
            if everything or fmt.selected(time_ms, scope, select):
                time_text = iso(time_ms)
                fields = (who, epoch, seq, time_text, time_ms, kind, scope, eid, prev, lamport, codec,
                          payload_hash, payload_len, header_bytes, signature, payload, redact)
                if payload is None and erased_row(key) is not None:
                    erased.append((len(lines), eid, fields))
                lines.append(line(*fields))
                seqs.append(seq)
                counts[who[0], scope, kind, time_text[:10]] += 1
                if kind == "snapshot":
                    snapshots.append((record, payload))
    markers: dict[bytes, str] = {}
    for i, eid, fields in erased:                       # after the read: store.erased reads in its own transaction
        lines[i] = line(*fields, erased_marker(store, eid, names, redact, markers))
    part.rows, part.events, part.erased = rows, len(lines), len(erased)
    part.erased_rows = [json.loads(lines[i]) for i, _, _ in erased[:ERASED_ROWS]]
    part.text = ("\n".join(lines) + "\n").encode("ascii") if lines else b""
    return part


def _render(store: Store, names: dict, select: dict, redact: bool, total: int):
    """Parts in key order: in this process for small stores, else from worker processes (the cost is decoding
    and formatting; processes use every core)."""
    jobs = os.cpu_count() or 1
    if total < PARALLEL_MIN_EVENTS or jobs == 1:
        yield render_part(store, None, None, names, select, redact)
        return
    from agentlog.store.workers import drain, spawn, split_keys
    starts = split_keys(store, total, jobs * PARTS_PER_JOB)
    tasks = list(zip(starts, starts[1:] + [None]))
    workers = []
    for n in range(jobs):
        proc = spawn("agentlog.audit.worker")
        pickle.dump((str(store.path), names, select, redact, tasks[n::jobs]), proc.stdin)
        proc.stdin.close()
        results: queue.Queue = queue.Queue(maxsize=2)
        threading.Thread(target=drain, args=(proc, results), daemon=True).start()
        workers.append((proc, results))
    try:
        for i in range(len(tasks)):
            item = workers[i % jobs][1].get()
            if isinstance(item, str):
                raise StoreError(f"audit export worker failed: {item}")
            yield item
    finally:
        for proc, _ in workers:
            proc.kill()
            proc.wait()


def run_worker(stdin, stdout) -> None:
    """Worker side: render each task's range and write its Part as soon as it is done."""
    path, names, select, redact, tasks = pickle.load(stdin)
    with Store(Path(path), None) as store:
        for lo, hi in tasks:
            pickle.dump(render_part(store, lo, hi, names, select, redact), stdout, protocol=pickle.HIGHEST_PROTOCOL)
            stdout.flush()


def _with_payload(anchor):
    from agentlog.log.payloads import encode
    event, enroll = anchor
    return decode_record(event.record, encode(enroll))


def _from(truncated, first: int) -> int:
    """The first seq the export could hold: after the compaction boundary, else the chain's first."""
    return truncated.seq + 1 if truncated is not None else first


def erased_marker(store: Store, eid: bytes, names: dict, redact: bool, cache: dict[bytes, str] | None = None) -> str:
    """The text of an erased event's "erased" field: the request's id (by), the requesting device's name, the
    request's time and reason (null when content is redacted: the reason is the request's content)."""
    erasure = store.erased(eid)
    if erasure is None:
        raise StoreError(f"event {eid.hex()} left the store while it was exported: export again")
    text = None if cache is None else cache.get(erasure.request)
    if text is None:
        text = fmt.dumps({"by": erasure.request.hex(), "device": names.get(erasure.by, ""),
                          "time": fmt.iso(erasure.time_ms), "reason": None if redact else erasure.reason})
        if cache is not None:
            cache[erasure.request] = text
    return text


def event_line(event, name: str, redact: bool, erased: str | None = None) -> dict:
    """The line of one event: readable fields first, then what verifies them. `erased`: the erased marker's text
    (erased_marker) of an event held header-only because an erase request erased it."""
    h, payload = event.header, event.payload
    withheld = payload is None and erased is None
    hide = redact and h.kind not in fmt.ROSTER_KINDS
    try:
        content = None if payload is None or hide else fmt.content_of(h.kind, h.payload_codec, payload)
    except EventError as exc:
        content = {"undecodable": str(exc)}
    return {"type": "event", "device": name, "author": h.author.hex(), "epoch": h.epoch, "seq": h.seq,
            "time": fmt.iso(h.time_ms), "time_ms": h.time_ms, "kind": h.kind, "scope": h.scope,
            "content": content, "redacted": hide and payload is not None, "withheld": withheld,
            **({} if erased is None else {"erased": json.loads(erased)}),
            "id": event.id.hex(), "prev": h.prev.hex(), "lamport": h.lamport, "codec": h.payload_codec,
            "payload_hash": h.payload_hash.hex(), "payload_len": h.payload_len,
            "header": fmt.b64(event.header_bytes), "signature": event.signature.hex(),
            "payload": None if payload is None or hide else fmt.b64(payload)}


_STRINGS: dict[str, str] = {}


def _string(text: str) -> str:
    """A JSON string literal, cached: names, kinds and scopes repeat."""
    literal = _STRINGS.get(text)
    if literal is None:
        if len(_STRINGS) > 4096:
            _STRINGS.clear()
        literal = _STRINGS[text] = fmt.string(text)
    return literal


def event_text(event, name: str, redact: bool, erased: str | None = None) -> str:
    """`fmt.dumps(event_line(...))`, built directly (tests check they agree)."""
    h = event.header
    return _line((h.author.hex(), _string(name)), h.epoch, h.seq, fmt.iso(h.time_ms), h.time_ms, h.kind, h.scope,
                 event.id, h.prev, h.lamport, h.payload_codec, h.payload_hash, h.payload_len, event.header_bytes,
                 event.signature, event.payload, redact, erased)


def _line(who: tuple[str, str], epoch: int, seq: int, time_text: str, time_ms: int, kind: str, scope: str, eid: bytes,
          prev: bytes, lamport: int, codec: str, payload_hash: bytes, payload_len: int, header_bytes: bytes,
          signature: bytes, payload: bytes | None, redact: bool, erased: str | None = None) -> str:
    """One event line's text from its fields; `who` is (author hex, the JSON literal of its device name);
    `erased`: the erased marker's text when the event was erased."""
    if erased is not None:
        content, redacted, withheld, payload_text = "null", "false", f'false,"erased":{erased}', "null"
    elif payload is None:
        content, redacted, withheld, payload_text = "null", "false", "true", "null"
    elif redact and kind not in fmt.ROSTER_KINDS:
        content, redacted, withheld, payload_text = "null", "true", "false", "null"
    else:
        content, redacted, withheld = _content_text(kind, codec, payload), "false", "false"
        payload_text = f'"{b2a_base64(payload, newline=False).decode()}"'
    kind_scope = _KIND_SCOPE.get((kind, scope))
    if kind_scope is None:
        if len(_KIND_SCOPE) > 4096:
            _KIND_SCOPE.clear()
        kind_scope = _KIND_SCOPE[kind, scope] = f'"kind":{fmt.string(kind)},"scope":{fmt.string(scope)}'
    return (f'{{"type":"event","device":{who[1]},"author":"{who[0]}","epoch":{epoch},"seq":{seq},'
            f'"time":"{time_text}","time_ms":{time_ms},{kind_scope},'
            f'"content":{content},"redacted":{redacted},"withheld":{withheld},"id":"{eid.hex()}",'
            f'"prev":"{prev.hex()}","lamport":{lamport},"codec":{_string(codec)},'
            f'"payload_hash":"{payload_hash.hex()}","payload_len":{payload_len},'
            f'"header":"{b2a_base64(header_bytes, newline=False).decode()}","signature":"{signature.hex()}",'
            f'"payload":{payload_text}}}')


_KIND_SCOPE: dict[tuple[str, str], str] = {}        # (kind, scope) -> their two fields' text: few, repeated
_CONTENT: dict[tuple[str, str, bytes], str] = {}
# Small payloads repeat: a device observes the same settings, values and contexts day after day, a cycle
# of thousands of distinct payloads. Each distinct one is decoded and formatted once while it stays
# cached (about 0.5 KB an entry: some 16 MB at most per process).
_CONTENT_MAX_BYTES, _CONTENT_MAX = 256, 32_768


def _content_text(kind: str, codec: str, payload: bytes) -> str:
    """The content's JSON text, cached by payload bytes for small payloads."""
    small = len(payload) <= _CONTENT_MAX_BYTES
    if small:
        hit = _CONTENT.get((kind, codec, payload))
        if hit is not None:
            return hit
    try:
        text = fmt.dumps(fmt.content_of(kind, codec, payload))
    except EventError as exc:
        text = fmt.dumps({"undecodable": str(exc)})
    if small:
        if len(_CONTENT) >= _CONTENT_MAX:
            _CONTENT.clear()
        _CONTENT[kind, codec, payload] = text
    return text


def _compaction(w: _Writer, store: Store, snapshots: list, names: dict) -> None:
    bundle = base_bundle(store)
    if bundle is not None:                      # a compacted store: the roster folds from its state
        event = decode_record(bundle.record, bundle.payload)
        w.line({**event_line(event, names.get(event.header.author, ""), False), "type": "base",
                "states": {name: fmt.b64(bundle.states[name]) if name in BASE_STATES else None
                           for name in sorted(bundle.states)}})
    for event in snapshots:
        try:
            snap = fmt.content_of("snapshot", event.header.payload_codec, event.payload or b"")
        except EventError:
            snap = None
        w.line({"type": "snapshot", "author": event.header.author.hex(), "seq": event.header.seq,
                "id": event.id.hex(), "frontier": (snap or {}).get("frontier")})
    for author, head in sorted(store.truncated().items()):
        w.line({"type": "truncation", "author": author.hex(), "epoch": head.epoch, "seq": head.seq,
                "id": head.id.hex()})


def _forks(w: _Writer, store: Store) -> None:
    """Each fork with both signed records, the branch heads, and the epoch.start that healed it (or null); an author
    forked at two or more positions is flagged `copied_key`."""
    found = forks.summary(store)
    healing = {(f["author"], f["epoch"], f["seq"]): f for f in found["forks"]}
    for fork in store.forks():
        f = healing.get((fork.author.hex(), fork.epoch, fork.seq), {})
        w.line({"type": "fork", "author": fork.author.hex(), "epoch": fork.epoch, "seq": fork.seq,
                "kept": fork.kept.hex() if fork.kept else None,
                "records": [{"id": eid.hex(), "record": fmt.b64(record)} for eid, record in fork.records],
                "heads": f.get("heads", []), "healed": f.get("healed"),
                "copied_key": fork.author.hex() in found["copied_keys"]})


def _ledger(w: _Writer, store: Store, names: dict) -> None:
    book = ledger.Ledger(store)
    for direction, rows in (("sent", book.sent()), ("received", book.received())):
        for r in rows:
            w.line({"type": "ledger", "direction": direction, "peer": r.peer.hex(), "peer_name": names.get(r.peer, ""),
                    "author": r.author.hex(), "author_name": names.get(r.author, ""), "epoch": r.epoch,
                    "lo": r.lo, "hi": r.hi, "first": fmt.iso(r.first_ms), "last": fmt.iso(r.last_ms)})



def _scopes(w: _Writer, store: Store, seen: Exposure, selection: Selection) -> None:
    """One line per sealed scope the selection covers: its readers and key epoch, the devices that read it
    before (they keep what they were given), and the devices this device knows to hold its events as
    ciphertext, each with why it knows: authored, sent (its ledger), received (its ledger), stored here (not when
    it holds only their headers, carry readable)."""
    roster = store.roster()
    unread, uncarried = store.scopes.unread_counts(), store.uncarried_counts()
    for info in sorted(store.scopes.list(), key=lambda i: i.name):
        if not fmt.scope_matches(info.name, list(selection.scopes) if selection.scopes is not None else None):
            continue
        why = seen.holders(info.name)
        headers_only = uncarried.get(info.name) and not unread.get(info.name)     # carry readable: no payload here
        if seen.authored.get(info.name) and store.device not in why and not headers_only:
            why[store.device] = []
        if store.device in why:
            why[store.device].append("stored here")
        readers = {device for device, _ in info.readers}
        holders = sorted((roster.name_of(d), d) for d in why if d not in readers)
        w.line({"type": "scope", "scope": info.name, "epoch": info.epoch,
                "readers": [{"device": d.hex(), "name": n} for d, n in info.readers],
                "former_readers": [{"device": d.hex(), "name": n, "last_epoch": e} for d, n, e in info.former],
                "holders": [{"device": d.hex(), "name": n, "because": why[d]} for n, d in holders]})
