"""Pending pairing invites (docs/pairing.md): what `agentlog devices invite` leaves for whichever process
of this home answers the joiner (`agentlog serve`, or the invite command listening itself).

Database `invites`: slot (u16be) -> JSON {"secret", "name", "scopes", "expires_ms", "tries" (left), "failed"
(tries that ended without a join), "state", "device", "reason"}; state is pending, joined or void. The secret
words live here, in the home beside the device key and the group secret, and nowhere else; the record is
deleted when the invite command ends (joined, void, expired or interrupted), and a record past its expiry
is void for every reader.

Also here: the file `serve.address` in the store directory, where a running `serve` says which address
it accepts connections on, so `invite` can print it.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from agentlog import pair_code
from agentlog.errors import PeerRefused, UsageError

DBS = ("invites",)
TRIES = 3
MAX_TTL_S = 3600
SERVE_FILE = "serve.address"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _key(slot: int) -> bytes:
    return slot.to_bytes(2, "big")


def create(store, name: str, scopes: list[str], ttl_s: float, tries: int = TRIES) -> tuple[int, str]:
    """Record a pending invite in a free slot; (slot, the code to read aloud). Ended records past their
    expiry are dropped first, so slots free up even after an invite command was killed."""
    if not 0 < ttl_s <= MAX_TTL_S:
        raise UsageError(f"--ttl must be 1 to {MAX_TTL_S} seconds")
    now = _now_ms()

    def write(txn):
        db = store.db("invites")
        used = set()
        for k, v in list(txn.cursor(db=db)):
            if json.loads(bytes(v))["expires_ms"] < now:
                txn.delete(bytes(k), db=db)
            else:
                used.add(int.from_bytes(bytes(k), "big"))
        free = [s for s in range(1, pair_code.SLOTS + 1) if s not in used]
        if not free:
            raise UsageError(f"{pair_code.SLOTS} invites are pending on this device: wait for one to end")
        slot = secrets.choice(free)
        code = pair_code.make(slot, secrets.token_bytes(pair_code.WORDS_IN_CODE))
        doc = {"secret": pair_code.parse(code)[1].decode(), "name": name, "scopes": scopes,
               "expires_ms": now + int(ttl_s * 1000), "tries": tries, "failed": 0, "state": "pending", "device": "",
               "reason": ""}
        txn.put(_key(slot), json.dumps(doc).encode(), db=db)
        return slot, code
    return store.write(write)


def get(store, slot: int) -> dict | None:
    """The invite in `slot` as recorded, or None; a pending one past its expiry reads as void."""
    raw = store.read(lambda txn: txn.get(_key(slot), db=store.db("invites")))
    if raw is None:
        return None
    doc = json.loads(bytes(raw))
    if doc["state"] == "pending" and doc["expires_ms"] < _now_ms():
        doc.update(state="void", reason="expired")
    return doc


def claim(store, slot: int) -> bytes:
    """Spend one try of the pending invite in `slot`; its secret. Every exchange spends one before the inviter
    answers, so a network attacker gets at most `tries` online guesses.

    Raises:
        PeerRefused: no invite in that slot, or it expired, was used or has no tries left.
    """
    def write(txn):
        db = store.db("invites")
        raw = txn.get(_key(slot), db=db)
        if raw is None:
            raise PeerRefused(f"no pending invite {slot} on this device (mistyped, or it ended)")
        doc = json.loads(bytes(raw))
        if doc["state"] == "joined":
            raise PeerRefused(f"invite {slot} was used already: a code works once")
        if doc["state"] == "void" or doc["tries"] <= 0:
            raise PeerRefused(f"invite {slot} is void: {doc['reason'] or 'no tries left'}")
        if doc["expires_ms"] < _now_ms():
            raise PeerRefused(f"invite {slot} expired")
        doc["tries"] -= 1
        txn.put(_key(slot), json.dumps(doc).encode(), db=db)
        return doc["secret"].encode()
    return store.write(write)


def failed(store, slot: int, reason: str) -> None:
    """A claimed try ended without a join: the invite is void when no try is left."""
    def write(txn):
        db = store.db("invites")
        raw = txn.get(_key(slot), db=db)
        if raw is None:
            return
        doc = json.loads(bytes(raw))
        if doc["state"] != "pending":
            return
        doc["reason"], doc["failed"] = reason[:300], doc["failed"] + 1
        if doc["tries"] <= 0:
            doc.update(state="void", reason=f"{TRIES} failed tries, the last: {reason[:300]}")
        txn.put(_key(slot), json.dumps(doc).encode(), db=db)
    store.write(write)


def joined(store, slot: int, device: bytes) -> None:
    """The invite was used: `device` is enrolled and holds its token."""
    def write(txn):
        db = store.db("invites")
        raw = txn.get(_key(slot), db=db)
        if raw is not None:
            doc = json.loads(bytes(raw))
            doc.update(state="joined", device=device.hex(), reason="")
            txn.put(_key(slot), json.dumps(doc).encode(), db=db)
    store.write(write)


def remove(store, slot: int) -> None:
    store.write(lambda txn: txn.delete(_key(slot), db=store.db("invites")))


def serve_address(store_dir: Path) -> str | None:
    """The HOST:PORT a running `serve` of this home accepts connections on, as it wrote it (None: none)."""
    try:
        text = (Path(store_dir) / SERVE_FILE).read_text().strip()
    except OSError:
        return None
    return text or None
