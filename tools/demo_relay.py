"""The relay chapter of `make demo` (tools/demo.py): away from home, the phone and the laptop are never up at
the same time and converge through a blind relay, a real `nats-server -js` on 127.0.0.1 (tools/natslib.py),
which holds only ciphertext under keyed names. Skipped, saying so, when nats-server is not installed.

tools/demo.py runs it as a script (`__main__`), so it hands itself over as `demo` rather than be imported
again: one set of daemons watched, one DemoError."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import natslib


def relay_status(demo: ModuleType, path: Path) -> dict:
    """The relay's entry in `agentlog status --json`."""
    peers = [p for p in json.loads(demo.cli(path, "status", "--json"))["peers"] if p.get("kind") == "relay"]
    if len(peers) != 1:
        raise demo.DemoError(f"{path.name}'s status lists {len(peers)} relays")
    return peers[0]


def alone(demo: ModuleType, agent, t, daemons: list, until, what: str) -> None:
    """Start this device's daemon with the relay as its only peer, wait until `until()` holds and the relay has
    everything it holds (status: relay live, lacking nothing of ours), stop it."""
    daemon = demo.Daemon(agent.home, listen=False, peers=[], heartbeat=t.heartbeat)
    daemons.append(daemon)
    started = time.monotonic()
    daemon.start(t.deadline)
    demo.wait_for(until, what, t.converge, 0.01)
    demo.wait_for(lambda: (s := relay_status(demo, agent.home))["state"] == "live" and s["they_lack"] == 0,
                  f"the {agent.name} publishing all it holds to the relay", t.converge, 0.1)
    up = time.monotonic() - started
    pid, code = daemon.pid, daemon.stop()
    daemons.remove(daemon)
    demo.say(f"  {agent.name:<7} daemon (pid {pid}) up {up:.1f} s, the relay its only peer; stopped, exit {code}")


def chapter(demo: ModuleType, root: Path, homes: dict[str, Path], t, daemons: list, agents: list) -> None:
    """Step 8: the relay added at home; then the phone and the laptop, never up at once, meet only there."""
    say = demo.say
    say("\n8. Away from home: a blind relay (NATS JetStream). The phone and the laptop will never be up at the")
    say("   same time again; they meet only through a relay that stores ciphertext under keyed names.")
    try:
        natslib.binary()
    except natslib.NatsMissing as exc:
        say(f"  skipped: {exc}. The demo's other steps ran without it.")
        return
    server = natslib.NatsServer(root / "relay").start()
    try:
        _story(demo, server, homes, t, daemons, {a.name: a for a in agents})
    finally:
        server.stop()
        say(f"  relay (pid {server.pid}) stopped")


def _story(demo: ModuleType, server: natslib.NatsServer, homes: dict[str, Path], t, daemons: list,
           agents: dict) -> None:
    say, cli, wait_for = demo.say, demo.cli, demo.wait_for
    laptop, phone = agents["laptop"], agents["phone"]
    say(f"  nats-server -js (pid {server.pid}) listens on {server.url}, its store under relay/store")
    say(f"  $ agentlog --home laptop peers add {server.url}")
    for line in cli(homes["laptop"], "peers", "add", server.url).strip().splitlines():
        say("    " + line)
    for agent in (phone, agents["hub"]):
        wait_for(lambda a=agent: a.store.frontier().get(laptop.store.device, 0)
                 >= laptop.store.frontier()[laptop.store.device],
                 f"the {agent.name} receives the relay key from the laptop", t.deadline, 0.01)
    say(f"  $ agentlog --home phone peers add {server.url}    # the relay key reached it from the laptop, sealed")
    cli(homes["phone"], "peers", "add", server.url)
    for daemon in list(daemons):
        if daemon.running():
            daemon.stop()
    say("  every daemon stopped: the hub is switched off, the laptop goes to work, the phone on a trip")

    say("  The phone, on the road, alone:")
    phone.observe("ui.theme", "dark", {"daypart": "night"}, times=2)
    hotel = phone.store.memory.put("Hotel Miramar, room 412, breakfast until 10", type="context", tags=["trip"])
    say("  phone   remembers \"Hotel Miramar, room 412, breakfast until 10\"")
    alone(demo, phone, t, daemons, lambda: True, "the phone's daemon")

    say("  The laptop, at work, alone (the phone is off):")
    wanted = phone.store.frontier()
    alone(demo, laptop, t, daemons, lambda: all(laptop.store.frontier().get(a, 0) >= s for a, s in wanted.items()),
          "the laptop receives the phone's events through the relay")
    entry = laptop.store.memory.get(hotel)
    say(f"  laptop  holds the phone's trip note: \"{entry.content}\"")
    laptop.observe("ui.font", "x-large", times=2)
    alone(demo, laptop, t, daemons, lambda: True, "the laptop's daemon")

    say("  The phone again, alone (the laptop is off):")
    wanted = laptop.store.frontier()
    alone(demo, phone, t, daemons, lambda: all(phone.store.frontier().get(a, 0) >= s for a, s in wanted.items()),
          "the phone receives the laptop's events through the relay")
    diff = demo.differences([laptop, phone])
    if diff:
        raise demo.DemoError("the phone and the laptop did not converge through the relay: " + "; ".join(diff))
    say(f"  converged: the phone and the laptop hold the same {phone.store.count()} events and view digests, "
        "never having been up at the same time")
    _what_the_relay_holds(demo, server, list(agents.values()))


def _what_the_relay_holds(demo: ModuleType, server: natslib.NatsServer, agents: list) -> None:
    """What the relay's operator could read: stream names, subjects, sizes; none of the content or identities."""
    jsz = server.monitor("jsz", streams=1)
    streams = [s for account in jsz.get("account_details", []) for s in account.get("stream_detail", [])]
    for s in streams:
        demo.say(f"  the relay holds stream {s['name'][:20]}…: {s['state']['messages']} messages, "
            f"{s['state']['bytes']:,} bytes, {s['state'].get('num_subjects', '?')} subjects (one per author)")
    group = agents[0].store.group
    needles = [b"Hotel Miramar", group, group.hex().encode()]
    for agent in agents:
        needles += [agent.store.device, agent.store.device.hex().encode()]
    found = [p.name for p in server.store_dir.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]
    if found:
        raise demo.DemoError(f"the relay's files hold a payload, a device key or the group id: {found}")
    demo.say(f"  none of the relay's {sum(1 for p in server.store_dir.rglob('*') if p.is_file())} files holds the trip "
        "note, a device key or the group id (raw or hex)")
