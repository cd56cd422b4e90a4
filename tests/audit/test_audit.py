"""`agentlog audit export` and `audit verify`: an intact export verifies; any byte of an event changed,
an event removed, or its readable fields edited fails naming the event; subsets, redaction and a
log that starts after a compaction boundary verify; bad files fail in one line, without a traceback."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from agentlog.audit import format as fmt
from agentlog.audit.export import Selection, event_line, event_text, export, render_part
from agentlog.audit.html import render
from agentlog.audit.verify import verify_file
from agentlog.log import payloads
from agentlog.log.validate import Head
from agentlog.store import compaction, ledger
from agentlog.store.layout import event_key, head_value
from tests.helpers.family import Family, new_device, observe_days
from tests.helpers.sync import sync

SECRET = "Anna's birthday <script>alert(1)</script> & \u00e9\u4e2d"


@pytest.fixture
def history(laptop, phone):
    """Two devices, a mix of kinds and scopes, synced both ways, with ledger rows."""
    laptop.prefs.observe("ui.theme", "dark", {"daypart": "night"})
    laptop.memory.put(SECRET, type="fact", tags=["family"])
    laptop.append(payloads.Observation(setting="topic.x", value="1"), scope="topic:home")
    phone.append_many([payloads.Observation(setting="ui.font", value=f"v{i}") for i in range(6)])
    sync(laptop, phone)
    sync(phone, laptop)
    with laptop.raw_txn(write=True) as txn:
        ledger.record(txn, laptop.db("ledger.sent"), phone.device, [(laptop.device, 0, s) for s in (1, 2, 3)], 1_000)
    return laptop, phone


def _export(store, path, selection=None):
    with open(path, "wb") as f:
        return export(store, f, selection or Selection())


def _cli(*args, home=None):
    base = [sys.executable, "-m", "agentlog"] + (["--home", str(home)] if home else [])
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=60)


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1]


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _event_lines(lines):
    return [(i, json.loads(line)) for i, line in enumerate(lines) if line.startswith(b'{"type":"event"')]


def test_intact_export_verifies_from_the_command_line(tmp_path, history):
    laptop, phone = history
    out = tmp_path / "audit.jsonl"
    done = _cli("audit", "export", "--out", str(out), "--json", home=laptop.path.parent)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["events"] == laptop.count() and (tmp_path / "audit.html").exists()
    checked = _cli("audit", "verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{laptop.count()} events" in checked.stderr and "0 problems" in checked.stderr
    types = [json.loads(line)["type"] for line in _lines(out)]
    assert types[0] == "export" and types[-2:] == ["frontier", "end"]
    assert {"device", "roster", "event", "ledger"} <= set(types)
    memory = [e for _, e in _event_lines(_lines(out)) if e["kind"] == "memory.put"]
    assert memory[0]["content"]["content"] == SECRET and memory[0]["device"] == "laptop"


def test_any_byte_of_an_event_altered_fails_naming_it(tmp_path, history):
    laptop, _ = history
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    _export(laptop, out)
    lines = _lines(out)
    rng = random.Random(5)
    for index, event in rng.sample(_event_lines(lines), 4):
        line = lines[index]
        for pos in rng.sample(range(len(line)), 25):
            changed = bytearray(line)
            changed[pos] = (changed[pos] + rng.randrange(1, 255)) % 256
            _write(bad, lines[:index] + [bytes(changed)] + lines[index + 1:])
            report = verify_file(bad)
            assert not report.ok
            named = [p for p in report.problems if f"seq {event['seq']}" in p or f"line {index + 1}" in p]
            assert named, (pos, report.problems)


def test_readable_fields_edited_fail_naming_the_event(tmp_path, history):
    laptop, _ = history
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    _export(laptop, out)
    lines = _lines(out)
    index, event = next((i, e) for i, e in _event_lines(lines) if e["kind"] == "memory.put")
    for field, value in (("content", {**event["content"], "content": "something else"}), ("scope", "topic:x"),
                         ("time", "2001-01-01T00:00:00.000Z"), ("device", "phone"), ("kind", "observation")):
        edited = fmt.dumps({**event, field: value}).encode()
        _write(bad, lines[:index] + [edited] + lines[index + 1:])
        problems = verify_file(bad).problems
        assert any(f"seq {event['seq']}" in p and field in p for p in problems), (field, problems)


def test_an_event_removed_fails_naming_author_and_seq(tmp_path, history):
    laptop, phone = history
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    _export(laptop, out)
    lines = _lines(out)
    index, event = next((i, e) for i, e in _event_lines(lines) if e["author"] == phone.device.hex() and e["seq"] == 3)
    _write(bad, lines[:index] + lines[index + 1:])
    done = _cli("audit", "verify", str(bad))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert any(line.startswith(f"phone ({phone.device.hex()[:16]}) seq 3:") and "missing" in line
               for line in done.stdout.splitlines()), done.stdout


def test_a_subset_states_its_selection_and_verifies(tmp_path, history):
    laptop, phone = history
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    summary = _export(laptop, out, Selection(scopes=("user",), redact=True))
    report = verify_file(out)
    assert report.ok, report.problems
    events = _event_lines(_lines(out))
    assert summary.events == len(events) and {e["scope"] for _, e in events} == {"user"}
    assert SECRET not in out.read_text() and "family" not in out.read_text()
    assert all(e["content"] is None and e["payload"] is None and e["redacted"] for _, e in events
               if not e["kind"].startswith("device."))
    lines = _lines(out)
    index, event = events[len(events) // 2]
    _write(bad, lines[:index] + lines[index + 1:])
    assert any(f"seq {event['seq']}: stated in the frontier but missing" in p for p in verify_file(bad).problems)


def test_a_truncation_no_snapshot_covers_is_named(tmp_path, history):
    """Events dropped by hand (no compaction, so no base snapshot): the chain still links from the truncation
    point, but nothing signed vouches for the cut."""
    laptop, phone = history
    cut = laptop.heads()[phone.device].seq - 3
    cut_event = next(e for e in laptop.events(phone.device) if e.seq == cut)
    with laptop.raw_txn(write=True) as txn:
        for seq in range(1, cut + 1):
            txn.delete(event_key(phone.device, 0, seq), db=laptop.db("events"))
        txn.put(phone.device, head_value(Head(0, cut, cut_event.id)), db=laptop.db("truncated"))
    out = tmp_path / "a.jsonl"
    _export(laptop, out)
    kinds = [json.loads(line) for line in _lines(out)]
    assert any(k["type"] == "truncation" and k["seq"] == cut for k in kinds)
    chain = next(c for c in kinds[-2]["chains"] if c["author"] == phone.device.hex())
    assert chain["from"] == cut + 1 and chain["selected"][0][0] == cut + 1
    assert verify_file(out).problems == [f"line {next(i for i, k in enumerate(kinds, 1) if k['type'] == 'truncation')} "
                                         f"(truncation of phone {phone.device.hex()[:16]} seq {cut}): no verified base "
                                         f"snapshot covers it"]


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    """Two devices after real compaction (their roster events dropped too), then a day more of events; and
    the laptop's export of it."""
    f = Family(tmp_path_factory.mktemp("compacted"))
    try:
        observe_days(f, 5)
        assert compaction.compact(f.laptop, now_ms=f.now).dropped > 0
        observe_days(f, 1, per_day=6)
        out = f.tmp / "audit.jsonl"
        summary = _export(f.laptop, out)
        yield f, out, summary
    finally:
        f.close()


def test_a_compacted_store_exports_its_base_snapshot_and_verifies(compacted):
    f, out, summary = compacted
    report = verify_file(out)
    assert report.ok, report.problems
    lines = [json.loads(line) for line in _lines(out)]
    [base] = [k for k in lines if k["type"] == "base"]
    bundle = compaction.base_bundle(f.laptop)
    assert base["id"] == bundle.event.id.hex() and base["kind"] == "snapshot" and base["device"] == "laptop"
    assert fmt.unb64(base["states"]["roster"]) == bundle.states["roster"]
    assert base["states"]["pref"] is None and base["states"]["memory"] is None
    assert {v["name"] for v in base["content"]["views"]} == {"roster", "pref", "memory"}
    assert not any(k["type"] == "roster" for k in lines)      # compaction dropped every roster event
    cuts = {k["author"]: k["seq"] for k in lines if k["type"] == "truncation"}
    assert cuts == {a.hex(): h.seq for a, h in f.laptop.truncated().items()} and len(cuts) == 2
    for chain in lines[-2]["chains"]:
        assert chain["from"] == cuts[chain["author"]] + 1 == chain["selected"][0][0]
    page = render(summary)
    assert "base snapshot" in page and "truncated up to" in page
    names = {f.laptop.device.hex(): "laptop", f.phone.device.hex(): "phone"}
    covers = ", ".join(f"{names[p['author']]} {p['seq']}" for p in base["content"]["frontier"])
    assert f"<td>{base['time']}</td><td>{covers}</td>" in page and "phone" in covers and "laptop" in covers


def test_a_device_bootstrapped_from_a_snapshot_exports_what_verifies(tmp_path):
    """The hub never held the events before the laptop's snapshot: its truncation points are the snapshot's
    frontier itself, and its roster starts from the snapshot's roster plus its own enrolment."""
    f = Family(tmp_path)
    stores = [f]
    try:
        observe_days(f, 3)
        compaction.compact(f.laptop, now_ms=f.now)
        stores.append(new_device(f, "hub"))
        hub = stores[-1]
        compaction.bootstrap(hub, compaction.base_bundle(f.laptop))
        f.sync(f.laptop, hub)
        hub.append(payloads.Observation(setting="s1", value="a", weight_milli=1000))
        summary = _export(hub, tmp_path / "hub.jsonl")
        report = verify_file(tmp_path / "hub.jsonl")
        assert report.ok and report.events == summary.events == hub.count(), report.problems
        lines = [json.loads(line) for line in _lines(tmp_path / "hub.jsonl")]
        base = next(k for k in lines if k["type"] == "base")
        assert {k["author"]: k["seq"] for k in lines if k["type"] == "truncation"} == \
            {p["author"]: p["seq"] for p in base["content"]["frontier"]}
        assert {k["name"] for k in lines if k["type"] == "device"} == {"laptop", "phone", "hub"}
    finally:
        for store in reversed(stores):
            store.close()


def _base_edited(lines, edit):
    index = next(i for i, line in enumerate(lines) if line.startswith(b'{"type":"base"'))
    return lines[:index] + [fmt.dumps(edit(json.loads(lines[index]))).encode()] + lines[index + 1:], index + 1


def _flip_hex(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def _flip_state(obj):
    raw = bytearray(fmt.unb64(obj["states"]["roster"]))
    raw[len(raw) // 2] ^= 0x01
    return {**obj, "states": {**obj["states"], "roster": fmt.b64(bytes(raw))}}


@pytest.mark.parametrize("case, expect", [
    ("roster state", "the roster view's state does not match the snapshot's signed digest"),
    ("signature", "signature does not verify"),
    ("state left out", "the base snapshot carries no roster state"),
])
def test_a_tampered_base_snapshot_fails_naming_it(tmp_path, compacted, case, expect):
    _, out, _ = compacted
    edit = {"roster state": _flip_state,
            "signature": lambda obj: {**obj, "signature": _flip_hex(obj["signature"])},
            "state left out": lambda obj: {**obj, "states": {**obj["states"], "roster": None}}}[case]
    lines, n = _base_edited(_lines(out), edit)
    bad = tmp_path / "bad.jsonl"
    _write(bad, lines)
    problems = verify_file(bad).problems
    assert any(p.startswith(f"line {n} (base snapshot by laptop ") and expect in p for p in problems), problems
    assert any("no verified base snapshot covers it" in p for p in problems), problems


def test_a_truncation_past_the_snapshot_or_an_event_after_it_removed_is_named(tmp_path, compacted):
    f, out, _ = compacted
    lines, bad = _lines(out), tmp_path / "bad.jsonl"
    phone = f.phone.device.hex()
    cut = f.laptop.truncated()[f.phone.device].seq
    index = next(i for i, e in _event_lines(lines) if e["author"] == phone and e["seq"] == cut + 1)
    _write(bad, lines[:index] + lines[index + 1:])
    problems = verify_file(bad).problems
    assert any(
        p.startswith(f"phone ({phone[:16]}) seq {cut + 1}: stated in the frontier but missing") for p in problems
    )
    index = next(
        i for i, line in enumerate(lines) if line.startswith(b'{"type":"truncation"') and phone.encode() in line
    )
    moved = fmt.dumps({**json.loads(lines[index]), "seq": 10**6}).encode()
    _write(bad, lines[:index] + [moved] + lines[index + 1:])
    problems = verify_file(bad).problems
    assert any(p.startswith(f"line {index + 1} (truncation of phone {phone[:16]} seq {10**6}): truncated past the base "
                            f"snapshot's frontier") for p in problems), problems


def test_the_fast_line_is_the_canonical_one(history):
    """The export's hot path (render_part: headers read as stored, cached content) writes exactly the
    canonical line of each event, withheld and redacted ones included."""
    laptop, phone = history
    withheld = event_key(phone.device, 0, 2)
    with laptop.raw_txn(write=True) as txn:
        assert txn.delete(withheld, db=laptop.db("payloads"))
    names = {laptop.device: "na\u00efve \"name\"", phone.device: "phone"}
    events = list(laptop.events())
    assert sum(e.payload is None for e in events) == 1
    for redact in (False, True):
        expected = [fmt.dumps(event_line(e, names[e.header.author], redact)) for e in events]
        for _ in range(2):                                              # the second time from the content cache
            part = render_part(laptop, None, None, names, Selection(redact=redact).to_json(), redact)
            assert part.text.decode("ascii").splitlines() == expected
        assert [event_text(e, names[e.header.author], redact) for e in events] == expected
    cut = event_key(phone.device, 0, 3)
    head, tail = (
        render_part(laptop, lo, hi, names, Selection().to_json(), False) for lo, hi in ((None, cut), (cut, None))
    )
    assert (head.text + tail.text).decode("ascii").splitlines() == [
        fmt.dumps(event_line(e, names[e.header.author], False)) for e in events]
    assert head.rows + tail.rows == len(events) and tail.chains[phone.device, 0][0] == 3


def test_bad_files_fail_in_one_line(tmp_path):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xffnot json\n{\"type\": 1}\n")
    done = _cli("audit", "verify", str(garbage))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "not a readable export line" in done.stdout
    missing = _cli("audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read" in missing.stderr


@pytest.mark.parametrize("kind, edit", [
    ("truncation", lambda obj: {**obj, "id": "zz" + obj["id"][2:]}),
    ("truncation", lambda obj: {**obj, "seq": str(obj["seq"])}),
    ("frontier", lambda obj: {**obj, "chains": [{k: v for k, v in c.items() if k != "count"} for c in obj["chains"]]}),
    ("frontier", lambda obj: {**obj, "chains": [{**c, "head_id": c["head_id"].upper()} for c in obj["chains"]]}),
])
def test_a_malformed_compaction_or_frontier_line_is_named_not_a_traceback(tmp_path, compacted, kind, edit):
    _, out, _ = compacted
    lines, bad = _lines(out), tmp_path / "bad.jsonl"
    index = next(i for i, line in enumerate(lines) if line.startswith(f'{{"type":"{kind}"'.encode()))
    _write(bad, lines[:index] + [fmt.dumps(edit(json.loads(lines[index]))).encode()] + lines[index + 1:])
    problems = verify_file(bad).problems
    assert any(p.startswith(f"line {index + 1} ({kind}): malformed {kind} line") for p in problems), problems
