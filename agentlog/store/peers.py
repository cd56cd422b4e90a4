"""Peers: the addresses this device replicates with (persisted) and what the replicator last knew of each.

Databases in the store's environment:
  peers        "HOST:PORT" (UTF-8) -> JSON {"added_ms": int}: addresses `serve` dials
  peers.state  device key(32)      -> JSON {"name", "address", "state", "last_seen_ms", "frontier", "error"}
State is written by `agentlog serve` as connections change and read by `agentlog status`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from agentlog.errors import InvalidValueError

DBS = ("peers", "peers.state")


def parse_address(text: str, *, listen: bool = False) -> tuple[str, int]:
    """(host, port) from "HOST:PORT"; InvalidValueError naming what is wrong. Port 0 (any free port)
    only for an address to `listen` on."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not (0 if listen else 1) <= int(port) < 65536:
        raise InvalidValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:4711)")
    return host, int(port)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PeerState:
    """What this device last knew of a peer device."""

    name: str = ""
    address: str = ""
    state: str = "never"
    last_seen_ms: int = 0
    frontier: dict[str, int] = field(default_factory=dict)    # author hex -> seq the peer held
    error: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> PeerState:
        doc = json.loads(raw)
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


class Peers:
    """The peer tables of one store."""

    def __init__(self, store):
        self.store = store

    def addresses(self) -> list[str]:
        def read(txn):
            with txn.cursor(db=self.store.db("peers")) as cur:
                return [bytes(k).decode() for k in cur.iternext(keys=True, values=False)]
        return self.store.read(read)

    def add(self, text: str) -> str:
        addr = address(*parse_address(text))
        doc = json.dumps({"added_ms": time.time_ns() // 1_000_000}).encode()
        self.store.write(lambda txn: txn.put(addr.encode(), doc, db=self.store.db("peers"), overwrite=False))
        return addr

    def remove(self, text: str) -> str:
        addr = address(*parse_address(text))
        if not self.store.write(lambda txn: txn.delete(addr.encode(), db=self.store.db("peers"))):
            raise InvalidValueError(f"{addr} is not a peer of this device (see agentlog peers list)")
        return addr

    def states(self) -> dict[bytes, PeerState]:
        def read(txn):
            with txn.cursor(db=self.store.db("peers.state")) as cur:
                return {bytes(k): PeerState.from_bytes(bytes(v)) for k, v in cur}
        return self.store.read(read)

    def save(self, states: dict[bytes, PeerState]) -> None:
        def write(txn):
            for device, state in states.items():
                txn.put(device, state.to_bytes(), db=self.store.db("peers.state"))
        self.store.write(write)


def behind(ours: dict[bytes, int], theirs: dict[str, int]) -> tuple[int, int]:
    """(events we lack that the peer held, events the peer lacked that we hold), as last known."""
    theirs_b = {bytes.fromhex(a): s for a, s in theirs.items()}
    we_lack = sum(max(0, s - ours.get(a, 0)) for a, s in theirs_b.items())
    they_lack = sum(max(0, s - theirs_b.get(a, 0)) for a, s in ours.items())
    return we_lack, they_lack
