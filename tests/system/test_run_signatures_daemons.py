"""A garbled signature inside a run, sent to real daemons over 127.0.0.1: `verify` warns, and an honest peer's
valid record heals it on every device (the rules: tests/store/test_run_signatures.py)."""

from __future__ import annotations

import trio

from agentlog.store import home
from tests.helpers.daemons import Daemon, agentlog, end_all, provision, wait_until
from tests.helpers.events import garbled, own_events, stored_record
from tests.helpers.mallory import World, connect, outcome, send_batch
from tests.helpers.sync import sync


def _verify_lines(path) -> tuple[int, list[str]]:
    checked = agentlog(path, "verify", check=False)
    return checked.returncode, [line for line in checked.stdout.splitlines() if "signature" in line]


def test_daemons_warn_then_heal_from_an_honest_peer_over_real_sockets(tmp_path):
    """Mallory, enrolled, sends the laptop's daemon one batch over a real connection: its seq 1 garbled,
    its seq 2 signed. The laptop relays both to the phone's daemon. The laptop's `agentlog verify` exits
    0 with one warning naming mallory. The tablet holds mallory's events whole (they reached it validly);
    once its daemon connects, the laptop's asks it for the damaged record and heals, and the phone's (whose
    background check found the damage) heals from the laptop: `verify` is clean on all three."""
    homes = provision(tmp_path, "laptop", "phone", "tablet", "mallory")
    with home.open_home(homes["laptop"]) as founder:
        for name in ("phone", "tablet"):
            with home.open_home(homes[name]) as store:
                sync(founder, store)                      # each knows mallory is enrolled
    registry: list[Daemon] = []
    try:
        laptop = Daemon(homes["laptop"], registry=registry).start()
        Daemon(homes["phone"], listen=False, peers=(laptop.address,), registry=registry).start()
        with home.open_home(homes["mallory"]) as m:
            one, two = own_events(m, 2)
            world = World(tmp_path, homes, laptop, None, m)

            async def send():
                channel = await connect(world)
                try:
                    await send_batch(1, garbled(one), two)(channel)
                    kind, msg = await outcome(channel, until_ack=1)
                    assert kind == "ack", (kind, msg)
                finally:
                    await channel.aclose()
            trio.run(send)
            with home.open_home(homes["tablet"]) as tablet:
                sync(m, tablet)

        def seq_one(name: str) -> bytes | None:
            """Mallory's seq 1 as the device stores it (None until it holds seq 2 too)."""
            with home.open_home(homes[name]) as store:
                return stored_record(store, one) if store.frontier().get(one.header.author, 0) >= 2 else None

        def healed(name: str) -> bool:
            with home.open_home(homes[name]) as store:
                return stored_record(store, one) == one.record and not store.damaged()
        wait_until(lambda: seq_one("phone"), "the laptop relays mallory's run to the phone")
        assert seq_one("phone") == garbled(one).record          # the damaged bytes came along, inside the run
        code, lines = _verify_lines(homes["laptop"])
        assert code == 0 and len(lines) == 1, lines
        assert lines[0].startswith("warning: mallory") and "received from mallory" in lines[0], lines

        Daemon(homes["tablet"], listen=False, peers=(laptop.address,), registry=registry).start()
        for name in ("laptop", "phone"):
            wait_until(lambda name=name: healed(name), f"the {name} heals mallory's seq 1")
        for name in ("laptop", "phone", "tablet"):
            code, lines = _verify_lines(homes[name])
            assert (code, lines) == (0, []), (name, lines)
    finally:
        end_all(registry)
