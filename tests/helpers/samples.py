"""Sample payloads of every kind and at their edges, and sample headers: what the codec tests encode and decode."""

from __future__ import annotations

from agentlog import crypto
from agentlog.log import payloads
from agentlog.log.event import MAX_EPOCH, MAX_LAMPORT, MAX_SEQ, MAX_TIME_MS, ClockEntry, Header
from agentlog.prefs import reducer as pref_reducer

ALL_PAYLOADS = [
    payloads.Observation(setting="theme", value="dark", context=(("daypart", "night"),), weight_milli=1500),
    payloads.Decision(setting="theme", value="dark", confidence_bp=8000, reason="it is night"),
    payloads.Correction(decision=b"d" * 32, value="light", reason="user"),
    payloads.PrefSet(setting="units", value="metric"),
    payloads.PrefForget(setting="units"),
    payloads.PrefConfig(setting="theme", policy="reconfirm", half_life_ms=86_400_000),
    payloads.PrefConfirm(setting="theme"),
    payloads.OverrideSet(setting="volume", value="low"),
    payloads.OverrideClear(setting="volume"),
    payloads.MemoryPut(entry=b"e" * 16, type="finding", content="likes tea", tags=("food",), confidence_bp=9000,
                       embedding=payloads.Embedding(model="m", vector=(0.5, -1.0))),
    payloads.MemoryUpdate(entry=b"e" * 16, fields=(payloads.MemoryField(content="loves tea"),), tags_add=("drink",),
                          tags_remove=("food",)),
    payloads.MemoryDelete(entry=b"e" * 16, reason="wrong"),
    payloads.MemoryMerge(entry=b"e" * 16, into=b"f" * 16, content="likes tea", tags=("food",), rewrite="loves tea"),
    payloads.DeviceEnroll(device=b"k" * 32, name="phone"),
    payloads.DeviceRevoke(device=b"k" * 32, until_seq=12, reason="lost"),
    payloads.Snapshot(frontier=(payloads.LogPoint(author=b"a" * 32, epoch=0, seq=3, id=b"i" * 32, lamport=4, time=5),),
                      views=(payloads.ViewState(name="prefs", version=1, digest=b"d" * 32, state=b"..."),)),
    payloads.EpochStart(branches=(payloads.HeadRef(author=b"a" * 32, epoch=0, seq=3, id=b"i" * 32),)),
    payloads.ScopeKey(scope="health", readers=(payloads.SealedKey(device=b"k" * 32, box=b"b" * 80),)),
    payloads.ScopeGrant(scope="topic:home", device=b"k" * 32,
                        keys=(payloads.GrantedKey(key=b"i" * 32, box=b"b" * 80),)),
    payloads.Erase(events=(b"e" * 32, b"f" * 32), entry=b"n" * 16, setting="theme", reason="asked by the user"),
]

EMBEDDING = payloads.Embedding(model="m\u00e9", vector=(0.5, -1.0, 3.25))
EDGE_PAYLOADS = [
    payloads.Observation(setting="", value="", context=(), weight_milli=0),
    payloads.Observation(
        setting="caf\u00e9 \u2603 \U0001f600", value="\u65e5\u672c\u8a9e", context=(("k\u00e9", ""), ("", "v"))
    ),
    payloads.Observation(setting="s" * 7, value="v" * 8, context=(("k" * 9, "v" * 15),), weight_milli=1_000_000_000),
    payloads.Decision(setting="s", value="v", reason="", confidence_bp=0),
    payloads.Correction(decision=b"d" * 32, value="", reason=""),
    payloads.PrefConfig(setting="s", policy="unchanged", half_life_ms=pref_reducer.MAX_HALF_LIFE_MS),
    payloads.MemoryPut(entry=b"e" * 16, type="conversation", content="", tags=(), embedding=None),
    payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c", tags=("", "t\u00e9", "x" * 8), embedding=EMBEDDING),
    payloads.MemoryPut(entry=b"e" * 16, type="fact", content="c", embedding=payloads.Embedding(model="", vector=())),
    payloads.MemoryUpdate(entry=b"e" * 16),
    payloads.MemoryUpdate(
        entry=b"e" * 16,
        fields=(
            payloads.MemoryField(type="decision"),
            payloads.MemoryField(type="fact"),
            payloads.MemoryField(content=""),
            payloads.MemoryField(confidence_bp=0),
            payloads.MemoryField(confidence_bp=7),
            payloads.MemoryField(embedding=EMBEDDING),
        ),
        tags_add=("a",),
        tags_remove=("b", "c"),
    ),
    payloads.DeviceRevoke(device=b"k" * 32, until_seq=0),
    payloads.Snapshot(),
    payloads.Snapshot(
        frontier=tuple(
            payloads.LogPoint(author=bytes([i]) * 32, epoch=i, seq=i * 7, id=b"i" * 32, lamport=i * 9, time=i * 1000)
            for i in range(3)
        ),
        views=(
            payloads.ViewState(name="v", version=2, digest=b"d" * 32, state=b"\x00" * 13),
            payloads.ViewState(name="", version=0, digest=b"d" * 32, state=b""),
        ),
        stable=(payloads.LogPoint(author=b"a" * 32, epoch=0, seq=5, id=b"j" * 32, lamport=6, time=7),),
        cuts=(payloads.SettingCut(setting="ui.theme", before=2**40),),
    ),
    payloads.EpochStart(),
]
LARGE_PAYLOADS = [
    payloads.MemoryPut(entry=b"e" * 16, type="fact", content="\u00e9" * 8192, tags=tuple(f"t{i}" for i in range(32)),
                       embedding=payloads.Embedding(model="big", vector=tuple(i / 8 for i in range(4096)))),
    payloads.PrefConfig(setting="s", value_type="choice", choices=tuple(f"{i}" + "v" * 1020 for i in range(64))),
    payloads.Snapshot(views=tuple(payloads.ViewState(name=f"v{i}", version=i, digest=b"d" * 32, state=b"s" * 5000)
                                  for i in range(4))),
]


def header(**over) -> Header:
    fields = dict(group=b"g" * 32, author=b"a" * 32, epoch=3, seq=9, prev=b"p" * 32, lamport=12,
                  time_ms=1_700_000_000_000, scope="user", kind="observation", payload_hash=b"h" * 32, payload_len=10)
    fields.update(over)
    return Header(**fields)


HEADERS = [
    header(),
    header(seq=1, prev=crypto.ZERO_ID, time_ms=0, payload_codec="sealed", epoch=MAX_EPOCH, lamport=MAX_LAMPORT),
    header(scope="topic:caf\u00e9 \U0001F600" * 10, kind="memory.update"),
    header(clock=(ClockEntry(b"b" * 32, 0, 5), ClockEntry(b"c" * 32, 7, MAX_SEQ)), time_ms=MAX_TIME_MS),
    header(clock=tuple(ClockEntry(bytes([i]) * 32, i, i + 1) for i in range(1, 200) if i != ord("a"))),
    header(author=b"short", kind="Not A Kind", scope=""),
]
