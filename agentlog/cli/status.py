"""`agentlog status`: this device, its group, what it holds, and its peers (agentlog.documents.status_doc)."""

from __future__ import annotations

from agentlog.cli.common import home_path, iso, open_home, print_json, shown


def register(sub, common) -> None:
    c = sub.add_parser("status", help="this device, its group, what it holds, and its peers")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    from agentlog.documents import status_doc

    with open_home(args) as store:
        doc = status_doc(store, home_path(args))
    if args.json:
        print_json(doc)
        return 0
    doc = shown(doc)
    print(f"device {doc['name']} ({doc['device'][:16]}) in group {(doc['group'] or 'none (not joined yet)')[:16]}")
    print(f"{doc['events']} events")
    if doc["payloads_missing"]:
        print(f"{doc['payloads_missing']} events held without their payload (a peer withheld them): "
              "views lack them until a peer supplies them")
    if doc["carry"] == "readable":
        print(f"carries only what it reads (serve --carry readable): {doc['payloads_uncarried']} sealed events of "
              "scopes it does not read held as headers only")
    if doc["signatures_damaged"]:
        n = doc["signatures_damaged"]
        print(f"{n} event{'' if n == 1 else 's'} with damaged signature bytes (a peer garbled them; the author's "
              "later signed event proves the content): asked of peers again")
    for line in _erasure_lines(doc["erasure"]):
        print(line)
    if doc["compaction"]["snapshot"]:
        dropped = ", ".join(f"{name} to seq {seq}" for name, seq in doc["compaction"]["truncated"].items())
        print(f"compacted: snapshot {doc['compaction']['snapshot'][:16]}; dropped {dropped or 'nothing yet'}")
    for name, h in doc["heads"].items():
        print(f"  {name:<16} seq {h['seq']}")
    for f in doc["forks"]:
        healed = f"healed by epoch {f['healed']['epoch']} ({f['healed']['event'][:16]})" if f["healed"] else \
            "not healed yet (its device continues in a new epoch once it learns of it)"
        heads = ", ".join(f"seq {seq} {eid[:16]}" for seq, eid in f["heads"])
        print(f"  fork: {f['name']} ({f['author'][:16]}) epoch {f['epoch']} seq {f['seq']} at {iso(f['time_ms'])}; "
              f"branch heads {heads or 'unknown'}; {healed}")
    for c in doc["copied_keys"]:
        print(f"  {c['name']} ({c['author'][:16]}) forked more than once: two devices may be writing with one "
              "copied key; revoke one (agentlog devices revoke) and enrol it anew")
    for name, v in doc["views"].items():
        print(f"view {name} v{v['version']} digest {v['digest'][:16]}")
    for sc in doc["scopes"]:
        readers = ", ".join(r["name"] or r["id"][:16] for r in sc["readers"]) or "none"
        held = f"; {sc['unread']} sealed events held unread" if sc["unread"] else ""
        held += f"; {sc['uncarried']} held as headers only" if sc["uncarried"] else ""
        print(f"scope {sc['scope']} epoch {sc['epoch']} {'readable' if sc['can_read'] else 'not readable'} here; "
              f"readers: {readers}{held}")
        holders = ", ".join(f"{h['name'] or h['id'][:16]} ({', '.join(h['because'])})"
                            for h in doc["scope_holders"].get(sc["scope"], []))
        print(f"  held as ciphertext by: {holders or 'no other device, as far as this device knows'}")
    for p in doc["peers"]:
        seen = _ago(p["last_seen_ms"]) if p["last_seen_ms"] else "never"
        lag = ", ".join(f"{who} lack {p[key]}" for who, key in (("we", "we_lack"), ("they", "they_lack"))
                        if p[key] is not None) if p["state"] != "never" else ""
        print(f"peer {p['name'] or '?':<12} {p['address'] or '-':<22} {p['state']:<11} seen {seen:<12} {lag}"
              + (f" ({p['error']})" if p["error"] else "") + (" [found on the network]" if p["discovered"] else ""))
    return 0


def _erasure_lines(e: dict) -> list[str]:
    """What erase requests did here: events erased, events named but not held yet, erased events a base snapshot
    covers, and the last scrub of the disk (docs/erasure.md)."""
    scrub = e.get("scrub") or {}
    if not (e["requests"] or e["erased"] or e["pending"] or scrub):
        return []
    n = e["requests"]
    lines = [f"erased: {e['erased']} event{'' if e['erased'] == 1 else 's'} held header-only, by {n} erase "
             f"request{'' if n == 1 else 's'}"]
    if e["pending"]:
        lines.append(f"erase pending: {e['pending']} named event{'' if e['pending'] == 1 else 's'} not held here "
                     "yet (erased as they arrive, never stored)")
    if e.get("covered"):
        lines.append(f"erased but covered by the base snapshot: {e['covered']} event{'' if e['covered'] == 1 else 's'}"
                     ", whose content may remain in the snapshot's view states")
    if scrub.get("pending"):
        found, pinned = len(scrub.get("found") or ()), scrub.get("pinned", 0)
        lines.append(f"scrub pending: erased bytes still found {found} time{'' if found == 1 else 's'} under the home"
                     + (f", {pinned} reader{'' if pinned == 1 else 's'} older than the erasure still open" if pinned
                        else "") + "; `agentlog serve` scrubs again")
    elif scrub:
        lines.append(f"scrub: done, {scrub.get('pages', 0)} free pages overwritten in {scrub.get('rounds', 0)} "
                     f"round{'' if scrub.get('rounds') == 1 else 's'}; no erased bytes found under the home")
    return lines


def _ago(ms: int) -> str:
    import time

    s = max(0.0, time.time() - ms / 1000)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.0f} h ago"
