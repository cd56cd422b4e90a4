"""Text another device wrote reaches terminals and logs escaped and bounded (agentlog/text.py).

Unit tests of the sanitizer and of the protocol's limit on error and goodbye text, and a join under a name full
of escape codes (the same text through real daemons and `agentlog sync`: tests/system/test_printable_daemons.py).
"""

from __future__ import annotations

import pytest

from agentlog.errors import ProtocolError
from agentlog.log import payloads
from agentlog.store import devices, home
from agentlog.sync import messages
from agentlog.sync.messages import Error, Goodbye
from agentlog.text import LIMIT, printable, printable_doc
from tests.helpers.daemons import agentlog
from tests.helpers.printable import EVIL_NAME, NASTY, assert_clean, hidden

# -- the sanitizer -------------------------------------------------------------------------------

def test_printable_text_is_unchanged():
    for text in ("laptop", "café ☕ 😀 日本語", "a\u00a0b", "C:\\Users\\x", ""):
        assert printable(text) == text


def test_every_hidden_character_becomes_a_visible_escape():
    shown = printable(NASTY + "\udc80")
    assert shown == ("\\x1b[2J\\x1b]0;owned\\x07first line\\nsecond line\\r\\u202eevil\\u200b\\x00\\x7f\\x85"
                     "tag\\U000e0041\\udc80")
    assert not hidden(shown) and "\n" not in shown
    shown.encode("utf-8")                                  # a lone surrogate would not encode


def test_long_text_is_cut_and_says_its_length():
    assert printable("x" * (LIMIT + 1)) == "x" * LIMIT + f"… ({LIMIT + 1} characters)"
    assert printable("x" * 50, 10) == "x" * 10 + "… (50 characters)"
    assert printable("x" * 10, 10) == "x" * 10


def test_escapes_count_toward_the_limit():
    shown = printable("\x1b" * 100, 20)
    assert shown == "\\x1b" * 5 + "… (100 characters)"
    shown = printable("ab\U000e0041", 8)                 # an escape is never cut in half
    assert shown == "ab… (3 characters)"
    assert len(printable("\U000e0041" * 10_000)) <= LIMIT + len("… (10000 characters)")


def test_printable_doc_escapes_keys_and_values_and_leaves_the_rest():
    doc = {"name\x1b": ["a\nb", {"c": "\u202e"}], "n": 3, "f": 0.5, "none": None, "yes": True}
    assert printable_doc(doc) == {"name\\x1b": ["a\\nb", {"c": "\\u202e"}], "n": 3, "f": 0.5, "none": None,
                                  "yes": True}
    assert printable_doc("y" * 30, 5) == "yyyyy… (30 characters)"


# -- the protocol's limit ---------------------------------------------------------------------------

@pytest.mark.parametrize("msg", [Error("protocol", "m" * (messages.MAX_REASON + 1)), Goodbye("g" * 8192),
                                 Error("c" * (messages.MAX_CODE + 1), "short")], ids=["error", "goodbye", "code"])
def test_over_long_error_or_goodbye_text_is_a_protocol_error(msg):
    raw = messages._LAYOUT.encode(messages._Wire(error=(msg.code, msg.message)) if isinstance(msg, Error)
                                  else messages._Wire(goodbye=(msg.reason,)))
    with pytest.raises(ProtocolError, match="over the limit") as caught:
        messages.decode(raw)
    assert caught.value.code == "too-large"


def test_text_at_the_limit_decodes_and_a_sender_cuts_its_own():
    assert messages.decode(messages.encode(Error("protocol", NASTY))) == Error("protocol", NASTY)
    at_limit = Goodbye("g" * messages.MAX_REASON)
    assert messages.decode(messages.encode(at_limit)) == at_limit
    sent = messages.decode(messages.encode(Error("x" * 100, "m" * 100_000)))
    assert sent == Error("x" * messages.MAX_CODE, "m" * messages.MAX_REASON)
    assert messages.decode(messages.encode(Goodbye("g" * 5000))) == at_limit


def test_joining_under_a_name_full_of_escapes_prints_it_escaped(tmp_path):
    name = (EVIL_NAME * 8)[:64]                   # the longest name an enrolment may carry, escapes throughout
    with home.create(tmp_path / "laptop", "laptop") as laptop, home.create(tmp_path / "new", "new") as new:
        laptop.create_group("laptop")
        laptop.append(payloads.DeviceEnroll(device=new.device, name=name))
        token = devices.enroll(laptop, new.device, name)
    proc = agentlog(tmp_path / "new", "devices", "join", token)
    assert_clean(proc.stdout + proc.stderr, max_line=LIMIT + 100)
    assert f"as '{printable(name)}'" in proc.stdout
