"""Property test: a rogue peer (tests/helpers/rogue.py) says whatever hypothesis draws to a real daemon pair.

The honest laptop runs `agentlog serve` listening on 127.0.0.1; the honest phone runs
`agentlog serve` dialing it. The rogue, an enrolled device played by this process, connects to
the laptop and sends a drawn session: protocol messages in any order with fields at the edges
of their ranges, its own events with bent headers and payloads, honest events replayed or
altered, and a little frame-level abuse.

The invariant, checked after every example:

- both daemons are still running;
- every line either daemon wrote to stderr is one JSON object of at most MAX_LOG_LINE bytes;
- an event written on each honest device reaches the other, and the two then hold the same
  events and byte-identical view digests (the rogue's valid events may be among them);
- a third honest device, the tablet, syncs once with the laptop (what `agentlog sync` does) and
  then holds the laptop's events and view digests;
- `verify_store` finds no problem in either honest store;
- the laptop never dropped its link to the phone.

One daemon pair serves every example of a test; it is rebuilt from scratch only after an example
broke the invariant, so that each failing example runs on a fresh pair. A failure prints the
drawn `Session` and what the rogue saw; running the test again replays it first (hypothesis keeps
it in its example database). AGENTLOG_ROGUE_SHRINK=1 shrinks it to a minimal one (minutes), and
AGENTLOG_ROGUE_SCALE=20 draws twenty times as many examples. Each fault found is kept below as a
`KNOWN_FAULTS` session, marked xfail (as is the property test that meets it) until it is fixed,
then listed in `FIXED` and kept as a regression test.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from agentlog import crypto
from agentlog.crypto import DeviceKey
from agentlog.errors import AgentlogError, PeerError
from agentlog.log import payloads
from agentlog.store import home
from agentlog.store.verify import verify_store
from agentlog.sync.replicator import sync_once
from tests.helpers import rogue
from tests.helpers.daemons import Daemon, converged, end_all, provision, wait_converged, wait_until

MAX_LOG_LINE = 8192            # bytes: a daemon's log line never carries a peer's text in full
HONEST_TIMEOUT = 20.0          # seconds for an honest event to cross, once the rogue hung up
MAX_HONEST_REPLAYS = 50

pytestmark = pytest.mark.slow


@dataclass
class Pair:
    """The honest daemon pair and the rogue's credentials, as built by `provision`."""

    homes: dict[str, Path]
    laptop: Daemon
    phone: Daemon
    rogue: DeviceKey
    group_key: bytes
    writes: int = 0


class World:
    """A daemon pair reused across a test's examples, rebuilt after an example broke the invariant."""

    def __init__(self, root: Path):
        self.root, self.rebuilds, self.registry = root, 0, []
        self.pair: Pair | None = None

    def get(self) -> Pair:
        if self.pair is None:
            self.rebuilds += 1
            self.pair = _pair(self.root / f"pair{self.rebuilds}", self.registry)
        return self.pair

    def broken(self) -> None:
        for daemon in self.registry:
            daemon.cleanup()
        self.pair = None


def _pair(root: Path, registry: list) -> Pair:
    homes = provision(root, "laptop", "phone", "rogue", "tablet")
    laptop = Daemon(homes["laptop"], registry=registry).start()
    phone = Daemon(homes["phone"], listen=False, peers=(laptop.address,), registry=registry).start()
    wait_converged(homes["laptop"], homes["phone"], count=4)
    with home.open_home(homes["rogue"]) as store:
        return Pair(homes, laptop, phone, store.key, store.meta("group_key"))


def _context(pair: Pair) -> rogue.Context:
    """The rogue's view of the world now: keys, the laptop's events, its own chain's head there."""
    with home.open_home(pair.homes["laptop"]) as laptop, home.open_home(pair.homes["rogue"]) as mine:
        events = list(laptop.events())
        head = laptop.heads().get(pair.rogue.public)
        keys = {
            "laptop": laptop.device,
            "phone": next(iter(set(laptop.frontier()) - {laptop.device, pair.rogue.public}), bytes(32)),
        }
        anchor, group = mine.anchor()[0], mine.group
        heads = {a: (h.epoch, h.seq, h.id) for a, h in laptop.heads().items()}
        roster = laptop.roster().to_bytes()
    stranger = DeviceKey(crypto.blake2b256(b"stranger"))
    keys.update(rogue=pair.rogue.public, stranger=stranger.public, zero=bytes(32), ones=b"\xff" * 32)
    lamport = min(max(e.header.lamport for e in events), 2**64 - 2)
    return rogue.Context(keys, pair.rogue, stranger, group, anchor, events[:MAX_HONEST_REPLAYS],
                         (head.seq, head.id, lamport) if head else (0, crypto.ZERO_ID, lamport), heads, roster,
                         head.epoch if head else 0)


class Broken(AssertionError):
    """The invariant does not hold after an example."""


def _check_invariant(pair: Pair, seen: list[str]) -> None:
    """Every part of the invariant, in order; one failure is raised from one place, so that hypothesis
    takes the same fault showing as two symptoms (timing decides which comes first) for one."""
    problem = None
    try:
        for check in (_alive, _logs_are_json_lines, _honest_writes_cross, _tablet_syncs, _verified, _link_kept):
            check(pair)
    except (AssertionError, AgentlogError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise Broken(f"{problem}\nthe rogue saw: {seen}")


def _alive(pair: Pair) -> None:
    for daemon in (pair.laptop, pair.phone):
        assert daemon.running(), (f"the {daemon.name}'s daemon exited {daemon.proc.returncode}; its log ends:\n"
                                  + "\n".join(daemon.lines()[-20:]))


def _logs_are_json_lines(pair: Pair) -> None:
    for daemon in (pair.laptop, pair.phone):
        for line in daemon.lines():
            too_long = f"the {daemon.name} logged a line of {len(line)} chars: {line[:300]}"
            assert len(line.encode()) <= MAX_LOG_LINE, too_long
            assert isinstance(json.loads(line), dict), f"the {daemon.name} logged a line that is not JSON: {line[:300]}"


def _verified(pair: Pair) -> None:
    """verify passes on both honest stores, but for payloads the rogue withheld of its own events: no one
    else ever held them, so they stay missing, and verify rightly says so."""
    for name in ("laptop", "phone"):
        with home.open_home(pair.homes[name]) as store:
            report = verify_store(store, jobs=1)
        honest_withheld = [p for p in report.withheld if p.author != pair.rogue.public]
        found = [p.what for p in [*report.problems, *honest_withheld]][:5] + report.damage[:5]
        problems = report.problems or report.damage or honest_withheld
        assert not problems, f"verify finds problems on the {name}: {found}"


def _link_kept(pair: Pair) -> None:
    dropped = [e for e in pair.laptop.logs() if e.get("event") == "connection closed" and e.get("peer") == "phone"]
    assert not dropped, f"the laptop dropped its link to the phone: {dropped[:2]}"


def _honest_writes_cross(pair: Pair) -> None:
    written = {}
    for name in ("laptop", "phone"):
        pair.writes += 1
        with home.open_home(pair.homes[name]) as store:
            written[name] = store.append(payloads.Observation(setting="honest", value=f"{name} {pair.writes}"))
    try:
        for writer, reader in (("laptop", "phone"), ("phone", "laptop")):
            def arrived(path=pair.homes[reader], eid=written[writer]):
                with home.open_home(path) as store:
                    return store.get(eid) is not None
            wait_until(arrived, f"an event written on the {writer} reaches the {reader}", HONEST_TIMEOUT)
        wait_converged(pair.homes["laptop"], pair.homes["phone"], timeout=HONEST_TIMEOUT)
    except AssertionError as exc:
        logs = {d.name: d.lines()[-8:] for d in (pair.laptop, pair.phone)}
        raise AssertionError(f"{exc}; the daemons' logs end:\n" + json.dumps(logs, indent=1)[:6000]) from None


def _tablet_syncs(pair: Pair) -> None:
    """A third honest device (never served) syncs once with the laptop, as `agentlog sync` does, and ends
    with the laptop's events and view digests."""
    with home.open_home(pair.homes["tablet"]) as store:
        try:
            result = trio.run(partial(sync_once, store, pair.laptop.address, timeout=HONEST_TIMEOUT))
        except PeerError as exc:
            raise AssertionError(f"the tablet's sync with the laptop failed: {exc}") from None
    assert not result.error, f"the tablet's sync with the laptop failed: {result.reason}"
    assert converged(pair.homes["laptop"], pair.homes["tablet"]), "the tablet synced but differs from the laptop"


def _play(world: World, session: rogue.Session) -> None:
    """One example: run the rogue's session against the laptop, then check the invariant."""
    pair = world.get()
    ctx = _context(pair)
    sent, release, outcome = threading.Event(), threading.Event(), {}

    def run() -> None:
        try:
            outcome["seen"] = trio.run(rogue.run_session, session, ctx, "127.0.0.1", pair.laptop.port, pair.group_key,
                                       sent, release)
        except BaseException as exc:       # noqa: BLE001 (handed to the test's thread)
            outcome["error"] = exc
            sent.set()

    rogue_thread = threading.Thread(target=run, name="rogue")
    rogue_thread.start()
    try:
        sent.wait(HONEST_TIMEOUT * 3)
        if session.linger == "close":
            rogue_thread.join()
        if "error" in outcome:
            raise outcome["error"]
        if currently_in_test_context():
            event(f"the rogue's events stored: {'some' if _context(pair).head[0] > ctx.head[0] else 'none'}")
        _check_invariant(pair, outcome.get("seen", ["(the rogue still holds its connection)"]))
    except BaseException:
        world.broken()
        raise
    finally:
        release.set()
        rogue_thread.join()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    try:
        yield w
    finally:
        end_all(w.registry)


SCALE = float(os.environ.get("AGENTLOG_ROGUE_SCALE", "1"))
"""Multiplies every test's number of examples: set it to 20 to search longer than `make test` does."""
SHRINK = os.environ.get("AGENTLOG_ROGUE_SHRINK") == "1"
"""Shrink a failing example to a minimal one (minutes: every failing attempt rebuilds the daemon pair);
`make test` reports the example as drawn, which hypothesis's database replays first on the next run."""
SETTINGS = dict(deadline=None, phases=tuple(p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


def _xfail(why: str):
    return pytest.mark.xfail(reason=f"issue 14: {why}", strict=False)


SESSIONS = [
    # what the rogue says: its strategy, or a pytest.param of it marked with the known fault it meets
    pytest.param(rogue.message_sessions, id="messages"),
    pytest.param(rogue.event_sessions, id="events"),
    pytest.param(rogue.snapshot_sessions, id="snapshots"),
    pytest.param(rogue.frame_sessions, id="frames"),
]


@pytest.mark.parametrize("sessions", SESSIONS)
@settings(max_examples=round(30 * SCALE), **SETTINGS)
@given(data=st.data())
def test_a_rogue_peer_leaves_the_honest_pair_converging(world, sessions, data):
    _play(world, data.draw(sessions, label="session"))


def _batch(*events: rogue.RogueEvent) -> rogue.Session:
    return rogue.Session(rogue.Hello(), (rogue.Msg("events", (("batch", rogue.Sym("batch")), ("events", events))),))


KNOWN_FAULTS = {
    # name: (the minimal session hypothesis found, what broke and where); FIXED ones are regression tests
    "peer text logged whole": (
        rogue.Session(rogue.Hello(), (rogue.Msg("goodbye", (("reason", rogue.Big("é", 5000)),)),)),
        "a goodbye's (or error's) text is logged whole: a 30 KB log line (protocol.Connection.receive "
        "puts the peer's text in the Close reason, replicator.Link._close logs it)"),
    "lamport at 2^64-1": (
        _batch(rogue.RogueEvent(lamport=2**64 - 1)),
        "the laptop stores a rogue event with lamport 2^64-1; its own next append needs lamport 2^64, which "
        "its header encoder refuses (ValueError): the laptop can no longer write (event.py/validate.py ranges)"),
    "negative time": (
        _batch(rogue.RogueEvent(time_ms=-1)),
        "the laptop's daemon exits 1 with a traceback: an observation at time -1 ms reaches pref_view."
        "_evidence_key, whose u64 pack raises struct.error inside the ingest (the time range is not checked)"),
    "bad signature inside a run": (
        _batch(rogue.RogueEvent(signer="garbage"), rogue.RogueEvent()),
        "a batch checks only the signature of each author's last event, so the rogue's seq 1 with a zeroed "
        "signature is stored (and relayed); `agentlog verify` then fails on every honest store, and a later "
        "second seq 1 records a fork proof verify rejects as unsigned (store.ingest, peer_log.StoreLog)"),
    "forged snapshot installed": (
        rogue.Session(rogue.Hello(truncated=rogue.Entries((("rogue", 0, 1, None),))),
                      (rogue.Offer(cover=(("phone", 3),)),)),
        "the rogue claims a truncation point for itself, the laptop asks for its snapshot and "
        "compaction.bootstrap installs one the rogue signed, covering the phone 3 events past its head: "
        "the phone's later events are refused, the phone and the tablet then refuse or copy the forgery"),
    "a device revoking itself": (
        _batch(rogue.RogueEvent(kind="device.revoke", payload=("device.revoke", (
            ("device", rogue.Key("rogue")), ("untilSeq", 0), ("reason", ""))))),
        "the laptop stores the rogue's revocation of itself, which lies past the cut it names; peers never send "
        "events past a revoked device's cut, so the phone never learns of the revocation and refuses the "
        "laptop's next event, whose clock follows it, for good (validate.predecode)"),
}


FIXED = {"peer text logged whole", "lamport at 2^64-1", "negative time", "bad signature inside a run",
         "forged snapshot installed", "a device revoking itself"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=() if name in FIXED else _xfail(why))
                                  for name, (_, why) in KNOWN_FAULTS.items()])
def test_known_fault(world, name):
    """Each fault the property tests found, as the session that shows it: a regression test once fixed."""
    _play(world, KNOWN_FAULTS[name][0])
