"""Where a sealed scope went, for a reviewer: the audit export's scope lines, the HTML report's device-by-scope
matrix and per-device sent counts, readable units, and `status`'s holders. Three real stores: laptop
(founder), phone, speaker; `health` read by laptop and phone; the phone's events reach the laptop only
through the speaker, with the ledger recording both hops."""

from __future__ import annotations

import json
import re
import time

import pytest

from agentlog.audit.export import Selection, export
from agentlog.audit.html import render
from agentlog.audit.verify import verify_file
from agentlog.documents import status_doc
from agentlog.store import devices
from agentlog.store import home as agentlog_home
from agentlog.store.ledger import Ledger
from agentlog.store.store import Store
from tests.helpers.cli import run
from tests.helpers.sync import sync


def relay(src: Store, dst: Store) -> None:
    """What replication does, in process: `dst` stores what it lacks of `src`'s log, and both ledgers say so."""
    events = list(src.events_after(dst.frontier()))
    if not events:
        return
    Ledger(src).record_sent(dst.device, [(time.time_ns() // 1_000_000, [e.record for e in events])])
    dst.ingest([(e.record, e.payload) for e in events], source=src.device)


class Home:
    """laptop, phone, speaker: health read by laptop and phone; the phone writes health, which reaches the
    laptop only through the speaker (phone -> speaker -> laptop)."""

    def __init__(self, tmp):
        self.laptop = self._device(tmp, "laptop")
        self.laptop.create_group("laptop")
        self.phone = self._join(tmp, "phone")
        self.speaker = self._join(tmp, "speaker")
        self.laptop.scopes.create("health")
        self.laptop.scopes.grant("health", ["phone"])
        self.laptop.prefs.observe("ui.theme", "dark", {"daypart": "night"}, weight=1.0)
        self.laptop.prefs.decide("ui.font", "large", confidence=0.7)
        self.laptop.memory.put("likes jazz", tags=["music", "evening"], confidence=0.85)
        relay(self.laptop, self.speaker)
        relay(self.speaker, self.phone)
        self.phone.memory.put("blood pressure 120/80", tags=["bp", "doctor"], confidence=0.7, scope="health")
        self.phone.prefs.observe("diet", "vegetarian", scope="health")
        self.phone.prefs.decide("dose", "low", confidence=0.7, scope="health")
        relay(self.phone, self.speaker)
        relay(self.speaker, self.laptop)

    @staticmethod
    def _device(tmp, name: str) -> Store:
        return agentlog_home.create(tmp / name, name)

    def _join(self, tmp, name: str) -> Store:
        store = self._device(tmp, name)
        devices.join(store, devices.enroll(self.laptop, store.device, name))
        sync(self.laptop, store)
        return store

    def close(self):
        for s in (self.laptop, self.phone, self.speaker):
            s.close()


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()


def _export(store, path, selection=None):
    with open(path, "wb") as f:
        summary = export(store, f, selection or Selection())
    return summary, [json.loads(line) for line in path.read_text().splitlines()]


def _by_name(entries):
    return {e["name"]: e for e in entries}


def test_scope_lines_name_readers_and_the_devices_known_to_hold_ciphertext(tmp_path, home):
    _, lines = _export(home.laptop, tmp_path / "laptop.jsonl")
    [health] = [line for line in lines if line["type"] == "scope"]
    assert [line["type"] for line in lines[-3:]] == ["scope", "frontier", "end"]
    assert health["scope"] == "health" and health["epoch"] == 1 and health["former_readers"] == []
    assert sorted(_by_name(health["readers"])) == ["laptop", "phone"]
    assert _by_name(health["holders"]) == {"speaker": {"device": home.speaker.device.hex(), "name": "speaker",
                                                      "because": ["received"]}}
    assert verify_file(tmp_path / "laptop.jsonl").ok

    _, lines = _export(home.speaker, tmp_path / "speaker.jsonl")      # the relay: stored here, sent on, received
    [health] = [line for line in lines if line["type"] == "scope"]
    assert _by_name(health["holders"])["speaker"]["because"] == ["stored here"]
    assert list(_by_name(health["holders"])) == ["speaker"]
    assert verify_file(tmp_path / "speaker.jsonl").ok

    _, lines = _export(home.phone, tmp_path / "phone.jsonl")          # the phone wrote them and sent them
    [health] = [line for line in lines if line["type"] == "scope"]
    assert _by_name(health["holders"])["speaker"]["because"] == ["sent"]


def test_a_device_carrying_headers_only_is_no_holder_of_the_scope(tmp_path, home):
    """The speaker set to carry only what it reads holds health's headers, no payload: neither its export nor its
    status names it among the scope's holders, and its exported health events are withheld (no payload)."""
    assert home.speaker.set_carry("readable")["dropped"] == 3
    _, lines = _export(home.speaker, tmp_path / "speaker.jsonl")
    [health] = [line for line in lines if line["type"] == "scope"]
    assert "speaker" not in _by_name(health["holders"])
    sealed = [line for line in lines if line["type"] == "event" and line["scope"] == "health"]
    assert len(sealed) == 3 and all(e["withheld"] and e["payload"] is None for e in sealed)
    assert verify_file(tmp_path / "speaker.jsonl").ok
    doc = status_doc(home.speaker, tmp_path)
    assert doc["scope_holders"]["health"] == [] and doc["carry"] == "readable" and doc["payloads_uncarried"] == 3


def test_a_scope_selection_leaves_other_scopes_lines_out(tmp_path, home):
    _, lines = _export(home.laptop, tmp_path / "user.jsonl", Selection(scopes=("user",)))
    assert not [line for line in lines if line["type"] == "scope"]
    _, lines = _export(home.laptop, tmp_path / "health.jsonl", Selection(scopes=("health",)))
    assert [line["scope"] for line in lines if line["type"] == "scope"] == ["health"]
    assert verify_file(tmp_path / "health.jsonl").ok


def test_former_readers_keep_the_epochs_they_were_given(tmp_path, home):
    home.laptop.scopes.revoke("health", "phone")
    _, lines = _export(home.laptop, tmp_path / "a.jsonl")
    [health] = [line for line in lines if line["type"] == "scope"]
    assert health["epoch"] == 2 and [r["name"] for r in health["readers"]] == ["laptop"]
    assert [(f["name"], f["last_epoch"]) for f in health["former_readers"]] == [("phone", 1)]
    page = render(_export(home.laptop, tmp_path / "b.jsonl")[0])
    assert "read until epoch 1" in _row(page, "phone")


def test_verify_names_a_scope_line_that_hides_a_holder(tmp_path, home):
    path = tmp_path / "a.jsonl"
    _export(home.phone, path)
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith('{"type":"scope"'))
    hidden = json.loads(lines[i])
    hidden["holders"] = []
    lines[i] = json.dumps(hidden, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    problems = verify_file(path).problems
    assert any("scope health" in p and "speaker" in p and "sent to" in p for p in problems), problems
    assert any("digest" in p for p in problems)


def _row(page: str, device: str) -> str:
    """The text of the matrix row of `device`."""
    table = page.split("<h2>Who may read each scope</h2>", 1)[1].split("</table>", 1)[0]
    [row] = [r for r in table.split("<tr>") if r.startswith(f"<td>{device}")]
    return re.sub(r"<[^>]+>", "|", row)


def test_html_matrix_and_sent_counts_show_where_health_went(tmp_path, home):
    page = render(_export(home.phone, tmp_path / "phone.jsonl")[0])
    assert "may read" in _row(page, "laptop") and "may read" in _row(page, "phone")
    assert "holds ciphertext (sent)" in _row(page, "speaker")
    sent = page.split("<h2>What was sent to each device</h2>", 1)[1].split("</table>", 1)[0]
    rows = {tuple(re.findall(r"<td[^>]*>(.*?)</td>", r)) for r in sent.split("<tr>")[2:]}
    assert {("speaker", "health", "memory.put", "1"), ("speaker", "health", "observation", "1"),
            ("speaker", "health", "decision", "1")} <= rows
    assert not any(r[0] == "laptop" for r in rows)              # the phone never sent to the laptop

    page = render(_export(home.laptop, tmp_path / "laptop.jsonl")[0])
    assert "holds ciphertext (received)" in _row(page, "speaker")
    assert "may read" in _row(page, "phone")
    assert "as far as laptop knows" in page


def test_a_device_the_ledger_does_not_name_holds_nothing_as_far_as_known(tmp_path, home):
    tablet = Home._device(tmp_path, "tablet")
    devices.join(tablet, devices.enroll(home.laptop, tablet.device, "tablet"))
    try:
        page = render(_export(home.laptop, tmp_path / "a.jsonl")[0])
        assert "holds nothing as far as this device knows" in _row(page, "tablet")
    finally:
        tablet.close()


def test_html_shows_readable_values_not_internal_units(tmp_path, home):
    page = render(_export(home.laptop, tmp_path / "a.jsonl")[0])
    recent = page.split("<h2>Recent events</h2>", 1)[1]
    assert "weight_milli" not in page and "confidence_bp" not in page
    assert "weight=1.0" in recent and "confidence=70 %" in recent
    assert "confidence=85 %" in recent and "tags=music, evening" in recent and "context=daypart: night" in recent
    assert "[sealed: not readable in the export]" in recent and "sealed=True" not in page
    assert "[&#x27;" not in page and "[[" not in page


def test_status_lists_the_devices_known_to_hold_each_scope(tmp_path, home):
    doc = status_doc(home.laptop, tmp_path)
    assert [(h["name"], h["because"]) for h in doc["scope_holders"]["health"]] == [("speaker", ["received"])]
    assert status_doc(home.speaker, tmp_path)["scope_holders"]["health"][0]["because"] == ["stored here"]
    home.close()
    shown = run(tmp_path / "laptop", "status").stdout
    assert "held as ciphertext by: speaker (received)" in shown
    shown = run(tmp_path / "phone", "status").stdout
    assert "held as ciphertext by: speaker (sent)" in shown
