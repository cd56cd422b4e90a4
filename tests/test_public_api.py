"""The pinned public API: what `import agentlog` offers.

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
    from agentlog import errors, home, memory, payloads, preferences, store
    assert agentlog.open is home.open_home and agentlog.Store is store.Store and agentlog.payloads is payloads
    assert agentlog.Memory is memory.Memory and agentlog.Preferences is preferences.Preferences
    assert agentlog.__version__ == version("agentlog")
    for name in PUBLIC:
        value = getattr(agentlog, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, errors.AgentlogError) and getattr(errors, name) is value


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        agentlog.nothing


def test_help_shows_the_public_names():
    proc = subprocess.run([sys.executable, "-c", "import agentlog, pydoc; print(pydoc.render_doc(agentlog, renderer=pydoc.plaintext))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("Store", "MemoryEntry", "Lookup", "InvalidValueError", "open(", f"VERSION\n    {version('agentlog')}"):
        assert name in proc.stdout, name


def test_importing_the_package_loads_no_codec_store_or_numpy():
    code = "import sys, agentlog; print(sorted(m for m in sys.modules if m.startswith(('agentlog', 'capnp', 'lmdb', 'numpy'))))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["agentlog", "agentlog.errors"])


def test_the_package_is_marked_typed():
    assert (Path(agentlog.__file__).parent / "py.typed").is_file()
    assert "py.typed" in (Path(__file__).resolve().parent.parent / "setup.cfg").read_text()
