"""`agentlog audit verify FILE`: checks an audit export on its own, with nothing but the file.

Every line must be canonical JSON (so any changed byte is noticed and named). Each event's header
must hash to its id, its signature verify under its author's key, its readable fields equal what the
signed header and payload say, its payload match the header's hash (or be marked redacted, withheld or
erased: then it carries neither payload nor content), and it must fall in the stated selection. An
erased line names its erase request; when that request is in the file it must be an erase event of
the stated device, time and reason that names the event (or an entry or setting rule). Chains link
where consecutive seqs are present (from a compaction boundary's (seq, id) where one is stated). The
roster is folded again from the signed roster lines, on top of the base snapshot's roster state when
the store was compacted (the snapshot's signature, payload hash and the state's signed digest checked
first); every author must be a device of it, and every truncation point must lie within the
snapshot's frontier. The stated frontier must match the events present exactly; the end line's
digest must cover every line before it and carry the exporting device's signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from agentlog import crypto
from agentlog.audit import format as fmt
from agentlog.errors import EventError
from agentlog.log import payloads
from agentlog.log.event import decode_header, event_id
from agentlog.log.kinds import MEMORY_KINDS, PREF_KINDS, is_sealed_scope, scope_name_problem
from agentlog.log.roster import Roster
from agentlog.log.snapshot import VIEWS
from agentlog.log.validate import check_payload

_HEADER_FIELDS = ("author", "epoch", "seq", "prev", "lamport", "time_ms", "kind", "scope", "payload_hash",
                  "payload_len", "payload_codec")
_LINE_FIELDS = ("author", "epoch", "seq", "prev", "lamport", "time_ms", "kind", "scope", "payload_hash",
                "payload_len", "codec")


@dataclass(slots=True)
class Report:
    problems: list[str] = field(default_factory=list)
    events: int = 0
    lines: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _State:
    export: dict | None = None
    devices: dict = field(default_factory=dict)        # hex -> device line
    roster_events: list = field(default_factory=list)  # (line no, header, id, decoded payload)
    events: dict = field(default_factory=dict)         # (author hex, epoch) -> {seq: (line no, id, prev)}
    branches: dict = field(default_factory=dict)       # (author hex, epoch) -> [(line no, seq, id, prev)] of forks
    truncations: dict = field(default_factory=dict)    # author hex -> (epoch, seq, id hex, line no)
    base: tuple | None = None                           # (line no, snapshot author hex, Snapshot, Roster) once checked
    bases: int = 0                                      # base lines seen
    forks: list = field(default_factory=list)
    frontier: dict | None = None
    end: tuple | None = None                            # (line no, line dict, digest of the lines before it)
    scopes: dict = field(default_factory=dict)          # scope -> (line no, scope line)
    sealed: dict = field(default_factory=dict)          # (author hex, epoch, seq) -> scope, of sealed event lines
    sent: list = field(default_factory=list)            # (peer hex, author hex, epoch, lo, hi) of sent ledger lines
    erased: list = field(default_factory=list)          # (where, event id hex, erased marker) of erased lines
    requests: dict = field(default_factory=dict)        # id hex -> event line, of erase requests and erased events


def verify_file(path, progress: Callable[[int, int], None] | None = None) -> Report:
    """Check the export at `path`; a problem is one line naming what does not hold and where.

    Raises:
        OSError: the file cannot be read.
    """
    report, state = Report(), _State()
    hasher = hashlib.blake2b(fmt.DIGEST_PREFIX, digest_size=32)
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        for n, raw in enumerate(f, 1):
            report.lines = n
            if state.end is not None:
                report.problems.append(f"line {n}: text after the end line")
                break
            obj = _parse(raw, n, report)
            if obj is not None and obj.get("type") == "end":
                state.end = (n, obj, hasher.digest())
            else:
                hasher.update(raw)
            if obj is not None:
                _dispatch(obj, n, state, report)
            if progress and n % 4096 == 0:
                progress(f.tell(), size)
    _check_whole(state, report)
    return report


def _parse(raw: bytes, n: int, report: Report) -> dict | None:
    try:
        text = raw.decode("ascii")
        if not text.endswith("\n"):
            raise ValueError("the line does not end with a newline")
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        report.problems.append(f"line {n}{_guess(raw)}: not a readable export line ({_short(exc)})")
        return None
    if fmt.dumps(obj) != text[:-1]:
        report.problems.append(f"line {n}{_where(obj)}: not in the export's canonical form (the line was altered)")
    return obj


def _guess(raw: bytes) -> str:
    """Author and seq of a garbled event line, if they can still be read, so the problem names the event."""
    text = raw.decode("ascii", "replace")
    try:
        author = text.split('"author":"', 1)[1][:16]
        seq = text.split('"seq":', 1)[1].split(",", 1)[0]
        return f" (author {author} seq {int(seq)})"
    except (IndexError, ValueError):
        return ""


def _where(obj: dict) -> str:
    if obj.get("type") in ("event", "roster"):
        return f" ({obj.get('device') or '?'} {str(obj.get('author'))[:16]} seq {obj.get('seq')})"
    if obj.get("type") == "base":
        return f" (base snapshot by {obj.get('device') or '?'} {str(obj.get('author'))[:16]} seq {obj.get('seq')})"
    return f" ({obj.get('type')})"


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:120]


def _dispatch(obj: dict, n: int, state: _State, report: Report) -> None:
    kind = obj.get("type")
    try:
        if kind == "export":
            if state.export is not None:
                report.problems.append(f"line {n}: a second export line")
            elif obj.get("format") != fmt.FORMAT:
                report.problems.append(f"line {n}: format {obj.get('format')!r} is not {fmt.FORMAT}")
            state.export = obj
        elif state.export is None:
            report.problems.append(f"line {n}: the file does not start with an export line")
            state.export = {}
        elif kind == "device":
            state.devices[obj["device"]] = obj
        elif kind in ("event", "roster", "base"):
            _event(obj, n, state, report)
        elif kind == "truncation":
            if type(obj["epoch"]) is not int or type(obj["seq"]) is not int or len(_hex_id(obj["id"])) != 32:
                raise ValueError("epoch and seq must be integers, id 64 lowercase hex digits")
            state.truncations[obj["author"]] = (obj["epoch"], obj["seq"], obj["id"], n)
        elif kind == "fork":
            state.forks.append((n, obj))
        elif kind == "frontier":
            for c in obj["chains"]:
                _frontier_chain(c)
            state.frontier = obj
        elif kind == "scope":
            _scope_line(obj, n, state)
        elif kind == "ledger":
            if obj["direction"] == "sent":
                state.sent.append((obj["peer"], obj["author"], obj["epoch"], obj["lo"], obj["hi"]))
        elif kind not in ("snapshot", "end"):
            report.problems.append(f"line {n}: unknown line type {kind!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        report.problems.append(f"line {n}{_where(obj)}: malformed {kind} line ({type(exc).__name__}: {_short(exc)})")


def _scope_line(obj: dict, n: int, state: _State) -> None:
    """A scope line's fields and types; ValueError when they are not the export's."""
    problem = scope_name_problem(obj["scope"]) if isinstance(obj["scope"], str) else "the scope is not text"
    devices = obj["readers"] + obj["former_readers"] + obj["holders"]
    if problem or type(obj["epoch"]) is not int or any(
            not isinstance(d["name"], str) or len(_hex_id(d["device"])) != 32 for d in devices) or any(
            type(d["last_epoch"]) is not int for d in obj["former_readers"]) or any(
            not isinstance(d["because"], list) or not all(isinstance(b, str) for b in d["because"])
            for d in obj["holders"]):
        raise ValueError(problem or "a scope line's fields are not the export's")
    if obj["scope"] in state.scopes:
        raise ValueError(f"a second line for scope {obj['scope']!r} (also line {state.scopes[obj['scope']][0]})")
    state.scopes[obj["scope"]] = (n, obj)


def _frontier_chain(c: dict) -> None:
    """ValueError unless a frontier chain has the fields and types the export writes."""
    ints = [c["epoch"], c["from"], c["head"], c["count"]] + [s for run in c["selected"] for s in run]
    if not isinstance(c["author"], str) or any(type(v) is not int for v in ints) or \
            any(type(run) is not list or len(run) != 2 for run in c["selected"]) or len(_hex_id(c["head_id"])) != 32:
        raise ValueError("a chain's fields are not the export's")


def _hex_id(text: str) -> bytes:
    """Lowercase hex as the export writes it; ValueError for anything else."""
    raw = bytes.fromhex(text)
    if raw.hex() != text:
        raise ValueError("not lowercase hex")
    return raw


def _event(obj: dict, n: int, state: _State, report: Report) -> None:
    where = f"line {n}{_where(obj)}"
    problems = []
    try:
        header_bytes = fmt.unb64(obj["header"])
        h = decode_header(header_bytes)
    except (ValueError, EventError) as exc:
        report.problems.append(f"{where}: header does not decode ({_short(exc)})")
        return
    eid = event_id(header_bytes)
    if obj["id"] != eid.hex():
        problems.append("id is not the BLAKE2b-256 of the header (header or id altered)")
    signature = bytes.fromhex(obj["signature"])
    if not crypto.verify(h.author, eid, signature):
        problems.append("signature does not verify (header or signature altered)")
    elif signature.hex() != obj["signature"]:           # fromhex reads upper case too: the text was altered
        problems.append("signature is not the lowercase hex the export writes (the line was altered)")
    if h.group.hex() != state.export.get("group"):
        problems.append("belongs to another group than the export states")
    signed = [getattr(h, name) for name in _HEADER_FIELDS]
    for name, value in zip(_LINE_FIELDS, signed):
        if obj[name] != (value.hex() if isinstance(value, bytes) else value):
            problems.append(f"{name} {obj[name]!r} is not what the signed header says")
    if obj["time"] != fmt.iso(h.time_ms):
        problems.append(f"time {obj['time']!r} is not the signed header's")
    if obj["device"] != state.devices.get(obj["author"], {}).get("name", ""):
        problems.append(f"device name {obj['device']!r} is not the roster's name for this author")
    erased = "erased" in obj
    if erased:
        _erased(obj, where, h, eid, state, problems)
    decoded = None if erased else _payload(obj, h, problems)
    if obj["type"] == "roster":
        if h.kind not in fmt.ROSTER_KINDS:
            problems.append(f"a roster line holds a {h.kind} event")
        elif decoded is not None and not problems:
            state.roster_events.append((n, h, eid, decoded))
    elif obj["type"] == "base":
        _base(obj, n, h, state, problems)
    else:
        report.events += 1
        if not fmt.selected(h.time_ms, h.scope, state.export.get("selection") or {}):
            problems.append("lies outside the export's stated selection")
        chain = state.events.setdefault((obj["author"], h.epoch), {})
        if h.seq in chain and chain[h.seq][1] != eid:          # a fork's other branch (its proof: a fork line)
            state.branches.setdefault((obj["author"], h.epoch), []).append((n, h.seq, eid, h.prev))
        elif h.seq in chain:
            problems.append(f"appears twice (also line {chain[h.seq][0]})")
        else:
            chain[h.seq] = (n, eid, h.prev)
        if is_sealed_scope(h.scope):
            state.sealed[obj["author"], h.epoch, h.seq] = h.scope
        if h.kind == "erase" or erased:
            state.requests[eid.hex()] = obj
    report.problems += [f"{where}: {p}" for p in problems]


def _base(obj: dict, n: int, h, state: _State, problems: list) -> None:
    """The base snapshot: a signed snapshot event with its payload, and the roster's state at its frontier,
    which must hash to the digest the payload signs; the roster is folded from it."""
    state.bases += 1
    if state.bases > 1:
        problems.append("a second base snapshot line")
    if h.kind != "snapshot":
        problems.append(f"the base snapshot line holds a {h.kind} event")
    if obj["payload"] is None:
        problems.append("the base snapshot carries no payload")
    if problems:                                        # unsigned, altered or not a snapshot: start from nothing
        return
    try:
        snap = payloads.decode("snapshot", fmt.unb64(obj["payload"]))
    except EventError as exc:
        problems.append(f"the base snapshot's payload does not decode ({_short(exc)})")
        return
    digests = {v.name: v.digest for v in snap.views}
    states = obj["states"]
    if sorted(states) != sorted(VIEWS) or set(digests) != set(VIEWS):
        problems.append(f"the base snapshot must list the views {', '.join(VIEWS)}")
        return
    for name, text in states.items():
        if text is None:
            if name == "roster":
                problems.append("the base snapshot carries no roster state")
        elif crypto.blake2b256(fmt.unb64(text)) != digests[name]:
            problems.append(f"the {name} view's state does not match the snapshot's signed digest")
    if problems:
        return
    try:
        roster = Roster.from_bytes(fmt.unb64(states["roster"]))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        problems.append(f"the base snapshot's roster state does not parse ({_short(exc)})")
        return
    author = roster.members.get(h.author)
    if h.author.hex() != state.export.get("founder") and (author is None or not author.active):
        problems.append("the base snapshot's author is not an active device of its own roster")
        return
    state.base = (n, h.author.hex(), snap, roster)


_ERASABLE = PREF_KINDS | MEMORY_KINDS
_ERASED_FIELDS = ["by", "device", "time", "reason"]


def _erased(obj: dict, where: str, h, eid: bytes, state: _State, problems: list) -> None:
    """An erased event's line: an event line of an erasable kind, header-only, naming its erase request."""
    marker = obj["erased"]
    if not isinstance(marker, dict) or list(marker) != _ERASED_FIELDS or len(_hex_id(marker["by"])) != 32 or \
            not isinstance(marker["device"], str) or not isinstance(marker["time"], str) or \
            not isinstance(marker["reason"], (str, type(None))):
        raise ValueError(f"its erased field must hold {', '.join(_ERASED_FIELDS)}")
    if obj["payload"] is not None or obj["content"] is not None:
        problems.append("marked erased but carries a payload or content")
    if obj["withheld"] or obj["redacted"]:
        problems.append("marked erased and also withheld or redacted")
    if obj["type"] != "event" or h.kind not in _ERASABLE:
        problems.append(f"marked erased, but a {h.kind} event {'line' if obj['type'] == 'event' else obj['type']} "
                        "is never erased")
    state.erased.append((where, eid.hex(), marker))


def _payload(obj: dict, h, problems: list) -> object | None:
    """Check the payload against the header and the content against the payload; the decoded roster payload."""
    if obj["withheld"] or obj["redacted"]:
        if obj["payload"] is not None or obj["content"] is not None:
            problems.append("marked redacted or withheld but carries a payload or content")
        if obj["withheld"] and obj["redacted"]:
            problems.append("marked both redacted and withheld")
        if obj["redacted"] and h.kind in fmt.ROSTER_KINDS:
            problems.append("a roster event is never redacted")
        return None
    try:
        payload = fmt.unb64(obj["payload"])
    except (ValueError, TypeError) as exc:
        problems.append(f"payload is not base64 ({_short(exc)})")
        return None
    if len(payload) != h.payload_len or crypto.blake2b256(payload) != h.payload_hash:
        problems.append("payload does not match the signed header's payload hash")
        return None
    try:
        expected = fmt.content_of(h.kind, h.payload_codec, payload)
    except EventError as exc:
        expected = {"undecodable": str(exc)}
    if fmt.dumps(obj["content"]) != fmt.dumps(expected):
        problems.append("content is not what the signed payload says")
    if h.kind in fmt.ROSTER_KINDS:
        from agentlog.log.event import decode_record
        try:
            return check_payload(decode_record(bytes(fmt.unb64(obj["header"])) + bytes(64), payload))
        except EventError as exc:
            problems.append(f"roster payload unreadable ({_short(exc)})")
    return None


def _check_whole(state: _State, report: Report) -> None:
    if state.export is None:
        report.problems.append("the file holds no export line: not an agentlog audit export")
        return
    _check_roster(state, report)
    _check_truncations(state, report)
    _check_chains(state, report)
    _check_frontier(state, report)
    _check_forks(state, report)
    _check_scopes(state, report)
    _check_erased(state, report)
    _check_end(state, report)


def _check_roster(state: _State, report: Report) -> None:
    founder = state.export.get("founder")
    try:
        folded = [(h, eid, p) for _, h, eid, p in state.roster_events]
        if state.base is None:
            roster = Roster.replay(bytes.fromhex(founder), folded)
        else:                                           # roster events compaction dropped: start from the state
            roster = state.base[3]
            roster.founder = bytes.fromhex(founder)
            for h, eid, p in sorted(folded, key=lambda e: (e[0].lamport, e[0].author, e[0].seq)):
                roster.apply(h, eid, p)
    except (TypeError, ValueError) as exc:
        report.problems.append(f"roster cannot be folded from the roster lines ({_short(exc)})")
        return
    for n, h, eid, _ in state.roster_events:
        if h.author.hex() == founder and h.seq == 1 and eid.hex() != state.export.get("genesis"):
            report.problems.append(f"line {n}: the founder's first event is not the group's stated genesis")
    folded = {d.hex(): m for d, m in roster.members.items()}
    for device, line in state.devices.items():
        member = folded.get(device)
        if member is None:
            report.problems.append(
                f"device {line.get('name')} ({device[:16]}): listed, but no signed roster event enrols it")
        elif member.name != line.get("name") or member.until_seq != line.get("revoked_after_seq"):
            report.problems.append(f"device {line.get('name')} ({device[:16]}): name or revocation differs from "
                                   f"the signed roster events ({member.name}, revoked after {member.until_seq})")
    for device in set(folded) - set(state.devices):
        report.problems.append(
            f"device {folded[device].name} ({device[:16]}): enrolled by a roster event but not listed"
        )
    for author, _ in state.events:
        if author not in folded:
            report.problems.append(f"author {author[:16]}: not a device of the group's roster")


def _check_truncations(state: _State, report: Report) -> None:
    """Every truncation point lies within the base snapshot's frontier (at it, with the same id, or before)."""
    frontier = {p.author.hex(): p for p in state.base[2].frontier} if state.base else {}
    for author, (epoch, seq, eid, n) in sorted(state.truncations.items()):
        where = f"line {n} (truncation of {(state.devices.get(author) or {}).get('name', '?')} {author[:16]} seq {seq})"
        point = frontier.get(author)
        if state.base is None:
            report.problems.append(f"{where}: no verified base snapshot covers it")
        elif point is None or (epoch, seq) > (point.epoch, point.seq):
            report.problems.append(f"{where}: truncated past the base snapshot's frontier")
        elif (epoch, seq) == (point.epoch, point.seq) and eid != point.id.hex():
            report.problems.append(f"{where}: the truncation point's id differs from the base snapshot's")


def _check_chains(state: _State, report: Report) -> None:
    for (author, epoch), chain in state.events.items():
        cut = state.truncations.get(author)
        previous = None
        for seq in sorted(chain):
            n, eid, prev = chain[seq]
            expect = None
            if previous is not None and previous[0] + 1 == seq:
                expect = previous[1]
            elif seq == 1:
                expect = crypto.ZERO_ID
            elif cut is not None and cut[0] == epoch and cut[1] + 1 == seq:
                expect = bytes.fromhex(cut[2])
            if expect is not None and prev != expect and not any(
                    s == seq - 1 and other == prev for _, s, other, _ in state.branches.get((author, epoch), ())):
                report.problems.append(f"line {n} ({author[:16]} seq {seq}): prev does not link to the event before it")
            previous = (seq, eid)
    forks = {(obj["author"], obj["epoch"], obj["seq"]) for _, obj in state.forks}
    for (author, epoch), found in state.branches.items():
        ids = {(seq, eid) for seq, (_, eid, _) in state.events.get((author, epoch), {}).items()}
        ids |= {(seq, eid) for _, seq, eid, _ in found}
        for n, seq, _, prev in found:
            if not ((seq == 1 and prev == crypto.ZERO_ID) or (seq - 1, prev) in ids):
                report.problems.append(f"line {n} ({author[:16]} seq {seq}): a branch event whose prev links to no "
                                       "event before it")
            if not any((author, epoch, s) in forks for s in range(1, seq + 1)):
                report.problems.append(f"line {n} ({author[:16]} seq {seq}): a second event at its seq, and no fork "
                                       "line proves a fork below it")


def _check_frontier(state: _State, report: Report) -> None:
    if state.frontier is None:
        report.problems.append("no frontier line: the export is cut short or altered")
        return
    stated = {}
    for c in state.frontier["chains"]:
        seqs = {s for lo, hi in c["selected"] for s in range(lo, hi + 1)}
        stated[c["author"], c["epoch"]] = seqs
        branched = state.branches.get((c["author"], c["epoch"]), [])
        if len(seqs) + len(branched) != c["count"]:
            report.problems.append(
                f"frontier of {c['author'][:16]}: count {c['count']} is not the {len(seqs)} seqs stated")
        chain = state.events.get((c["author"], c["epoch"]), {})
        head = chain.get(c["head"])
        heads = {eid.hex() for _, seq, eid, _ in branched if seq == c["head"]}
        if head is not None and head[1].hex() != c["head_id"] and c["head_id"] not in heads:
            report.problems.append(f"frontier of {c['author'][:16]}: head seq {c['head']} is not the event stated")
    for key in set(stated) | set(state.events):
        author = key[0]
        name = (state.devices.get(author) or {}).get("name", "?")
        want, have = stated.get(key, set()), set(state.events.get(key, {}))
        for lo, hi in fmt.runs(sorted(want - have)):
            report.problems.append(f"{name} ({author[:16]}) seq {lo}{'' if lo == hi else f'..{hi}'}: stated in the "
                                   f"frontier but missing from the export (removed)")
        for lo, hi in fmt.runs(sorted(have - want)):
            report.problems.append(f"{name} ({author[:16]}) seq {lo}{'' if lo == hi else f'..{hi}'}: in the export "
                                   f"but not in the stated frontier")


def _check_forks(state: _State, report: Report) -> None:
    for n, obj in state.forks:
        valid = set()
        for r in obj["records"]:
            try:
                record = fmt.unb64(r["record"])
                header_bytes, sig = record[:-crypto.SIG_LEN], record[-crypto.SIG_LEN:]
                h = decode_header(header_bytes)
            except (ValueError, EventError, KeyError):
                continue
            eid = event_id(header_bytes)
            same = (h.author.hex(), h.seq, eid.hex()) == (obj["author"], obj["seq"], r["id"])
            if same and crypto.verify(h.author, eid, sig):
                valid.add(eid)
        if len(valid) < 2:
            report.problems.append(f"line {n} (fork of {obj['author'][:16]} seq {obj['seq']}): does not prove a fork")


def _check_scopes(state: _State, report: Report) -> None:
    """What a scope line states that the file can show: its devices are the roster's, under their names; every
    author of one of its events in the file is a reader, a former reader or a holder that authored; every
    peer a ledger line says was sent one of its events in the file is a reader, a former reader or a holder
    it was sent to. (Readers and epochs are this device's fold of the scope events; the file carries those
    events for a reviewer to fold again.)"""
    listed: dict[str, dict[str, set[str]]] = {}
    for scope, (n, obj) in sorted(state.scopes.items()):
        where = f"line {n} (scope {scope})"
        known = listed[scope] = {}
        for role, entries in (("reader", obj["readers"]), ("former reader", obj["former_readers"]),
                              ("holder", obj["holders"])):
            for d in entries:
                device = state.devices.get(d["device"])
                if device is None or device.get("name") != d["name"]:
                    report.problems.append(f"{where}: {role} {d['name']} ({d['device'][:16]}) is not a device of "
                                           f"the roster by that name")
                known.setdefault(d["device"], set()).update(d.get("because", ["read"]))
    for (author, _, seq), scope in sorted(state.sealed.items()):
        known = listed.get(scope)
        if known is not None and not known.get(author, set()) & {"read", "authored"}:
            report.problems.append(f"scope {scope}: {_name(state, author)} wrote seq {seq} of it, but the scope "
                                   f"line lists it neither as reader nor as holder that authored")
    for peer, author, epoch, lo, hi in (state.sent if state.sealed else ()):
        for scope in sorted({state.sealed[author, epoch, s] for s in range(lo, hi + 1)
                             if (author, epoch, s) in state.sealed}):
            known = listed.get(scope)
            if known is not None and not known.get(peer, set()) & {"read", "sent"}:
                report.problems.append(f"scope {scope}: the ledger says its events went to {_name(state, peer)}, "
                                       f"but the scope line lists it neither as reader nor as holder sent to")


def _check_erased(state: _State, report: Report) -> None:
    """Each erased line against its erase request, when the file holds it: an erase event by the stated device,
    at the stated time, for the stated reason, naming the event or an entry or setting (whose events the
    file cannot tell: their content is gone). Whole exports of uncompacted stores hold every request."""
    selection = state.export.get("selection") or {}
    whole = not state.truncations and all(selection.get(k) is None for k in ("since_ms", "until_ms", "scopes"))
    for where, eid, marker in state.erased:
        request = state.requests.get(marker["by"])
        if request is None:
            if whole:
                report.problems.append(f"{where}: erased by {marker['by'][:16]}, an erase request the export "
                                       "does not hold")
            continue
        content = request["content"]
        problem = None
        if request["kind"] != "erase":
            problem = f"is a {request['kind']} event, not an erase request"
        elif (request["device"], request["time"]) != (marker["device"], marker["time"]):
            problem = "was made by another device or at another time than the erased field says"
        elif isinstance(content, dict) and "events" in content:
            if marker["reason"] is not None and content.get("reason") != marker["reason"]:
                problem = "gives another reason than the erased field says"
            elif eid not in content["events"] and not content.get("entry") and not content.get("setting"):
                problem = "does not name this event"
        if problem:
            report.problems.append(f"{where}: its erase request {marker['by'][:16]} {problem}")


def _name(state: _State, device: str) -> str:
    return f"{(state.devices.get(device) or {}).get('name', '?')} ({device[:16]})"


def _check_end(state: _State, report: Report) -> None:
    if state.end is None:
        report.problems.append("no end line: the export is cut short")
        return
    n, obj, digest = state.end
    events = sum(len(c) for c in state.events.values()) + sum(len(b) for b in state.branches.values())
    if obj.get("lines") != n - 1 or obj.get("events") != events:
        report.problems.append(f"line {n}: the end line's counts are not the file's (lines removed or added)")
    if obj.get("digest") != digest.hex():
        report.problems.append(
            f"line {n}: the digest of the lines before the end line does not match (the file was altered)"
        )
    try:
        signed = crypto.verify(bytes.fromhex(state.export["device"]), digest, bytes.fromhex(obj["signature"]))
    except (KeyError, ValueError, TypeError):
        signed = False
    if not signed:
        report.problems.append(f"line {n}: the exporting device's signature over the digest does not verify")
    if state.export.get("device") not in state.devices:
        report.problems.append("the exporting device is not a device of the roster")
