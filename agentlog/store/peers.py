"""Peers: the addresses this device replicates with (persisted) and what the replicator last knew of each.

Databases in the store's environment:
  peers        "HOST:PORT" (UTF-8) -> JSON {"added_ms": int}: addresses `serve` dials
               "nats://HOST:PORT"  -> JSON {"added_ms": int, "relay": {options}}: relays (agentlog.relay.config;
                                      a password among the options lives here, in the home)
  peers.state  device key(32)      -> JSON {"name", "address", "state", "last_seen_ms", "frontier", "error"}
  peers.relay  "nats://HOST:PORT"  -> JSON {"state", "we_lack", "they_lack", "error", "last_seen_ms", "updated_ms"}
  peers.found  "HOST:PORT"         -> JSON {"state", "device", "error", "seen_ms"}: devices of the group that `serve`
                                      found announced on the network (docs/discovery.md), replaced at each start
State is written by `agentlog serve` as connections change and read by `agentlog status`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from agentlog.errors import ERROR_TEXT_MAX, InvalidValueError

DBS = ("peers", "peers.state", "peers.relay", "peers.found")
RELAY_SCHEME = "nats://"
RELAY_STATES = ("never", "connecting", "live", "unreachable", "refused")


def parse_address(text: str, *, listen: bool = False) -> tuple[str, int]:
    """(host, port) from "HOST:PORT"; InvalidValueError naming what is wrong. Port 0 (any free port)
    only for an address to `listen` on."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not (0 if listen else 1) <= int(port) < 65536 \
            or any(c in host for c in "/@?#"):
        raise InvalidValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:4711; a relay is nats://HOST:PORT)")
    return host, int(port)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Record:
    """A dataclass kept as sorted JSON; fields a later version added are left at their defaults when absent."""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes):
        doc = json.loads(raw)
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass
class PeerState(_Record):
    """What this device last knew of a peer device."""

    name: str = ""
    address: str = ""
    state: str = "never"
    last_seen_ms: int = 0
    frontier: dict[str, int] = field(default_factory=dict)    # author hex -> seq the peer held
    error: str = ""


@dataclass
class RelayState(_Record):
    """What `serve` last recorded of a relay (`Peers.set_relay_state`)."""

    state: str = "never"
    we_lack: int | None = None
    they_lack: int | None = None
    error: str = ""
    last_seen_ms: int = 0
    updated_ms: int = 0


@dataclass
class FoundState(_Record):
    """A device's address `serve` found announced on the network: announced or gone (the announcement withdrawn),
    the device that answered there (hex, once a handshake passed), the last dial's error (none: it connected, or
    it was not dialed yet) and when it was last heard of."""

    state: str = "announced"
    device: str = ""
    error: str = ""
    seen_ms: int = 0


class Peers:
    """The peer tables of one store."""

    def __init__(self, store):
        self.store = store

    def addresses(self) -> list[str]:
        """The devices' addresses (HOST:PORT) `serve` dials; relays are `relays()`."""
        def read(txn):
            with txn.cursor(db=self.store.db("peers")) as cur:
                return [k for k in (bytes(k).decode() for k in cur.iternext(keys=True, values=False))
                        if not k.startswith(RELAY_SCHEME)]
        return self.store.read(read)

    def relays(self) -> dict[str, dict]:
        """Relay address ("nats://HOST:PORT") -> its options as stored (agentlog.relay.config.RelayConfig.from_doc
        reads them), in address order."""
        return self.store.read(self._relays_in)

    def _relays_in(self, txn) -> dict[str, dict]:
        with txn.cursor(db=self.store.db("peers")) as cur:
            found = cur.set_range(RELAY_SCHEME.encode())
            out = {}
            while found and bytes(cur.key()).startswith(RELAY_SCHEME.encode()):
                doc = json.loads(bytes(cur.value()))
                out[bytes(cur.key()).decode()] = doc.get("relay") if isinstance(doc, dict) else None
                found = cur.next()
            return out

    def add_relay(self, address: str, options: dict) -> bool:
        """Keep relay `address` (canonical "nats://HOST:PORT", agentlog.relay.config) with its options, replacing
        those of a relay already kept there; True when it is new."""
        if not address.startswith(RELAY_SCHEME):
            raise InvalidValueError(f"{address!r} is not a relay address (nats://HOST:PORT)")
        key = address.encode()

        def write(txn):
            db = self.store.db("peers")
            old = txn.get(key, db=db)
            added = json.loads(bytes(old)).get("added_ms") if old is not None else None
            doc = {"added_ms": added or time.time_ns() // 1_000_000, "relay": options}
            txn.put(key, json.dumps(doc, sort_keys=True).encode(), db=db)
            return old is None
        return self.store.write(write)

    def relay_states(self) -> dict[str, RelayState]:
        """Relay address -> what `serve` last recorded of it (never: nothing yet), for every relay kept."""
        def read(txn):
            db = self.store.db("peers.relay")
            return {address: RelayState.from_bytes(bytes(txn.get(address.encode(), db=db) or b"{}"))
                    for address in self._relays_in(txn)}
        return self.store.read(read)

    def set_relay_state(self, address: str, *, state: str, we_lack: int | None = None,
                        they_lack: int | None = None, error: str = "") -> bool:
        """Record what `serve` knows of relay `address`: its state (connecting, live, unreachable, refused), events
        the relay holds that this device has not ingested (`we_lack`) and that this device holds and has not
        published (`they_lack`), None when unknown, and the last error. A live state is the time last seen.
        False (nothing written) when the relay is no longer in the peer book."""
        if state not in RELAY_STATES:
            raise InvalidValueError(f"relay state {state!r} is not one of {', '.join(RELAY_STATES)}")
        key = address.encode()

        def write(txn):
            if txn.get(key, db=self.store.db("peers")) is None:
                return False
            raw = txn.get(key, db=self.store.db("peers.relay"))
            old = RelayState.from_bytes(bytes(raw)) if raw is not None else RelayState()
            now = time.time_ns() // 1_000_000
            new = RelayState(state, we_lack, they_lack, error[:ERROR_TEXT_MAX],
                             now if state == "live" else old.last_seen_ms, now)
            txn.put(key, new.to_bytes(), db=self.store.db("peers.relay"))
            return True
        return self.store.write(write)

    def add(self, text: str) -> str:
        addr = address(*parse_address(text))
        doc = json.dumps({"added_ms": time.time_ns() // 1_000_000}).encode()
        self.store.write(lambda txn: txn.put(addr.encode(), doc, db=self.store.db("peers"), overwrite=False))
        return addr

    def remove(self, text: str) -> str:
        """Forget a device's address (HOST:PORT) or a relay (its canonical nats://HOST:PORT) and its state."""
        addr = text if text.startswith(RELAY_SCHEME) else address(*parse_address(text))

        def write(txn):
            txn.delete(addr.encode(), db=self.store.db("peers.relay"))
            return txn.delete(addr.encode(), db=self.store.db("peers"))
        if not self.store.write(write):
            raise InvalidValueError(f"{addr} is not a peer of this device (see agentlog peers list)")
        return addr

    def states(self) -> dict[bytes, PeerState]:
        def read(txn):
            with txn.cursor(db=self.store.db("peers.state")) as cur:
                return {bytes(k): PeerState.from_bytes(bytes(v)) for k, v in cur}
        return self.store.read(read)

    def save(self, states: dict[bytes, PeerState], found: dict[str, FoundState] | None = None) -> None:
        """Save the peers' states; and, when given, replace the discovered addresses with `found`."""
        def write(txn):
            for device, state in states.items():
                txn.put(device, state.to_bytes(), db=self.store.db("peers.state"))
            if found is not None:
                txn.drop(self.store.db("peers.found"), delete=False)
                for addr, f in found.items():
                    txn.put(addr.encode(), f.to_bytes(), db=self.store.db("peers.found"))
        self.store.write(write)

    def found(self) -> dict[str, FoundState]:
        """The addresses `serve` found announced on the network (discovered peers), and what became of each."""
        def read(txn):
            with txn.cursor(db=self.store.db("peers.found")) as cur:
                return {bytes(k).decode(): FoundState.from_bytes(bytes(v)) for k, v in cur}
        return self.store.read(read)


def behind(ours: dict[bytes, int], theirs: dict[str, int]) -> tuple[int, int]:
    """(events we lack that the peer held, events the peer lacked that we hold), as last known."""
    theirs_b = {bytes.fromhex(a): s for a, s in theirs.items()}
    we_lack = sum(max(0, s - ours.get(a, 0)) for a, s in theirs_b.items())
    they_lack = sum(max(0, s - theirs_b.get(a, 0)) for a, s in ours.items())
    return we_lack, they_lack
