"""The replication ledger: ranges merge as documented, and a real sync over 127.0.0.1 enters what
left each device (sent) and what arrived (received), per peer and author."""

from __future__ import annotations

from agentlog.log import payloads
from agentlog.store import ledger
from agentlog.store.layout import event_key
from tests.helpers.loopback import sync_over_socket

PEER_A, PEER_B, AUTHOR = b"a" * 32, b"b" * 32, b"x" * 32


def _record(store, db, peer, seqs, time_ms):
    with store.raw_txn(write=True) as txn:
        ledger.record(txn, store.db(db), peer, [(AUTHOR, 0, s) for s in seqs], time_ms)


def _spans(rows):
    return [(r.peer[:1], r.lo, r.hi, r.first_ms, r.last_ms) for r in rows]


def test_ranges_merge_when_contiguous_and_within_a_second(laptop):
    _record(laptop, "ledger.sent", PEER_A, [1, 2, 3], 1000)
    _record(laptop, "ledger.sent", PEER_A, [4, 5], 1500)          # continues, same second: merged
    _record(laptop, "ledger.sent", PEER_A, [6], 2600)             # continues, but later: a new row
    _record(laptop, "ledger.sent", PEER_A, [9, 10, 12], 2700)     # gaps: runs of their own
    _record(laptop, "ledger.sent", PEER_B, [1, 2], 1000)
    book = ledger.Ledger(laptop)
    assert _spans(book.sent(PEER_A)) == [(b"a", 1, 5, 1000, 1500), (b"a", 6, 6, 2600, 2600),
                                         (b"a", 9, 10, 2700, 2700), (b"a", 12, 12, 2700, 2700)]
    assert _spans(book.sent(PEER_B)) == [(b"b", 1, 2, 1000, 1000)]
    assert len(book.sent()) == 5 and book.received() == []


def test_positions_read_author_epoch_seq_from_records(laptop):
    laptop.append_many([payloads.Observation(setting="s", value=str(i)) for i in range(3)])
    with laptop.raw_txn() as txn:
        records = [bytes(v) for _, v in txn.cursor(db=laptop.db("events"))]
    assert ledger.positions(records) == [(laptop.device, 0, s) for s in (1, 2, 3, 4)]


def test_a_sync_over_loopback_enters_both_directions(laptop, phone):
    laptop.append_many([payloads.Observation(setting="theme", value=f"v{i}") for i in range(40)])
    phone.append_many([payloads.Observation(setting="font", value=f"p{i}") for i in range(7)])
    laptop_head, phone_head = laptop.heads()[laptop.device].seq, phone.heads()[phone.device].seq
    phone_had = phone.frontier()[laptop.device]

    sync_over_socket(phone, laptop)
    assert phone.frontier()[laptop.device] == laptop_head and laptop.frontier()[phone.device] == phone_head

    def covered(rows, author):
        return sorted((r.lo, r.hi) for r in rows if r.author == author)

    laptop_book, phone_book = ledger.Ledger(laptop), ledger.Ledger(phone)
    assert covered(laptop_book.sent(phone.device), laptop.device) == [(phone_had + 1, laptop_head)]
    assert covered(phone_book.received(laptop.device), laptop.device) == [(phone_had + 1, laptop_head)]
    assert covered(phone_book.sent(laptop.device), phone.device) == [(1, phone_head)]
    assert covered(laptop_book.received(phone.device), phone.device) == [(1, phone_head)]
    assert laptop_book.sent(PEER_A) == [] and phone_book.sent(phone.device) == []
    for rows in (laptop_book.sent(), phone_book.sent()):
        assert all(0 < r.first_ms <= r.last_ms for r in rows)
    with laptop.raw_txn() as txn:                 # the ranges name events that exist
        assert txn.get(event_key(laptop.device, 0, laptop_head), db=laptop.db("events")) is not None
