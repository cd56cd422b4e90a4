"""The audit report renders in headless Chromium from a file, loads nothing from the network, shows every
section, and escapes content (user data) so none of it becomes markup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from agentlog.audit.export import export
from agentlog.audit.html import SECTIONS, render
from agentlog.log import payloads
from tests.helpers.sync import sync

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INJECTED = '<img src="http://198.51.100.7/x.png"><script>document.title="pwned"</script>'


@pytest.fixture
def report(tmp_path, laptop, phone):
    laptop.memory.put(INJECTED, type="fact", tags=["<b>tag</b>"])
    phone.append(payloads.Observation(setting="ui.theme", value="dark"))
    sync(phone, laptop)
    with open(tmp_path / "a.jsonl", "wb") as f:
        summary = export(laptop, f)
    page = tmp_path / "a.html"
    page.write_text(render(summary), encoding="utf-8")
    return page


def test_the_page_is_self_contained_and_escaped(report):
    html = report.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page refers to something outside it"
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_headless_chromium_renders_every_section(tmp_path, report):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    shot = tmp_path / "shot.png"
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000",
    ]
    subprocess.run(common + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    dom = subprocess.run(common + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings == list(SECTIONS)
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    assert "&lt;script&gt;" in dom and "<img" not in dom
