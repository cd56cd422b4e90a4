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
from agentlog.text import printable

TABLE_ROWS = 500
CELL_LIMIT = 2000               # characters of one cell (content, a name, a reason); the JSON Lines file holds all
SECTIONS = ("Summary by device", "Summary by scope", "Summary by kind", "Timeline", "Which devices hold what",
            "Roster history", "Forks", "Compaction boundaries", "Recent events")
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
           f"{'redacted' if sel['redact_content'] else 'shown'}. Digest <code>{summary.digest.hex()}</code>: check "
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
    out += _section(SECTIONS[5], ["time", "by", "kind", "about", "detail"],
                    [[r["time"], r["device"], r["kind"], names.get(r["content"].get("device"), "?"),
                      _detail(r["content"])] for r in by_type.get("roster", [])])
    out += _section(
        SECTIONS[6],
        ["device", "seq", "signed records"],
        [[names.get(f["author"], f["author"][:16]), f["seq"], len(f["records"])] for f in by_type.get("fork", [])],
    )
    out += _section(SECTIONS[7], ["boundary", "device", "seq", "id", "time", "covers (each device's seq)"],
                    [["base snapshot", names.get(b["author"], b["author"][:16]), b["seq"], b["id"][:16], b["time"],
                      _frontier((b["content"] or {}).get("frontier"), names)] for b in by_type.get("base", [])] +
                    [["truncated up to", names.get(t["author"], t["author"][:16]), t["seq"], t["id"][:16], "", ""]
                     for t in by_type.get("truncation", [])] +
                    [["snapshot", names.get(s["author"], s["author"][:16]), s["seq"], s["id"][:16], "",
                      _frontier(s["frontier"], names)] for s in by_type.get("snapshot", [])],
                    "The base snapshot is the signed state this device's views and roster start from; each "
                    "device's events up to its truncation point were dropped after every device had seen them.")
    out += _section(SECTIONS[8], ["time", "device", "seq", "kind", "scope", "content"],
                    [[e["time"], e["device"], e["seq"], e["kind"], e["scope"],
                      "[redacted]" if e["redacted"] else "[withheld]" if e["withheld"] else _detail(e["content"])]
                     for e in reversed(summary.recent)],
                    f"The last {len(summary.recent)} events of the export, newest first.")
    out.append("</body></html>")
    return "\n".join(out)


def _e(value) -> str:
    """`value` for the page: controls and bidi overrides shown as escapes (agentlog.text), cut, HTML-escaped."""
    return escape(printable(str(value), CELL_LIMIT), quote=True)


def _detail(content) -> str:
    if not isinstance(content, dict):
        return str(content)
    return ", ".join(f"{k}={v}" for k, v in content.items() if v not in (None, [], ""))


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
