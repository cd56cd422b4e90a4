"""Deleted values are still in data.mdb (LMDB frees pages without zeroing them, and a rewritten page keeps
deleted bytes in its unused middle) until agentlog.store.scrub overwrites and rewrites them, also while
another process holds the environment open and writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentlog.log import payloads
from agentlog.store import home, scrub
from tests.helpers.sync import sync

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "scrub_worker.py"
ROWS = 3000


@pytest.fixture
def store(tmp_path):
    created = home.create(tmp_path / "home", "laptop")
    created.create_group("laptop")
    yield created
    created.close()


def write_rows(store, size: int, canary: bytes) -> list[int]:
    """ROWS values of `size` random bytes in a database of the store's environment, every 97th starting
    with the canary; returns the keys of those."""
    db = store.environment.open_dbs(["test.values"])["test.values"]
    marked = [i for i in range(ROWS) if i % 97 == 5]

    def write(txn):
        for i in range(ROWS):
            value = os.urandom(size)
            txn.put(i.to_bytes(8, "big"), canary + value[len(canary):] if i in marked else value, db=db)
    store.write(write)
    return marked


def delete_rows(store, keys: list[int]) -> None:
    db = store.environment.open_dbs(["test.values"])["test.values"]
    store.write(lambda txn: [txn.delete(i.to_bytes(8, "big"), db=db) for i in keys])


def kept_rows(store) -> int:
    db = store.environment.open_dbs(["test.values"])["test.values"]
    return store.read(lambda txn: txn.stat(db)["entries"])


def canary() -> bytes:
    return b"CANARY-" + os.urandom(12).hex().encode()


@pytest.mark.parametrize("size", [300, 9000], ids=["in-page", "overflow"])
def test_deleted_values_stay_on_disk_until_the_scrub_overwrites_them(store, size):
    secret, home_dir = canary(), store.path.parent
    marked = write_rows(store, size, secret)
    delete_rows(store, marked)
    before = scrub.find(home_dir, [secret])
    assert before and all(path.name == "data.mdb" for path, _ in before)     # the problem: still on disk

    report = scrub.scrub(store, [secret])
    assert not report.pending and report.found == [] and report.pages > 0
    assert scrub.find(home_dir, [secret]) == []
    assert kept_rows(store) == ROWS - len(marked)
    assert store.structure_problems() == []


def test_the_scrub_works_while_another_process_holds_the_store_open_and_writes(store, tmp_path):
    secret, home_dir, stop = canary(), store.path.parent, tmp_path / "stop"
    marked = write_rows(store, 300, secret)
    worker = subprocess.Popen([sys.executable, str(WORKER), str(home_dir), str(stop)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        delete_rows(store, marked)
        assert scrub.find(home_dir, [secret])
        report = scrub.scrub(store, [secret])
        assert not report.pending
        assert scrub.find(home_dir, [secret]) == []                # the worker still has it open and writes
        assert worker.poll() is None
    finally:
        stop.touch()
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0 and out.startswith("ok "), out
    written = int(out.split()[1])
    assert written >= 5 and store.prefs.get("worker.seen") is not None
    assert scrub.find(home_dir, [secret]) == []
    assert store.structure_problems() == []


def test_a_reader_older_than_the_delete_leaves_the_scrub_pending_until_it_ends(store):
    secret, home_dir = canary(), store.path.parent
    marked = write_rows(store, 300, secret)
    with store.raw_txn() as reader:                                # pins the pages the delete frees
        delete_rows(store, marked)
        pinned = scrub.scrub(store, [secret], rounds=2, attempts=1)
        assert pinned.pending and pinned.found
        assert reader.stat(store.environment.open_dbs(["test.values"])["test.values"])["entries"] == ROWS
    report = scrub.scrub(store, [secret])
    assert not report.pending and scrub.find(home_dir, [secret]) == []


def test_find_searches_every_file_under_the_home(tmp_path):
    secret = canary()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "export.jsonl").write_bytes(b"x" * 5000 + secret + b"y" + secret)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "other").write_bytes(b"nothing here")
    found = scrub.find(tmp_path, [secret, b""])
    assert found == [(tmp_path / "a" / "b" / "export.jsonl", 5000), (tmp_path / "a" / "b" / "export.jsonl",
                                                                      5001 + len(secret))]
    assert scrub.find(tmp_path, []) == []


def homes_holding(stores, needles: list[bytes]) -> list[str]:
    return [s.name for s in stores if scrub.find(s.path.parent, needles)]


def test_an_erasure_scrubs_the_requester_and_every_device_that_carries_it_out(laptop, phone):
    small, large = canary(), canary()
    entry = laptop.memory.put(f"remember {small.decode()} for the build", tags=("build",))
    big = laptop.memory.put("long notes " + large.decode() + " " + "filler text " * 600)       # overflow pages
    laptop.memory.update(big, content="longer notes " + large.decode() + " " + "more text " * 700)
    seen = laptop.append(payloads.Observation(setting="editor.theme", value="theme " + small.decode()))
    kept = laptop.memory.put("an entry that stays")
    sync(laptop, phone)
    assert homes_holding([laptop, phone], [small, large]) == ["laptop", "phone"]

    laptop.memory.forget(entry)
    laptop.memory.forget(big)
    laptop.erase([seen], reason="private")
    assert homes_holding([laptop, phone], [small, large]) == ["phone"]
    assert laptop.erasure_status()["scrub"]["pending"] is False
    sync(laptop, phone)
    assert homes_holding([laptop, phone], [small, large]) == []
    assert phone.memory.get(kept).content == "an entry that stays"
    assert laptop.views() == phone.views()


def test_a_scrub_pinned_by_an_old_reader_is_pending_until_run_again(laptop, phone):
    secret = canary()
    laptop.memory.put(f"note {secret.decode()} here")
    entry = laptop.memory.put(f"note {secret.decode()} there")
    sync(laptop, phone)
    laptop.memory.forget(entry)
    with phone.raw_txn():                                          # a reader that began before the request
        sync(laptop, phone)
        status = phone.erasure_status()["scrub"]
        assert status["pending"] is True and status["pinned"] >= 1
    assert phone.scrubber.wanted()
    assert not phone.scrubber.run().pending
    assert phone.erasure_status()["scrub"]["pending"] is False and not phone.scrubber.wanted()


def test_find_of_many_needles_in_one_pass_finds_each_at_every_alignment(tmp_path):
    needles = [canary() + bytes([i]) for i in range(40)] + [os.urandom(n) for n in range(9, 19)]
    data = bytearray(os.urandom(60_000))
    placed = []
    for i, needle in enumerate(needles[::3]):
        at = 1000 + i * 3001 + i % 8
        data[at: at + len(needle)] = needle
        placed.append(at)
    data[-len(needles[1]):] = needles[1]                          # at the very end too
    placed.append(len(data) - len(needles[1]))
    (tmp_path / "blob").write_bytes(bytes(data))
    assert len(needles) > scrub.FEW
    found = scrub.find(tmp_path, needles)
    naive = sorted((tmp_path / "blob", at) for n in needles for at in range(len(data)) if data.startswith(n, at))
    assert found == naive and [at for _, at in found] == sorted(placed)
