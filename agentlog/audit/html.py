"""The HTML report of an audit export: one self-contained page for people (docs/audit.md).

Inline CSS, no script, no fonts, images or links to anything outside the page (and a CSP that
forbids loading any), every piece of content escaped (controls and bidi overrides too) and cut to
CELL_LIMIT characters. Bounded whatever the export's size: counts by device, scope, kind and day,
capped tables; the JSON Lines file beside it holds every event.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from agentlog.audit.export import Summary
from agentlog.store.exposure import NOT_HELD
from agentlog.text import printable

TABLE_ROWS = 500
CELL_LIMIT = 2000               # characters of one cell (content, a name, a reason); the JSON Lines file holds all
SECTIONS = ("Summary by device", "Summary by scope", "Summary by kind", "Timeline", "Which devices hold what",
            "Who may read each scope", "What was sent to each device", "Roster history", "Forks",
            "Compaction boundaries", "Erased events", "Recent events")
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.5em}h2{font-size:1.15em;
margin-top:1.6em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid
#ddd;padding:2px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}.bar{display:
inline-block;height:10px;background:#4a7}.muted{color:#777}code{font-size:12px}"""


def render(summary: Summary) -> str:
    """The whole page."""
    by_type: dict[str, list] = {}
    for line in summary.sections:
        by_type.setdefault(line["type"], []).append(line)
    head = by_type["export"][0]
    names = {d["device"]: d["name"] for d in by_type.get("device", [])}
    sel = head["selection"]
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
           f"<title>agentlog audit: {_e(head['device_name'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>agentlog audit export of {_e(head['device_name'])}</h1>",
           f"<p>Created {_e(head['created'])} by device <code>{_e(head['device'][:16])}</code> of group "
           f"<code>{_e(head['group'][:16])}</code>. {summary.events:,} events in {summary.lines:,} lines. Selection: "
           f"since {_e(sel['since_ms'] or 'the start')}, until {_e(sel['until_ms'] or 'now')}, scopes "
           f"{_e(', '.join(sel['scopes']) if sel['scopes'] else 'all')}, content "
           f"{'redacted' if sel['redact_content'] else 'shown'}. {_erased_note(summary.erased)}"
           f"Digest <code>{summary.digest.hex()}</code>: check "
           f"the file with <code>agentlog audit verify</code> or by hand (docs/audit.md).</p>"]
    c = summary.counts
    out += _section(SECTIONS[0], ["device", "events"], _totals(c, lambda k: names.get(k[0], k[0][:16])))
    out += _section(SECTIONS[1], ["scope", "events"], _totals(c, lambda k: k[1]))
    out += _section(SECTIONS[2], ["kind", "events"], _totals(c, lambda k: k[2]))
    out += _timeline(c, names)
    out += _section(SECTIONS[4], ["direction", "device", "events of", "seqs", "first", "last"],
                    [[r["direction"], r["peer_name"] or r["peer"][:16], r["author_name"] or r["author"][:16],
                      f"{r['lo']}..{r['hi']}", r["first"], r["last"]] for r in by_type.get("ledger", [])],
                    "What left this device (sent) to which device, and what arrived from which (received).")
    out += _matrix(by_type.get("scope", []), by_type.get("device", []), head)
    out += _section(SECTIONS[6], ["device", "scope", "kind", "events"],
                    [[names.get(peer, peer[:16]), "(no longer held here)" if scope == NOT_HELD else scope,
                      "" if kind == NOT_HELD else kind, n]
                     for (peer, scope, kind), n in sorted(summary.sent.items(),
                                                          key=lambda i: (names.get(i[0][0], i[0][0]), i[0][1:]))],
                    "Per device, the events this device's ledger says it sent there, by scope and kind (all "
                    "of the ledger, whatever the selection). Events sent and since compacted away are counted "
                    "without their scope.")
    out += _section(SECTIONS[7], ["time", "by", "kind", "about", "detail"],
                    [[r["time"], r["device"], r["kind"], names.get(r["content"].get("device"), "?"),
                      _detail(r["content"])] for r in by_type.get("roster", [])])
    out += _section(
        SECTIONS[8],
        ["device", "seq", "signed records"],
        [[names.get(f["author"], f["author"][:16]), f["seq"], len(f["records"])] for f in by_type.get("fork", [])],
    )
    out += _section(SECTIONS[9], ["boundary", "device", "seq", "id", "time", "covers (each device's seq)"],
                    [["base snapshot", names.get(b["author"], b["author"][:16]), b["seq"], b["id"][:16], b["time"],
                      _frontier((b["content"] or {}).get("frontier"), names)] for b in by_type.get("base", [])] +
                    [["truncated up to", names.get(t["author"], t["author"][:16]), t["seq"], t["id"][:16], "", ""]
                     for t in by_type.get("truncation", [])] +
                    [["snapshot", names.get(s["author"], s["author"][:16]), s["seq"], s["id"][:16], "",
                      _frontier(s["frontier"], names)] for s in by_type.get("snapshot", [])],
                    "The base snapshot is the signed state this device's views and roster start from; each "
                    "device's events up to its truncation point were dropped after every device had seen them.")
    out += _section(SECTIONS[10], ["time", "device", "seq", "kind", "scope", "erased by", "reason"],
                    [[e["time"], e["device"], e["seq"], e["kind"], e["scope"],
                      f"request {e['erased']['by'][:16]} of {e['erased']['device']}, {e['erased']['time']}",
                      e["erased"]["reason"] or ""] for e in summary.erased_rows],
                    "Events held header-only because an erase request erased them (docs/erasure.md): the signed "
                    "header stays, the content is gone. Each request is an event of kind erase."
                    + (f" The first {len(summary.erased_rows):,} of {summary.erased:,}; the JSON Lines file lists "
                       "every one." if summary.erased > len(summary.erased_rows) else ""))
    out += _section(SECTIONS[11], ["time", "device", "seq", "kind", "scope", "content"],
                    [[e["time"], e["device"], e["seq"], e["kind"], e["scope"],
                      _erased(e["erased"]) if e.get("erased") else "[redacted]" if e["redacted"] else
                      "[withheld]" if e["withheld"] else _detail(e["content"])]
                     for e in reversed(summary.recent)],
                    f"The last {len(summary.recent)} events of the export, newest first.")
    out.append("</body></html>")
    return "\n".join(out)


def _erased_note(n: int) -> str:
    if not n:
        return ""
    return (f"{n:,} event{' was' if n == 1 else 's were'} erased: {'its line keeps' if n == 1 else 'their lines keep'} "
            "the signed header and say which erase request erased it, never the content. ")


def _erased(marker: dict) -> str:
    """An erased event's content cell: [erased], by which request and device, when and why."""
    reason = f": {marker['reason']}" if marker.get("reason") else ""
    return f"[erased] by request {str(marker.get('by'))[:16]} of {marker.get('device')}, {marker.get('time')}{reason}"


def _e(value) -> str:
    """`value` for the page: controls and bidi overrides shown as escapes (agentlog.text), cut, HTML-escaped."""
    return escape(printable(str(value), CELL_LIMIT), quote=True)


def _detail(content) -> str:
    """A payload's content as people read it: `name=value` pairs, internal units as their values."""
    if not isinstance(content, dict):
        return _value(content)
    if content == {"sealed": True}:
        return "[sealed: not readable in the export]"
    return ", ".join(f"{_READABLE.get(k, (k,))[0]}={_field(k, v)}" for k, v in content.items()
                     if v not in (None, [], ""))


def _field(name: str, value) -> str:
    unit = _READABLE.get(name)
    if unit is not None and type(value) is int:
        return unit[1](value)
    return _value(value)


def _value(value) -> str:
    """Lists as comma-separated text, a context's [key, value] pairs as key: value, nested objects in braces."""
    if isinstance(value, dict):
        return "{" + _detail(value) + "}"
    if isinstance(value, list):
        if value and all(isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in value):
            return ", ".join(f"{k}: {v}" for k, v in value)
        return ", ".join(_value(v) for v in value)
    return str(value)


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"


# payload fields kept in internal units (docs/format.md) -> the name and value a person reads
_READABLE = {"weight_milli": ("weight", lambda v: _number(v / 1000)),
             "confidence_bp": ("confidence", lambda v: f"{_number(v / 100).removesuffix('.0')} %")}


def _matrix(scopes: list, devices: list, head: dict) -> list[str]:
    """Devices by sealed scope: may read, held keys until an epoch, holds ciphertext (and how this device knows),
    or holds nothing as far as this device knows."""
    out = [f"<h2>{_e(SECTIONS[5])}</h2>",
           f"<p class='muted'>{_e(_MATRIX_NOTE.format(name=head['device_name']))}</p>"]
    if not scopes:
        return out + ["<p class='muted'>No sealed scopes: every device of the group may read every event.</p>"]
    rows = sorted(devices, key=lambda d: d["name"])
    out.append("<table><tr><th>device</th>" + "".join(f"<th>{_e(s['scope'])}</th>" for s in scopes) + "</tr>")
    for d in rows[:TABLE_ROWS]:
        cells = [_cell(s, d["device"]) for s in scopes]
        label = d["name"] + (" (revoked)" if d["revoked_after_seq"] is not None else "")
        out.append(f"<tr><td>{_e(label)}</td>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    epochs = ", ".join(f"{s['scope']}: epoch {s['epoch']}" for s in scopes)
    return out + [f"<p class='muted'>Current key epochs: {_e(epochs)}.</p>"]


_MATRIX_NOTE = ("Scope user is readable by every device. For each sealed scope: the devices that may read it; "
                "former readers, who keep the keys they were given; the devices {name} knows to hold its events "
                "as ciphertext, and how it knows (authored, sent by this device, received from it, stored here); "
                "the rest hold nothing as far as {name} knows: a peer may have passed events on to a device this "
                "device never talked to.")


def _cell(scope: dict, device: str) -> str:
    if any(r["device"] == device for r in scope["readers"]):
        return "may read"
    held = next((h for h in scope["holders"] if h["device"] == device), None)
    former = next((f for f in scope["former_readers"] if f["device"] == device), None)
    text = f"read until epoch {former['last_epoch']}" if former else ""
    if held:
        text += ("; " if text else "") + f"holds ciphertext ({', '.join(held['because'])})"
    return text or "holds nothing as far as this device knows"


def _frontier(points, names: dict) -> str:
    """A snapshot's frontier as 'laptop 120, phone 96'."""
    if not isinstance(points, list):
        return "?"
    return ", ".join(f"{names.get(p.get('author'), str(p.get('author'))[:16])} {p.get('seq')}" for p in points)


def _totals(counts: Counter, key) -> list[list]:
    totals: Counter = Counter()
    for k, n in counts.items():
        totals[key(k)] += n
    return [[name, n] for name, n in totals.most_common()]


def _section(title: str, columns: list[str], rows: list[list], note: str = "") -> list[str]:
    out = [f"<h2>{_e(title)}</h2>"] + ([f"<p class='muted'>{_e(note)}</p>"] if note else [])
    if not rows:
        return out + ["<p class='muted'>None.</p>"]
    out.append("<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>")
    for row in rows[:TABLE_ROWS]:
        out.append("<tr>" + "".join(f"<td class='n'>{v:,}</td>" if isinstance(v, int) else f"<td>{_e(v)}</td>"
                                    for v in row) + "</tr>")
    out.append("</table>")
    if len(rows) > TABLE_ROWS:
        out.append(f"<p class='muted'>{len(rows) - TABLE_ROWS:,} more rows in the JSON Lines file.</p>")
    return out


def _timeline(counts: Counter, names: dict) -> list[str]:
    """Events per day (UTC) with each device's share, newest first, as bars."""
    days: dict[str, Counter] = {}
    for (author, _, _, day), n in counts.items():
        days.setdefault(day, Counter())[names.get(author, author[:16])] += n
    out = [f"<h2>{SECTIONS[3]}</h2>"]
    if not days:
        return out + ["<p class='muted'>None.</p>"]
    top = max(sum(d.values()) for d in days.values())
    out.append("<table><tr><th>day (UTC)</th><th>events</th><th></th><th>by device</th></tr>")
    for day, d in sorted(days.items(), reverse=True)[:TABLE_ROWS]:
        total = sum(d.values())
        out.append(f"<tr><td>{_e(day)}</td><td class='n'>{total:,}</td><td><span class='bar' style='width:"
                   f"{max(1, 200 * total // top)}px'></span></td><td>"
                   f"{_e(', '.join(f'{name}: {n:,}' for name, n in d.most_common()))}</td></tr>")
    out.append("</table>")
    if len(days) > TABLE_ROWS:
        out.append(f"<p class='muted'>{len(days) - TABLE_ROWS:,} earlier days in the JSON Lines file.</p>")
    return out
