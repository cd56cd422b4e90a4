"""`make demo`: one agent's memory on a phone, a laptop and a home hub, with no cloud.

Three homes in a temporary directory, provisioned into one group by the real CLI (`init`, then
`devices invite` and `join CODE` for each new device: docs/pairing.md); each runs a real `agentlog
serve` process on 127.0.0.1. A scripted agent on each device decides from its local view (timed), the user
corrects some decisions, the phone goes offline and learns alone (and sets a device
override) while the laptop and the hub keep learning, then the phone reconnects and all
three converge. Then an audit summary from `status --json`, `log --json` and
`verify --json`, compaction and a new tablet, and, away from home, the phone and the laptop,
never up at the same time, converging through a blind relay: a real nats-server
(tools/demo_relay.py; skipped with a message when nats-server is not installed).

Exit status 0 when the three devices converged (same events, same view digests), 1 when
they did not (naming what differs) or a step failed. Every daemon is stopped by its PID in
a `finally` (SIGTERM, then SIGKILL after a timeout), also on Ctrl-C or SIGTERM.

    python tools/demo.py [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import agentlog

NAMES = ("laptop", "phone", "hub")                 # table column order
KINDS = ("device.enroll", "observation", "decision", "correction", "override.set", "memory.put", "memory.update")
BIRTHDAY = "Anna's birthday is "
TOOLS = Path(__file__).resolve().parent     # demo_relay.py and natslib.py beside this file


@dataclass(frozen=True)
class Timings:
    heartbeat: float      # `agentlog serve --heartbeat`
    deadline: float       # the longest a daemon's start or an event's trip may take before the demo gives up
    converge: float       # the longest the devices may take to converge before the demo gives up
    rounds: int           # how many rounds the laptop and hub keep learning while the phone is offline
    pause: float          # seconds between those rounds


NORMAL = Timings(heartbeat=1.0, deadline=20.0, converge=20.0, rounds=6, pause=0.25)
QUICK = Timings(heartbeat=0.5, deadline=30.0, converge=15.0, rounds=2, pause=0.02)


class DemoError(Exception):
    """A step failed or the devices did not converge: the demo ends with exit status 1."""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}


def cli(home: Path, *args: str) -> str:
    """Run `agentlog --home HOME ARGS...` as its own process; its stdout, or DemoError naming the step."""
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(home), *args], capture_output=True,
                          text=True, env=_env(), timeout=60, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise DemoError(f"`agentlog --home {home.name} {' '.join(args)}` exited {proc.returncode}: "
                        f"{proc.stderr.strip()[-400:]}")
    return proc.stdout.strip()


def say(line: str = "") -> None:
    print(line, flush=True)


WATCHED: list[Daemon] = []      # the demo's daemons: a wait fails at once if one of them dies


def wait_for(check, what: str, deadline: float, interval: float = 0.002):
    """Poll `check` until it returns something truthy (returned); DemoError naming `what` at the
    deadline, or at once if a daemon exited by itself."""
    end = time.monotonic() + deadline
    while True:
        for daemon in WATCHED:
            daemon.check_alive()
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            raise DemoError(f"not within {deadline:g} s: {what}")
        time.sleep(interval)


# -- the daemons ---------------------------------------------------------------------------

class Daemon:
    """One `agentlog serve` process on a home; its JSON log lines go to a file beside the home."""

    def __init__(self, home: Path, *, listen: bool, peers: list[str], heartbeat: float):
        self.home, self.listen, self.peers, self.heartbeat = home, listen, peers, heartbeat
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.log_path: Path | None = None
        self.stopping = False       # set by stop(): its exit is expected

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline: float) -> Daemon:
        self.starts += 1
        self.stopping = False
        self.log_path = self.home.parent / f"{self.name}.serve.{self.starts}.log"
        args = [sys.executable, "-m", "agentlog", "--home", str(self.home), "serve", "--heartbeat", str(self.heartbeat)]
        if self.listen:
            args += ["--listen", "127.0.0.1:0"]
        for peer in self.peers:
            args += ["--peer", peer]
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         env=_env())
        serving = self.wait_log(lambda e: e.get("event") == "serving", "its 'serving' log line", deadline)
        self.port = serving.get("port") if self.listen else None
        if self.listen and not isinstance(self.port, int):
            raise DemoError(f"{self.name}'s daemon logged no port: {serving}")
        return self

    def logs(self) -> list[dict]:
        if self.log_path is None:
            return []
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "<not json>", "line": line})
        return out

    def wait_log(self, match, what: str, deadline: float) -> dict:
        return wait_for(
            lambda: next((e for e in self.logs() if match(e)), None),
            f"{self.name}'s daemon logs {what}",
            deadline,
            0.01,
        )

    def connected_to(self) -> set[str]:
        """The addresses this run of the daemon has logged a connection with."""
        return {e.get("address") for e in self.logs() if e.get("event") == "connected"}

    def check_alive(self) -> None:
        """DemoError if this daemon has exited by itself, with the last lines of its log."""
        if self.proc is not None and not self.stopping and self.proc.poll() is not None:
            tail = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines()[-3:]]
            raise DemoError(f"{self.name}'s daemon (pid {self.pid}) exited {self.proc.returncode} by itself: "
                            + " | ".join(tail))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM by PID and wait; SIGKILL if it has not exited within `timeout`. Returns the exit status."""
        if self.proc is None:
            return 0
        self.stopping = True
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            self.proc.kill()
            return self.proc.wait()


# -- the scripted agent ----------------------------------------------------------------------

class Agent:
    """The agent on one device: reads that device's views in-process (beside its daemon) and writes
    what it decides and what the user does through the Python API."""

    def __init__(self, name: str, home: Path):
        self.name, self.home = name, home
        self.store = agentlog.open(home)

    def lookup(self, setting: str, context: dict | None = None):
        """The local view's answer and how long the lookup took, in microseconds."""
        start = time.perf_counter_ns()
        answer = self.store.prefs.get(setting, context).answer
        return answer, (time.perf_counter_ns() - start) / 1000

    def decide(self, setting: str, fallback: str, *, context: dict | None = None, confidence: float = 0.8,
               note: str = "") -> bytes:
        answer, micros = self.lookup(setting, context)
        value = answer.value or fallback
        why = {"default": "nothing known yet: its own default", "override": "this device's override",
               "explicit": "stated by the user"}.get(answer.source, f"learned, confidence {answer.confidence:.2f}")
        where = f" ({', '.join(f'{k}={v}' for k, v in context.items())})" if context else ""
        say(f"  {self.name:<7} decided {setting}={value}{where} in {micros:.0f} µs from the local view ({note or why})")
        return self.store.prefs.decide(setting, value, confidence, context)

    def correct(self, decision: bytes, value: str) -> bytes:
        say(f"  {'':<7} the user corrects it: {value}")
        return self.store.prefs.correct(decision, value)

    def observe(
        self, setting: str, value: str, context: dict | None = None, times: int = 1, say_it: bool = True
    ) -> None:
        for _ in range(times):
            self.store.prefs.observe(setting, value, context)
        if say_it:
            where = f" ({', '.join(f'{k}={v}' for k, v in context.items())})" if context else ""
            say(f"  {self.name:<7} sees the user choose {setting}={value}{where}" + (f" x{times}" if times > 1 else ""))

    def snapshot(self) -> dict:
        return {"frontier": self.store.frontier(), "events": self.store.count(),
                "views": {name: v["digest"] for name, v in self.store.views().items()}}

    def beliefs(self, memory_id: bytes) -> dict[str, str]:
        """What this device believes now: a few settings (* marks its own override) and the birthday memory."""
        out = {}
        for label, setting, context in (
            ("ui.theme by day", "ui.theme", {"daypart": "day"}),
            ("ui.font", "ui.font", None),
            ("units", "units", None),
            ("audio.volume", "audio.volume", None),
        ):
            answer, _ = self.lookup(setting, context)
            out[label] = (answer.value or "-") + ("*" if answer.source == "override" else "")
        entry = self.store.memory.get(memory_id)
        out["Anna's birthday"] = entry.content.removeprefix(BIRTHDAY) + ("!" if entry.conflicts else "")
        return out

    def close(self) -> None:
        self.store.close()


def until_has(reader: Agent, writer: Agent, timeout: float) -> float:
    """Wait until `reader`'s store holds everything `writer` wrote; the time it took, in ms."""
    start = time.perf_counter()
    mine = writer.store.frontier()[writer.store.device]
    wait_for(lambda: reader.store.frontier().get(writer.store.device, 0) >= mine,
             f"the {reader.name} receives the {writer.name}'s events", timeout)
    return (time.perf_counter() - start) * 1000


def differences(agents: list[Agent]) -> list[str]:
    """What differs between the devices' snapshots (empty when they converged)."""
    snaps = {a.name: a.snapshot() for a in agents}
    first_name, first = next(iter(snaps.items()))
    out = []
    for name, snap in snaps.items():
        if snap["frontier"] != first["frontier"]:
            out.append(f"{name} holds {snap['events']} events, {first_name} {first['events']}")
        for view, digest in snap["views"].items():
            if digest != first["views"].get(view):
                theirs = first["views"].get(view, b"").hex()[:16]
                out.append(f"view {view}: {name} {digest.hex()[:16]}, {first_name} {theirs}")
    return out


def wait_converged(agents: list[Agent], deadline: float) -> float:
    """Seconds until every device holds the same events and view digests; DemoError naming what differs."""
    start = time.monotonic()
    end = start + deadline
    while True:
        diff = differences(agents)
        if not diff:
            return time.monotonic() - start
        if time.monotonic() > end:
            raise DemoError(f"the devices did not converge within {deadline:g} s: " + "; ".join(diff))
        time.sleep(0.005)


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        say(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# -- the story -----------------------------------------------------------------------------

def provision(root: Path) -> dict[str, Path]:
    homes = {name: root / name for name in NAMES}
    say("1. Pairing, with the real CLI: the laptop starts a group and invites the hub and the phone with a")
    say("   one-time code each (docs/pairing.md).")
    say("  $ agentlog --home laptop init --name laptop")
    say("    " + cli(homes["laptop"], "init", "--name", "laptop"))
    with ThreadPoolExecutor(2) as pool:               # two invites pending at once, each with its own code
        paired = dict(zip(("hub", "phone"), pool.map(lambda name: pair(homes["laptop"], homes[name], name),
                                                     ("hub", "phone"))))
    for name, (code, address, joined) in paired.items():
        if name == "hub":
            say(f"  $ agentlog --home laptop devices invite --name hub    # prints code {code}, listens on {address}")
            say(f"  $ agentlog --home hub join {code} --to {address}")
            say(f"    {joined}")
        else:
            say(f"  the same two commands for the phone: {joined}")
    return homes


def pair(inviter: Path, new: Path, name: str) -> tuple[str, str, str]:
    """`devices invite` on the inviter (no `serve` runs yet, so it listens itself) and `join CODE --to` on the new
    home: (the code, the address, join's first line)."""
    proc = subprocess.Popen([sys.executable, "-m", "agentlog", "--home", str(inviter), "devices", "invite", "--name",
                             name, "--listen", "127.0.0.1:0", "--no-discovery", "--json"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        if ready.get("event") != "ready":
            raise DemoError(f"`devices invite --name {name}` printed no code: {proc.stderr.read()[-400:]}")
        joined = cli(new, "join", ready["code"], "--to", ready["address"])
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise DemoError(f"`devices invite --name {name}` exited {proc.returncode}: {err.strip()[-400:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return ready["code"], ready["address"], joined.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings (for the test)")
    parser.add_argument("--keep", action="store_true", help="keep the homes and daemon logs (their path is printed)")
    args = parser.parse_args(argv)
    timings = QUICK if args.quick else NORMAL
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="agentlog-demo-"))
    daemons = WATCHED               # every daemon the story starts: watched by each wait, stopped at the end
    daemons.clear()
    agents: list[Agent] = []
    failure: str | None = None
    try:
        say("agentlog demo: one agent's memory on a phone, a laptop and a home hub; no cloud.")
        say(f"Each device is a home under {root} and a real `agentlog serve` on 127.0.0.1.\n")
        story(root, timings, daemons, agents)
    except DemoError as exc:
        failure = str(exc)
    finally:
        for agent in agents:
            agent.close()
        stopped = [f"{d.name} (pid {d.pid}) exit {d.stop()}" for d in daemons if d.running()]
        if stopped:
            say("\ndaemons stopped: " + ", ".join(stopped))
        if args.keep:
            say(f"homes and daemon logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    if failure is not None:
        say(f"demo: FAILED after {elapsed:.1f} s: {failure}")
        return 1
    say(f"demo: ok, {elapsed:.1f} s")
    return 0


def story(root: Path, t: Timings, daemons: list[Daemon], agents: list[Agent]) -> None:
    homes = provision(root)

    say("\n2. Each device runs `agentlog serve`. The laptop and the hub listen; the hub dials the laptop; the")
    say("   phone only dials out (to both), as a phone behind a carrier's NAT would: a triangle.")
    laptop_d = Daemon(homes["laptop"], listen=True, peers=[], heartbeat=t.heartbeat)
    daemons.append(laptop_d)
    laptop_d.start(t.deadline)
    hub_d = Daemon(homes["hub"], listen=True, peers=[laptop_d.address], heartbeat=t.heartbeat)
    daemons.append(hub_d)
    hub_d.start(t.deadline)
    laptop, phone, hub = (Agent(name, homes[name]) for name in ("laptop", "phone", "hub"))
    agents += [laptop, phone, hub]
    until_has(hub, laptop, t.deadline)              # the hub learns of the phone's enrolment before the phone dials it
    # The phone holds only its own enrolment (from its token) and would refuse the hub, which the
    # laptop enrolled before it; one `sync` with the laptop first teaches it the whole roster.
    cli(homes["phone"], "sync", laptop_d.address)
    phone_d = Daemon(homes["phone"], listen=False, peers=[laptop_d.address, hub_d.address], heartbeat=t.heartbeat)
    daemons.append(phone_d)
    phone_d.start(t.deadline)
    say(f"  laptop  pid {laptop_d.pid}  listens on {laptop_d.address}")
    say(f"  hub     pid {hub_d.pid}  listens on {hub_d.address}, dials the laptop")
    say(f"  phone   pid {phone_d.pid}  dials the laptop and the hub")
    say("  (the phone first ran `agentlog sync` once with the laptop: it must know the hub's enrolment to accept it)")
    wait_for(
        lambda: phone_d.connected_to() >= {laptop_d.address, hub_d.address},
        "the phone connects to the laptop and the hub",
        t.deadline,
        0.01,
    )
    wait_converged(agents, t.converge)
    say(
        f"  all three connected; each holds the same {laptop.store.count()} events"
        " (the group's founding and two enrolments)"
    )

    say("\n3. The agents learn. Each decides from its own device's view: no network on that path.")
    phone.observe("ui.theme", "dark", {"daypart": "night"}, times=2)
    font = phone.decide("ui.font", "medium")
    phone.correct(font, "large")
    laptop.observe("ui.theme", "light", {"daypart": "day"}, times=2)
    laptop.decide("units", "metric", confidence=0.6)
    volume = hub.decide("audio.volume", "40")
    hub.correct(volume, "25")
    memory_id = laptop.store.memory.put(BIRTHDAY + "3 May", type="fact", tags=["family"])
    say(f"  laptop  remembers \"{BIRTHDAY}3 May\"")
    seconds = wait_converged(agents, t.converge)
    say(f"  every device holds all of it {seconds * 1000:.0f} ms later; so, on the laptop:")
    laptop.decide("ui.font", "medium", note="the phone's correction, already here")

    say("\n4. The phone goes offline and keeps learning on its own.")
    pid = phone_d.pid
    code = phone_d.stop()
    say(f"  phone's daemon (pid {pid}) stopped by SIGTERM, exit {code}")
    phone.observe("units", "imperial", times=2)
    phone.decide("ui.theme", "dark", context={"daypart": "night"})
    cli(homes["phone"], "override", "set", "ui.theme", "dark")
    say("  phone   $ agentlog override set ui.theme dark     # this device only: always dark")
    phone.store.memory.update(memory_id, content=BIRTHDAY + "5 May")
    phone.store.memory.put("Parked on level 2, spot 14", type="context", tags=["car"])
    say(f"  phone   edits the memory: \"{BIRTHDAY}5 May\", and remembers \"Parked on level 2, spot 14\"")
    say("  Meanwhile the laptop and the hub keep learning and syncing with each other:")
    font = laptop.decide("ui.font", "medium")
    laptop.correct(font, "x-large")
    say(f"  {'':<7} (on the hub {until_has(hub, laptop, t.deadline):.0f} ms later)")
    volume = hub.decide("audio.volume", "40")
    hub.correct(volume, "20")
    say(f"  {'':<7} (on the laptop {until_has(laptop, hub, t.deadline):.0f} ms later)")
    laptop.store.memory.update(memory_id, content=BIRTHDAY + "4 May")
    say(f"  laptop  edits the same memory: \"{BIRTHDAY}4 May\"")
    trips = []
    for i in range(t.rounds):
        time.sleep(t.pause)
        writer, reader = (laptop, hub) if i % 2 == 0 else (hub, laptop)
        writer.observe("ui.theme", "light", {"daypart": "day"}, say_it=False)
        trips.append(until_has(reader, writer, t.deadline))
    if trips:
        say(f"  ...and {t.rounds} more observations of ui.theme=light by day, each on the other device "
            f"{min(trips):.0f}–{max(trips):.0f} ms later")
    wait_for(lambda: getattr(laptop.store.peer_book.states().get(phone.store.device), "state", None) == "partitioned",
             "the laptop's status shows the phone partitioned", t.deadline, 0.05)
    say("  the laptop's `agentlog status`: peer phone partitioned, peer hub connected")
    wait_converged([laptop, hub], t.converge)
    before = {a.name: a.beliefs(memory_id) for a in agents}
    digests_before = {a.name: a.snapshot()["views"] for a in agents}

    say("\n5. The phone comes back: its daemon starts again and dials the laptop and the hub.")
    phone_d.start(t.deadline)
    seconds = wait_converged(agents, t.converge)
    say(f"  phone   pid {phone_d.pid}; the three devices converged {seconds * 1000:.0f} ms after it started")
    after = {a.name: a.beliefs(memory_id) for a in agents}
    rows = [[label] + [_change(before[n][label], after[n][label]) for n in NAMES] for label in before["laptop"]]
    say("  What each device believed while the phone was offline → after it reconnected:")
    table(["", *NAMES], rows, "    ")
    say("    (* this device's own override, which stays on the phone; ! concurrent edits, both kept)")
    snaps = {a.name: a.snapshot() for a in agents}
    say("  View digests (first 8 hex digits) while the phone was offline → after it reconnected:")
    table(["", *NAMES], [[view] + [_change(digests_before[n][view].hex()[:8], snaps[n]["views"][view].hex()[:8])
                                   for n in NAMES] for view in snaps["laptop"]["views"]], "    ")
    say(f"  converged: all three hold the same {snaps['laptop']['events']} events and the same "
        f"{', '.join(snaps['laptop']['views'])} view digests")
    conflicts = {a.name: [(e.id, sorted(e.conflicts)) for e in a.store.memory.conflicts()] for a in agents}
    if len({repr(c) for c in conflicts.values()}) != 1:
        raise DemoError(f"the devices list different memory conflicts: {conflicts}")
    say("  `agentlog memory conflicts`, alike on every device:")
    for line in cli(homes["hub"], "memory", "conflicts").splitlines():
        say("    " + re.sub(r", event [0-9a-f]+$", "", line.rstrip()))
    hits = laptop.store.memory.search("where did I park the car", k=1).hits
    if hits:
        say(f"  the laptop's agent, asked where the car is: \"{hits[0].entry.content}\" (learned on the offline phone)")

    audit(homes, agents, t)
    compaction(root, homes, laptop_d, agents)
    if str(TOOLS) not in sys.path:          # loaded by path (tests/system/test_demo.py), not run from tools/
        sys.path.insert(0, str(TOOLS))
    import demo_relay
    demo_relay.chapter(sys.modules[__name__], root, homes, t, daemons, agents)
    for daemon in daemons:
        daemon.check_alive()


def _change(before: str, after: str) -> str:
    return before if before == after else f"{before} → {after}"


def audit(homes: dict[str, Path], agents: list[Agent], t: Timings) -> None:
    wait_for(lambda: all(s.state == "connected" for a in agents for s in a.store.peer_book.states().values())
             and all(len(a.store.peer_book.states()) == 2 for a in agents),
             "every device's status shows its two peers connected", t.deadline, 0.05)
    say("\n6. Audit summary, from `agentlog status --json`, `log --json` and `verify --json` on each device:")
    calls = [(name, what) for name in homes for what in ("log", "status", "verify")]
    with ThreadPoolExecutor(len(calls)) as pool:          # nine CLI processes at once: they only read
        found = dict(zip(calls, pool.map(lambda c: json.loads(cli(homes[c[0]], c[1], "--json")), calls)))
    logs = {name: found[(name, "log")] for name in homes}
    ids = {name: sorted(row["id"] for row in rows) for name, rows in logs.items()}
    if len({tuple(v) for v in ids.values()}) != 1:
        raise DemoError(
            "the devices' logs hold different events: " + ", ".join(f"{n} {len(v)}" for n, v in ids.items())
        )
    by_author = Counter((row["author"], row["kind"]) for row in logs["laptop"])
    say(f"  the same {len(ids['laptop'])} event ids on every device; by author and kind:")
    for name in NAMES:
        kinds = [(k, by_author[(name, k)]) for k in sorted({k for a, k in by_author if a == name},
                                                           key=lambda k: (KINDS.index(k) if k in KINDS else 99, k))]
        total = sum(n for _, n in kinds)
        say(f"    {name:<7}{total:>3}: " + ", ".join(f"{n} {k}" for k, n in kinds))
    for name in homes:
        status, report = found[(name, "status")], found[(name, "verify")]
        forks = "none" if not status["forks"] and not report["forks"] else f"{len(status['forks'])} (!)"
        peers = ", ".join(f"{p['name']} {p['state']}" for p in status["peers"])
        say(f"  {name:<7} {status['events']} events, forks: {forks}, verify: {'OK' if report['ok'] else 'FAILED'} "
            f"({report['checked']} checked); peers: {peers}")
        if not report["ok"] or forks != "none":
            raise DemoError(f"{name}: verify {'OK' if report['ok'] else 'failed'}, forks {forks}")
    export = homes["laptop"].parent / "audit.jsonl"
    done = json.loads(cli(homes["laptop"], "audit", "export", "--out", str(export), "--json"))
    checked = json.loads(cli(homes["laptop"], "audit", "verify", str(export), "--json"))
    say(f"  $ agentlog --home laptop audit export --out audit.jsonl   # {done['events']} events, "
        f"plus audit.html for a person to read")
    say(f"  $ agentlog audit verify audit.jsonl   # {'intact' if checked['ok'] else 'NOT intact'}: "
        f"signatures, chains and completeness checked without the store")
    if not checked["ok"]:
        raise DemoError(f"audit verify found problems: {checked['problems'][:3]}")


def compaction(root: Path, homes: dict[str, Path], laptop_d: Daemon, agents: list[Agent]) -> None:
    """The laptop compacts its log; a new tablet starts from the laptop's snapshot, not the whole history."""
    say("\n7. Compaction and a new device: the laptop snapshots its views and drops what every device has seen;")
    say("   a tablet joining now starts from that snapshot.")
    report = json.loads(cli(homes["laptop"], "compact", "--json"))
    say(f"  $ agentlog --home laptop compact   # snapshot {(report['snapshot'] or 'none')[:16]}: dropped "
        f"{report['dropped']} of {report['events_before']} events, kept {report['events_after']}")
    tablet = root / "tablet"                            # the scripts' path: device id, then join token
    device = cli(tablet, "init", "--name", "tablet", "--join")
    cli(tablet, "devices", "join", cli(homes["laptop"], "devices", "add", device, "--name", "tablet"))
    synced = json.loads(cli(tablet, "sync", laptop_d.address, "--json"))
    status = json.loads(cli(tablet, "status", "--json"))
    laptop = json.loads(cli(homes["laptop"], "status", "--json"))
    how = "from the laptop's snapshot" if synced["bootstrapped"] else "event by event"
    say(f"  $ agentlog --home tablet sync {laptop_d.address}   # started {how}; holds {status['events']} events")
    same = all(status["views"][v]["digest"] == laptop["views"][v]["digest"] for v in ("roster", "pref", "memory"))
    theme = cli(tablet, "pref", "get", "ui.theme", "--context", "daypart=night")
    say(f"  the tablet's views {'equal' if same else 'DIFFER from'} the laptop's; it answers at once: {theme}")
    if report["dropped"] and not synced["bootstrapped"]:
        raise DemoError("the laptop dropped events, but the tablet did not start from its snapshot")
    if not same:
        raise DemoError("the tablet's views differ from the laptop's after it synced")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)     # unwinds through main's `finally`, which stops the daemons


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("demo: interrupted (daemons stopped)", file=sys.stderr)
        sys.exit(130)
