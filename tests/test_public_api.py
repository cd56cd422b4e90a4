"""The pinned public API: what `import agentlog` offers, and ids taken as bytes or as the hex the CLI prints.

Adding or removing a public name is a decision: change PUBLIC below with it.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import agentlog
from agentlog.errors import InvalidValueError
from tests.helpers.paths import REPO

PUBLIC = [
    "AgentlogError", "Answer", "Candidate", "Contribution", "Event", "EventError", "Explanation", "Header", "Hit",
    "HomeError", "InvalidValueError", "Lookup", "Memory", "MemoryEntry", "PeerError", "Preferences", "SearchResult",
    "SnapshotError", "Store", "StoreError", "TokenError", "UsageError", "__version__", "open", "payloads",
]


def test_all_is_the_pinned_list():
    assert sorted(agentlog.__all__) == sorted(PUBLIC)
    assert len(set(agentlog.__all__)) == len(agentlog.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves_and_is_listed_by_dir(name):
    assert getattr(agentlog, name) is not None
    assert name in dir(agentlog)


def test_public_names_are_the_real_objects():
    from agentlog import errors
    from agentlog.log import payloads
    from agentlog.memory import api as memory
    from agentlog.prefs import api as preferences
    from agentlog.store import home, store
    assert agentlog.open is home.open_home and agentlog.Store is store.Store and agentlog.log.payloads is payloads
    assert agentlog.Memory is memory.Memory and agentlog.Preferences is preferences.Preferences
    assert agentlog.__version__ == version("agentlog")
    for name in PUBLIC:
        value = getattr(agentlog, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, errors.AgentlogError) and getattr(errors, name) is value


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = agentlog.nothing


def test_help_shows_the_public_names():
    proc = subprocess.run(
        [sys.executable, "-c", "import agentlog, pydoc; print(pydoc.render_doc(agentlog, renderer=pydoc.plaintext))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("Store", "MemoryEntry", "Lookup", "InvalidValueError", "open(", f"VERSION\n    {version('agentlog')}"):
        assert name in proc.stdout, name


def test_importing_the_package_loads_no_codec_store_or_numpy():
    prefixes = "('agentlog', 'capnp', 'lmdb', 'numpy')"
    code = f"import sys, agentlog; print(sorted(m for m in sys.modules if m.startswith({prefixes})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["agentlog", "agentlog.errors"])


def test_the_package_is_marked_typed():
    assert (Path(agentlog.__file__).parent / "py.typed").is_file()
    assert "py.typed" in (REPO / "setup.cfg").read_text()


# -- ids: bytes, or the hex the CLI prints ------------------------------------------------------

MALFORMED = ["ab" * 31, "xy" * 32, " " + "ab" * 32, "ab" * 33, b"short", b"", 12345]


def test_an_event_is_found_by_its_bytes_or_its_hex(laptop):
    eid = laptop.prefs.observe("ui.theme", "dark")
    assert laptop.get(eid).id == eid
    assert laptop.get(eid.hex()).id == eid
    assert laptop.get(eid.hex().upper()).id == eid
    assert laptop.get("00" * 32) is None


@pytest.mark.parametrize("bad", MALFORMED, ids=repr)
def test_a_malformed_event_id_is_one_clear_error(laptop, bad):
    with pytest.raises(InvalidValueError, match=r"^event id .* is not 32 bytes or 64 hex digits$"):
        laptop.get(bad)
    with pytest.raises(InvalidValueError, match=r"^decision id .* is not 32 bytes or 64 hex digits$"):
        laptop.decision(bad)


@pytest.mark.parametrize("as_hex", [False, True], ids=["bytes", "hex"])
def test_a_decision_is_corrected_by_its_bytes_or_its_hex(laptop, as_hex):
    decision = laptop.prefs.decide("ui.font", "small", confidence=0.8)
    assert laptop.decision(decision.hex() if as_hex else decision).value == "small"
    correction = laptop.prefs.correct(decision.hex() if as_hex else decision, "large")
    assert laptop.get(correction).header.kind == "correction"
    assert laptop.prefs.get("ui.font").answer.value == "large"


@pytest.mark.parametrize("bad", MALFORMED, ids=repr)
def test_a_malformed_decision_id_is_refused_and_changes_nothing(laptop, bad):
    laptop.prefs.decide("ui.font", "small")
    before = laptop.count(), laptop.heads()
    with pytest.raises(InvalidValueError, match=r"^decision id .* is not 32 bytes or 64 hex digits$"):
        laptop.prefs.correct(bad, "large")
    assert (laptop.count(), laptop.heads()) == before


@pytest.mark.parametrize("as_hex", [False, True], ids=["bytes", "hex"])
def test_a_memory_is_read_changed_and_deleted_by_its_bytes_or_its_hex(laptop, as_hex):
    entry_id = laptop.memory.put("prefers window seats", tags=["travel"], embedding=[0.6, 0.8], model="tiny")
    ref = entry_id.hex() if as_hex else entry_id
    assert laptop.memory.get(ref).id == entry_id
    laptop.memory.update(ref, content="prefers aisle seats")
    assert laptop.memory.get(ref).content == "prefers aisle seats"
    assert laptop.memory.vector(ref)[0] == "tiny"
    laptop.memory.delete(ref, "wrong person")
    assert laptop.memory.get(ref).is_deleted


def test_a_memory_conflict_is_resolved_by_hex(laptop, phone):
    from tests.helpers.sync import sync
    entry_id = laptop.memory.put("standup is at 9")
    sync(laptop, phone)
    laptop.memory.update(entry_id, content="standup is at 10")
    phone.memory.update(entry_id.hex(), content="standup is at 11")
    sync(phone, laptop)
    assert "content" in laptop.memory.get(entry_id.hex()).conflicts
    laptop.memory.resolve(entry_id.hex(), "content", "standup is at 10")
    assert laptop.memory.get(entry_id).conflicts == {}


@pytest.mark.parametrize("bad", ["ab" * 15, "xy" * 16, "ab" * 32, b"short", b"\x00" * 32, None], ids=repr)
def test_a_malformed_memory_id_is_one_clear_error_and_changes_nothing(laptop, bad):
    laptop.memory.put("prefers window seats")
    before = laptop.count(), laptop.heads()
    calls = [lambda: laptop.memory.get(bad), lambda: laptop.memory.vector(bad),
             lambda: laptop.memory.update(bad, content="x"), lambda: laptop.memory.delete(bad),
             lambda: laptop.memory.resolve(bad, "content", "x")]
    for call in calls:
        with pytest.raises(InvalidValueError, match=r"^memory id .* is not 16 bytes or 32 hex digits$"):
            call()
    assert (laptop.count(), laptop.heads()) == before
