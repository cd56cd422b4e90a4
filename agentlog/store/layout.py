"""The store's on-disk layout: its databases, and the big-endian keys and values the store's modules share.

Databases (docs/format.md), keys big-endian so that one author's events scan in (epoch, seq) order:
  events    author(32) epoch(4) seq(8)  -> header bytes ++ signature(64)
  payloads  author(32) epoch(4) seq(8)  -> payload bytes (same key as the event: appends stay sequential)
  withheld  author(32) epoch(4) seq(8)  -> b"" for events stored without their payload
  uncarried (see agentlog.store.carry): sealed events stored without their payload by choice
  unverified author(32) epoch(4) seq(8) -> b"" for events ingested without their own signature checked
                                           (inside a peer's run: the run's last signature and the hash
                                           links proved them)
  damaged   author(32) epoch(4) seq(8)  -> b"" for such events whose signature was checked since and does not
                                           verify: authentic content, damaged signature bytes, asked of peers again
  ids       event id(32)                -> author(32) epoch(4) seq(8)
  heads     author(32)                  -> epoch(4) seq(8) id(32)
  forks     author(32) epoch(4) seq(8) id(32) -> each different record seen there (fork proof)
  branches, suspects (see agentlog/store/forks.py): a forked log's branches (their events sit in `events` and
                                           `payloads` under author(32) epoch(4) seq(8) id(32)), and authors
                                           whose frontier is shown lowered so peers send their events again
  truncated author(32)                  -> epoch(4) seq(8) id(32) time(8) lamport(8) of its last event
                                           compaction dropped
  snapshots (see agentlog/store/snapshots.py)
  ledger.sent, ledger.received (see agentlog/store/ledger.py): which ranges went to or came from which peer
  views.roster  b"state", b"version"    -> canonical roster bytes, reducer version
  views.scopes, sealed.unread (see agentlog/store/keyring.py): the scopes view, sealed events not folded
  erased, erase.pending, erase.rules (see agentlog/store/erasure.py): events held header-only because an
                                           erase request erased them, targets not held yet, the requests' rules
  watch.changes (see agentlog/watch/changelog.py): each setting and memory entry a write changed
  invites (see agentlog/store/invites.py): pending pairing invites, their secret words, expiry and tries left
  meta      layout version, identity, group, lamport, own clock, carry mode
Kept in one module so that every module of the store packs a position the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from agentlog.log import payloads
from agentlog.log import roster as roster_module
from agentlog.log.event import Event, decode_record
from agentlog.log.validate import Head
from agentlog.memory import view as memory_view
from agentlog.prefs import view as pref_view
from agentlog.store import carry, invites, keyring, ledger, peers
from agentlog.watch import changelog

LAYOUT_VERSION = 1
ERASURE_DBS = ("erased", "erase.pending", "erase.rules")
DBS = ("events", "payloads", "withheld", *carry.DBS, "unverified", "damaged", "ids", "heads", "forks", "branches",
       "suspects", "truncated", "snapshots", "views.roster", *pref_view.DBS, *memory_view.DBS, *peers.DBS, *ledger.DBS,
       *keyring.DBS, *ERASURE_DBS, *changelog.DBS, *invites.DBS, "meta")
MAX_DBS = 64                                     # room for databases later layouts add
POS = struct.Struct(">IQ")                       # epoch(4) seq(8)
KEY_LEN = 32 + POS.size                          # an event key; a forked branch's events add their id
ROSTER_VERSION = roster_module.VERSION.to_bytes(4, "big")


_LIMITS: dict[bytes, dict[bytes, int]] = {}


def limits_in(dbs: dict, txn) -> dict[bytes, int]:
    """Revoked device -> its last seq the group accepts, from the roster view in `txn` (parsed once per state)."""
    raw = bytes(txn.get(b"state", db=dbs["views.roster"]) or b"")
    found = _LIMITS.get(raw)
    if found is None:
        roster = roster_module.Roster.from_bytes(raw) if raw else roster_module.Roster()
        found = {d: m.until_seq for d, m in roster.members.items() if m.until_seq is not None}
        if len(_LIMITS) > 64:
            _LIMITS.clear()
        _LIMITS[raw] = found
    return found


def event_key(author: bytes, epoch: int, seq: int) -> bytes:
    return author + POS.pack(epoch, seq)


def head_value(head: Head) -> bytes:
    return POS.pack(head.epoch, head.seq) + head.id


def head_from(raw: bytes) -> Head:
    epoch, seq = POS.unpack_from(raw)
    return Head(epoch, seq, bytes(raw[12:44]))


def heads_in(dbs: dict, txn, name: str = "heads") -> dict[bytes, Head]:
    """Author -> Head of a database of heads keyed by author (`heads`, or `truncated`), in `txn`."""
    with txn.cursor(db=dbs[name]) as cur:
        return {bytes(author): head_from(raw) for author, raw in cur}


def truncation_value(epoch: int, seq: int, eid: bytes, time_ms: int, lamport: int) -> bytes:
    """A `truncated` row: the head form (epoch, seq, id), then the dropped event's time (for the horizon)
    and lamport (for a later snapshot that names it)."""
    return head_value(Head(epoch, seq, eid)) + time_ms.to_bytes(8, "big") + lamport.to_bytes(8, "big")


def pack_clock(clock: dict[bytes, tuple[int, int]]) -> bytes:
    return b"".join(a + POS.pack(*clock[a]) for a in sorted(clock))


def unpack_clock(raw: bytes | None) -> dict[bytes, tuple[int, int]]:
    out = {}
    for i in range(0, len(raw or b""), 44):
        out[bytes(raw[i : i + 32])] = POS.unpack_from(raw, i + 32)
    return out


def seq_runs(positions: Iterable[tuple[bytes, int, int]],
             limit: int | None = None) -> list[tuple[bytes, int, int, int]]:
    """Sorted (author, epoch, seq) positions as runs of consecutive seqs, (author, epoch, first, last); at most
    `limit` runs."""
    runs: list[list] = []
    for author, epoch, seq in positions:
        if runs and runs[-1][:2] == [author, epoch] and runs[-1][3] + 1 == seq:
            runs[-1][3] = seq
        elif len(runs) == limit:
            break
        else:
            runs.append([author, epoch, seq, seq])
    return [tuple(r) for r in runs]


def pack_anchor(record: bytes, payload: bytes) -> bytes:
    """The enrolment a join token vouched for, kept until the group's history arrives."""
    return len(record).to_bytes(4, "big") + record + payload


def unpack_anchor(raw: bytes) -> tuple[Event, payloads.DeviceEnroll]:
    n = int.from_bytes(raw[:4], "big")
    return decode_record(raw[4 : 4 + n]), payloads.decode("device.enroll", raw[4 + n :])
