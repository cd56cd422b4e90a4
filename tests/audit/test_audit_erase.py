"""The audit export of a home that carried out erase requests: the request is an ordinary event line, each
erased event a header-only line saying which request erased it; no erased content anywhere in the export or
its HTML; `audit verify` passes it and fails an erased line that carries content or lies about its request."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentlog.audit import format as fmt
from agentlog.audit.export import Selection, erased_marker, event_line, export, render_part
from agentlog.audit.html import render
from agentlog.audit.verify import verify_file
from tests.helpers.sync import sync

CANARY = "canary-91c4 the diagnosis"


@pytest.fixture
def erased(laptop, phone):
    """The laptop puts a memory and observes a setting, both holding the canary; the phone holds them; the laptop
    forgets the memory and the phone erases the observations of the setting; both sync both ways."""
    entry = laptop.memory.put(CANARY, type="fact", tags=["health"])
    laptop.memory.update(entry, content=CANARY + " (confirmed)")
    laptop.prefs.observe("clinic.name", CANARY)
    laptop.prefs.observe("ui.theme", "dark")
    sync(laptop, phone)
    memory_request = laptop.memory.forget(entry, "the user asked")
    _, [pref_request] = phone.prefs.forget("clinic.name", erase=True, reason="no longer relevant")
    sync(laptop, phone)
    sync(phone, laptop)
    return laptop, phone, memory_request, pref_request


def _export(store, path, selection=None):
    with open(path, "wb") as f:
        return export(store, f, selection or Selection())


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1]


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _events(lines):
    return [(i, json.loads(line)) for i, line in enumerate(lines) if line.startswith(b'{"type":"event"')]


def test_an_erased_home_exports_header_only_lines_that_verify(tmp_path, erased):
    laptop, phone, memory_request, pref_request = erased
    for store in (laptop, phone):
        out = tmp_path / f"{store.name}.jsonl"
        done = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(store.path.parent), "audit", "export",
                               "--out", str(out)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        html = out.with_suffix(".html").read_text()
        assert CANARY not in out.read_text() and CANARY not in html
        assert "[erased] by request" in html and "3 events were erased" in html
        checked = subprocess.run([sys.executable, "-m", "agentlog", "audit", "verify", str(out)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0 and "0 problems" in checked.stderr, checked.stdout
        events = dict((e["id"], e) for _, e in _events(_lines(out)))
        gone = {eid: e for eid, e in events.items() if "erased" in e}
        assert sorted(e["kind"] for e in gone.values()) == ["memory.put", "memory.update", "observation"]
        for e in gone.values():
            assert (e["content"], e["payload"], e["withheld"], e["redacted"]) == (None, None, False, False)
            request = events[e["erased"]["by"]]
            assert request["kind"] == "erase" and e["erased"] == {
                "by": request["id"], "device": request["device"], "time": request["time"],
                "reason": request["content"]["reason"]}
        assert {e["erased"]["by"] for e in gone.values()} == {memory_request.hex(), pref_request.hex()}
        assert events[pref_request.hex()]["device"] == "phone"
        assert events[memory_request.hex()]["content"]["entry"] != ""


def test_the_fast_erased_line_is_the_canonical_one(erased):
    laptop, phone, _, _ = erased
    names = {laptop.device: "laptop", phone.device: "phone"}
    for redact in (False, True):
        expected = []
        for e in laptop.events():
            gone = laptop.erased(e.id)
            marker = erased_marker(laptop, e.id, names, redact) if gone else None
            expected.append(fmt.dumps(event_line(e, names[e.header.author], redact, marker)))
        part = render_part(laptop, None, None, names, Selection(redact=redact).to_json(), redact)
        assert part.text.decode("ascii").splitlines() == expected and part.erased == 3


def test_a_redacted_export_of_an_erased_home_verifies(tmp_path, erased):
    laptop, _, _, _ = erased
    out = tmp_path / "a.jsonl"
    summary = _export(laptop, out, Selection(redact=True))
    assert verify_file(out).ok and summary.erased == 3
    assert all(e["erased"]["reason"] is None for _, e in _events(_lines(out)) if "erased" in e)
    assert "no longer relevant" not in out.read_text()


def _tampered(tmp_path, erased, edit):
    """The laptop's export with one erased line edited (canonically), and verify's problems naming that line."""
    laptop, _, _, _ = erased
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    _export(laptop, out)
    lines = _lines(out)
    index, event = next((i, e) for i, e in _events(lines) if "erased" in e and e["kind"] == "memory.put")
    _write(bad, lines[:index] + [fmt.dumps(edit(event, lines)).encode()] + lines[index + 1:])
    problems = verify_file(bad).problems
    return [p for p in problems if p.startswith(f"line {index + 1} ")], problems


def _erased_line(lines, kind):
    return next(e for _, e in _events(lines) if e["kind"] == kind and "erased" in e)


@pytest.mark.parametrize("edit, words", [
    (lambda e, lines: {**e, "content": {"content": CANARY}}, "marked erased but carries a payload or content"),
    (lambda e, lines: {**e, "payload": fmt.b64(CANARY.encode())}, "marked erased but carries a payload or content"),
    (lambda e, lines: {**e, "withheld": True}, "marked erased and also withheld or redacted"),
    (lambda e, lines: {**e, "erased": {**e["erased"], "reason": "made up"}}, "gives another reason"),
    (lambda e, lines: {**e, "erased": {**e["erased"], "device": "phone"}}, "another device or at another time"),
    (lambda e, lines: {**e, "erased": {**e["erased"], "by": _erased_line(lines, "memory.update")["id"]}},
     "is a memory.update event, not an erase request"),
    (lambda e, lines: {**e, "erased": {**e["erased"], "by": "ab" * 32}}, "an erase request the export does not hold"),
    (lambda e, lines: {**e, "erased": {"by": e["erased"]["by"]}}, "malformed event line"),
])
def test_verify_fails_a_tampered_erased_line_naming_it(tmp_path, erased, edit, words):
    named, problems = _tampered(tmp_path, erased, edit)
    assert any(words in p for p in named), problems


def test_verify_fails_a_line_that_claims_an_unerasable_event_erased(tmp_path, erased):
    laptop, _, memory_request, _ = erased
    out, bad = tmp_path / "a.jsonl", tmp_path / "bad.jsonl"
    _export(laptop, out)
    lines = _lines(out)
    index, event = next((i, e) for i, e in _events(lines) if e["kind"] == "device.enroll")
    marker = next(e["erased"] for _, e in _events(lines) if e.get("erased", {}).get("by") == memory_request.hex())
    claimed = {**event, "content": None, "payload": None, "erased": marker}
    _write(bad, lines[:index] + [fmt.dumps(claimed).encode()] + lines[index + 1:])
    problems = verify_file(bad).problems
    assert any(p.startswith(f"line {index + 1} ") and "a device.enroll event line is never erased" in p
               for p in problems), problems


def test_the_html_marks_erased_events_and_lists_them(erased, tmp_path):
    laptop, _, memory_request, pref_request = erased
    summary = _export(laptop, tmp_path / "a.jsonl")
    page = render(summary)
    assert page.count("[erased] by request") == 3 and CANARY not in page
    listed = page.split("<h2>Erased events</h2>")[1].split("<h2>")[0]
    assert listed.count(f"request {memory_request.hex()[:16]} of laptop") == 2
    assert listed.count(f"request {pref_request.hex()[:16]} of phone") == 1
    assert "the user asked" in listed and "no longer relevant" in listed and "memory.update" in listed
