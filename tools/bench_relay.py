"""Relay figures for `make bench` (issue 18): `agentlog serve` processes that meet only through a blind relay
(a real `nats-server -js` on 127.0.0.1, tools/natslib.py), beside the same figures over a direct connection
and the primitives, all in the same run.

Each run starts a new nats-server (its own store directory) and measures:
- catch-up: A's home holds `events` observations; A's daemon starts alone and publishes them (timed until
  it has kept the relay's acknowledgement of them all: upload), stops; then B, holding only the group's first
  events, starts its daemon, which consumes them (timed from spawning it until B's frontier, polled read-only
  here, equals A's). Beside it, tools/bench_replication.py's direct catch-up of the same home by another B;
- idle: a pair of devices that both wrote, both daemons up and in sync through the relay; over `idle`
  seconds, the messages the relay's stream gained (the bar: zero) and every message and byte clients sent
  the server (pull requests, acks and heartbeats included), from its monitoring endpoints (/jsz, /varz);
- live: the same pair; `live` events appended on A by this process one at a time, each timed from the
  append's return until B holds it. Beside it, the direct live push of tools/bench_replication.py;
- fleet: `fleet` devices of one group each write `fleet_events` events with no daemon up, then all their
  daemons start at once; timed until every frontier is equal. Beside it, the same through direct
  connections, every device dialing the first.
Primitives: Ed25519 sign and verify, XChaCha20-Poly1305 seal and open, durable LMDB put.
Run alone: `python tools/bench_relay.py [--quick] [--runs N]`.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_replication
import benchlib
import natslib
from bench_replication import Daemon, Heads, stop_all, wait_until, write

from agentlog.relay.config import RelayConfig
from agentlog.store import devices, home
from agentlog.sync.relay_log import CURSOR_META

CATCH_UP_POLL_S = 0.002     # B's frontier is read this often during a catch-up: at 50 µs this process took 1-2 s of
                            # CPU from the 2 cores B's daemon and the relay share (0.2 s at 2 ms), for no precision
                            # a catch-up of seconds needs


@dataclass(frozen=True)
class RelaySizes:
    events: int = 100_000           # caught up through the relay
    batch: int = 1_000
    live: int = 500                 # events pushed one at a time
    idle: float = 10.0              # seconds in sync, counted
    fleet: int = 20                 # devices of one group
    fleet_events: int = 200         # events each of them writes
    heartbeats: int = 25            # the direct pair's idle intervals (bench_replication)


QUICK = RelaySizes(events=10_000, live=100, idle=3.0, fleet=5, fleet_events=50, heartbeats=10)

FIGURES = (
    *benchlib.primitives("sign", "verify"),
    *benchlib.AEAD_FIGURES,
    *benchlib.primitives("lmdb_put", "lmdb_put_p50"),
    ("rly_upload", "publish {rly_events} events to the relay, A's daemon started", "events/s"),
    ("rly_catchup", "catch-up of {rly_events} events through the relay, B's daemon started", "events/s"),
    ("rly_direct_catchup", "the same catch-up over a direct connection", "events/s"),
    ("rly_live_p50", "live through the relay p50, committed on A to held by B", "ms"),
    ("rly_live_p99", "live through the relay p99", "ms"),
    ("rly_direct_live_p50", "live over a direct connection p50", "ms"),
    ("rly_direct_live_p99", "live over a direct connection p99", "ms"),
    ("rly_idle_published", "messages the relay stored while idle in sync, {rly_idle} s", "msgs"),
    ("rly_idle_client_msgs", "client messages to the server while idle (publishes, acks)", "msgs/s"),
    ("rly_idle_client_bytes", "client bytes to the server while idle", "B/s"),
    ("rly_fleet", "{rly_fleet} devices x {rly_fleet_events} events all equal, through the relay", "s"),
    ("rly_direct_fleet", "the same, every device dialing the first", "s"),
)
RATIOS = {"rly_catchup": ("verify", "aead_open"), "rly_direct_catchup": ("verify",),
          "rly_upload": ("sign", "aead_seal"),
          "rly_live_p50": ("rly_direct_live_p50", "lmdb_put_p50"), "rly_fleet": ("rly_direct_fleet",)}
TARGETS = {"rly_live_p50": ("<=", 5.0), "rly_live_p99": ("<=", 20.0), "rly_catchup": (">=", 20_000),
           "rly_fleet": ("<=", 20.0), "rly_idle_published": ("<=", 0),
           "rly_direct_catchup": (">=", 50_000), "rly_direct_live_p50": ("<=", 1.5),      # issue 21's
           "rly_direct_live_p99": ("<=", 4.0)}


def cli(path: Path, *args: str) -> str:
    proc = subprocess.run([*bench_replication.agentlog_command(), "--home", str(path), *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"agentlog --home {path.name} {' '.join(args)}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def relay_group(tmp: Path, founder: str, others: list[str], relay: str) -> tuple[Path, list[Path]]:
    """bench_replication.group_of with the relay added by the founder before it enrols the others (so they
    hold the relay key) and by each of them after."""
    with home.create(tmp / founder, founder) as first:
        first.create_group("bench")
    cli(tmp / founder, "peers", "add", relay)
    with home.open_home(tmp / founder) as first:
        for name in others:
            with home.create(tmp / name, name) as store:
                devices.join(store, devices.enroll(first, store.device, name))
                bench_replication.sync(first, store)
    for name in others:
        cli(tmp / name, "peers", "add", relay)
    return tmp / founder, [tmp / name for name in others]


class Published(Heads):
    """What a home's daemon knows the relay to hold (its relay position in `meta`, written in the transaction that
    records each acknowledged publish round), read-only while the daemon runs."""

    def __init__(self, path: Path, url: str):
        super().__init__(path)
        self.db = self.env.open_db(b"meta", create=False)
        self.key = (CURSOR_META + RelayConfig.parse(url).address).encode()

    def frontier(self) -> dict[bytes, int]:
        with self._begin() as txn:
            raw = txn.get(self.key)
        return {bytes.fromhex(a): seq for a, (_, seq) in json.loads(bytes(raw))["has"].items()} if raw else {}


def stored(server: natslib.NatsServer) -> int:
    """Messages the relay holds over all streams (/jsz)."""
    return server.monitor("jsz")["messages"]


def catch_up(server: natslib.NatsServer, a_path: Path, b_path: Path, info: dict) -> dict[str, float]:
    """A's daemon alone publishes its home; then B's daemon alone consumes it."""
    heads = Heads(a_path)
    goal = heads.frontier()
    heads.close()
    with home.open_home(a_path) as a:
        count = a.count()
    published, b_heads = Published(a_path, server.url), Heads(b_path)
    events = sum(goal.values()) - sum(b_heads.frontier().values())
    daemons = []
    try:
        start = time.perf_counter()
        daemons.append(Daemon(a_path))
        up = wait_until(lambda: published.frontier() == goal, 60 + count / 500, daemons, "upload to the relay", 0.02)
        stop_all(daemons)
        start_b = time.perf_counter()
        daemons = [Daemon(b_path)]
        done = wait_until(lambda: b_heads.frontier() == goal, 60 + events / 500, daemons, "catch-up from the relay",
                          CATCH_UP_POLL_S)
        b_cpu = daemons[0].cpu_s()
    finally:
        stop_all(daemons)
        b_heads.close()
        published.close()
    info["catch_up"].append({"events": events, "upload_s": up - start, "catch_up_s": done - start_b, "b_cpu_s": b_cpu,
                             "relay_bytes": server.monitor("jsz")["bytes"]})
    return {"rly_upload": count / (up - start), "rly_catchup": events / (done - start_b)}


def idle_and_live(server: natslib.NatsServer, tmp: Path, sizes: RelaySizes, rng: random.Random,
                  info: dict) -> dict[str, float]:
    """A pair through the relay: idle traffic in sync, then live events one at a time."""
    a_path, (b_path,) = relay_group(tmp, "a", ["b"], server.url)
    write(a_path, sizes.batch, sizes.batch, rng)
    write(b_path, 10, 10, rng)
    daemons, a_heads, b_heads, store = [], Heads(a_path), Heads(b_path), None
    try:
        daemons += [Daemon(a_path), Daemon(b_path)]
        wait_until(lambda: len(f := a_heads.frontier()) >= 2 and f == b_heads.frontier(), 60, daemons,
                   "the pair in sync through the relay", 0.005)
        a_heads.close()
        a_heads = None
        time.sleep(2)                                   # the last acks and publishes settle
        before_j, before_v, began = server.monitor("jsz"), server.monitor("varz"), time.perf_counter()
        time.sleep(sizes.idle)
        after_j, after_v, seconds = server.monitor("jsz"), server.monitor("varz"), time.perf_counter() - began
        out = {"rly_idle_published": after_j["messages"] - before_j["messages"],
               "rly_idle_client_msgs": (after_v["in_msgs"] - before_v["in_msgs"]) / seconds,
               "rly_idle_client_bytes": (after_v["in_bytes"] - before_v["in_bytes"]) / seconds}
        store = home.open_home(a_path)
        author = store.device
        seq = store.heads()[author].seq
        commit_ns = []
        for _ in range(sizes.live):
            time.sleep(rng.uniform(0.005, 0.010))
            seq += 1
            store.append(bench_replication.observation(rng))
            t_commit = time.perf_counter_ns()
            while b_heads.seq(author) < seq:
                if time.perf_counter_ns() - t_commit > 10e9:
                    raise RuntimeError(f"live through the relay: event {seq} not at B within 10 s (the relay holds "
                                       f"{stored(server)} messages, A {seq} events)\n"
                                       + "\n".join(d.tail(4) for d in daemons))
                time.sleep(bench_replication.POLL_S)
            commit_ns.append(time.perf_counter_ns() - t_commit)
    finally:
        if store is not None:
            store.close()
        stop_all(daemons)
        for h in (a_heads, b_heads):
            if h is not None:
                h.close()
    shutil.rmtree(tmp)
    info["live"].append({"max_ms": max(commit_ns) / 1e6})
    return out | {"rly_live_p50": benchlib.percentile(commit_ns, 50) / 1e6,
                  "rly_live_p99": benchlib.percentile(commit_ns, 99) / 1e6}


def fleet(tmp: Path, sizes: RelaySizes, rng: random.Random, relay: natslib.NatsServer | None) -> float:
    """Seconds until `fleet` devices that each wrote `fleet_events` hold the same events, all daemons started
    at once: through the relay, or (relay None) each dialing the first device directly."""
    names = [f"d{i:02}" for i in range(sizes.fleet)]
    if relay is not None:
        first, rest = relay_group(tmp, names[0], names[1:], relay.url)
    else:
        first, rest = bench_replication.group_of(tmp, names[0], names[1:])
    paths = [first, *rest]
    final = dict(write(p, sizes.fleet_events, sizes.fleet_events, rng) for p in paths)
    heads = [Heads(p) for p in paths]
    daemons = []
    try:
        start = time.perf_counter()
        if relay is not None:
            daemons += [Daemon(p) for p in paths]
        else:
            port, = bench_replication.free_ports(1)
            daemons.append(Daemon(first, "--listen", f"127.0.0.1:{port}"))
            daemons += [Daemon(p, "--peer", f"127.0.0.1:{port}") for p in rest]
        try:
            done = wait_until(lambda: all(all(h.seq(a) >= s for a, s in final.items()) for h in heads),
                              120, daemons, "the fleet all equal", 0.01)
        except RuntimeError as exc:
            missing = {p.name: sum(max(0, s - h.seq(a)) for a, s in final.items()) for p, h in zip(paths, heads)}
            held = f"; the relay holds {stored(relay)} messages" if relay is not None else ""
            raise RuntimeError(f"{exc}\nevents each device still lacks: "
                               f"{ {k: v for k, v in missing.items() if v} }{held}") from None
    finally:
        stop_all(daemons)
        for h in heads:
            h.close()
    shutil.rmtree(tmp)
    return done - start


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Build A's home with `runs` pairs of B homes (relay, direct), then `runs` runs; each run on a new
    nats-server. Everything is removed afterwards; every daemon and server is stopped by its pid."""
    rs = QUICK if quick else RelaySizes()
    natslib.binary()
    rng = random.Random(29)
    results = []
    info = {"sizes": rs.__dict__, "catch_up": [], "live": [], "direct": {"catch_up": [], "live": [],
                                                                          "heartbeat": []},
            "load_average": [], "labels": {"rly_events": f"{rs.events:,}", "rly_idle": f"{rs.idle:g}",
                                           "rly_fleet": str(rs.fleet), "rly_fleet_events": str(rs.fleet_events)}}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-relay-") as tmp_name:
        tmp = Path(tmp_name)
        faulthandler.dump_traceback_later(300 + runs * (240 + rs.events / 500), exit=True)
        try:
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                began, work = time.perf_counter(), tmp / f"run{n}"
                out = benchlib.bench_crypto(sizes)
                out.update(benchlib.bench_aead(sizes.signs))
                out["lmdb_put"], out["lmdb_put_p50"] = benchlib.bench_lmdb_put(work / "lmdb", sizes.puts)
                server = natslib.NatsServer(work / "relay").start()
                try:
                    a_path, (b_relay, b_direct) = relay_group(work / "home", "a", ["b_relay", "b_direct"], server.url)
                    cli(b_direct, "peers", "remove", server.url)      # direct alone: it learned the relay on joining
                    write(a_path, rs.events, rs.batch, rng)
                    out.update(catch_up(server, a_path, b_relay, info))
                    direct = bench_replication.catch_up(a_path, b_direct, info["direct"])
                    out["rly_direct_catchup"] = direct["repl_catchup"]
                    out.update(idle_and_live(server, work / "pair", rs, rng, info))
                    replication = bench_replication.ReplSizes(batch=rs.batch, live=rs.live, heartbeats=rs.heartbeats)
                    direct = bench_replication.live_and_heartbeat(work / "pair-direct", replication, rng,
                                                                  benchlib.percentile, info["direct"])
                    out["rly_direct_live_p50"], out["rly_direct_live_p99"] = (direct["repl_live_p50"],
                                                                              direct["repl_live_p99"])
                    out["rly_fleet"] = fleet(work / "fleet", rs, rng, server)
                finally:
                    server.stop()
                out["rly_direct_fleet"] = fleet(work / "fleet-direct", rs, rng, None)
                shutil.rmtree(work)
                results.append(out)
                print(f"relay run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            faulthandler.cancel_dump_traceback_later()
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the relay figures measured, below the table."""
    med = statistics.median
    s, cu = info["sizes"], info["catch_up"]
    print(f"\nrelay figures: {runs} run{'s' * (runs != 1)}, each on a new nats-server -js on 127.0.0.1 (file "
          f"storage), the primitives measured in each; 1-minute load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")
    print(f"- catch-up: A's home holds {s['events']:,} observations; A's daemon alone publishes them (upload, "
          f"{med([c['upload_s'] for c in cu]):.1f} s; the stream then holds "
          f"{med([c['relay_bytes'] for c in cu]) / max(s['events'], 1):.0f} B per event), stops; B's daemon alone "
          f"consumes them, timed from spawning it until its frontier equals A's (read every "
          f"{CATCH_UP_POLL_S * 1e3:g} ms; the direct one's every {bench_replication.POLL_S * 1e6:g} µs); "
          f"B's daemon used "
          f"{med([c['b_cpu_s'] / c['events'] for c in cu]) * 1e6:.0f} µs of CPU per event (all threads, startup "
          f"included; direct: {med([c['b_cpu_s'] / c['events'] for c in info['direct']['catch_up']]) * 1e6:.0f} µs). "
          f"Direct: another B, with the relay it learned on joining removed from its peers, dials A's daemon "
          f"(tools/bench_replication.py)")
    print(f"- idle: the pair in sync through the relay for {s['idle']:g} s: the stream's message count before and "
          f"after (/jsz), and every message clients sent the server (/varz in_msgs, in_bytes: publishes, acks and "
          f"API requests; not pings)")
    print(f"- live: {s['live']:,} events appended on A one at a time, 5-10 ms apart; B's frontier polled every "
          f"~0.13 ms; slowest {max(x['max_ms'] for x in info['live']):.1f} ms. Direct: the same on a pair "
          f"connected directly (tools/bench_replication.py)")
    print(f"- fleet: {s['fleet']} devices each wrote {s['fleet_events']} events with no daemon up, then all "
          f"daemons started at once (Python startup included); direct: every device dials the first one")


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, FIGURES, RATIOS, TARGETS, print_notes,
                              skipped=(natslib.NatsMissing,))


if __name__ == "__main__":
    sys.exit(main())
