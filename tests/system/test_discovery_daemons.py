"""Finding peers without typing addresses (docs/discovery.md), with real `agentlog serve` daemons: `agentlog sync`
with no address reaches every stored peer; `peers add` and `peers remove` reach a running serve; and, where this
machine carries multicast on loopback, two daemons that were given no peer find each other over mDNS, announcing
nothing that names the group, a device or the machine."""

from __future__ import annotations

import socket
import threading

import pytest

from agentlog.documents import peer_status
from agentlog.store import home
from agentlog.sync import discovery
from tests.helpers.daemons import agentlog, closed_port, observe, provision, wait_until
from tests.helpers.multicast import loopback_multicast
from tests.helpers.sync import sync


@pytest.fixture(scope="module")
def multicast() -> None:
    """Skip unless multicast on the loopback interface comes back (what mDNS between two daemons on 127.0.0.1
    needs); checked once, in milliseconds."""
    if not loopback_multicast():
        pytest.skip("no multicast on the loopback interface here: mDNS cannot be tested on this machine")


def own_heads(*homes) -> dict[bytes, int]:
    """Each home's device -> the seq of its own last event."""
    out = {}
    for h in homes:
        with home.open_home(h) as store:
            out[store.device] = store.frontier()[store.device]
    return out


def holds(home_dir, heads: dict[bytes, int]) -> bool:
    with home.open_home(home_dir) as store:
        frontier = store.frontier()
    return all(frontier.get(device, 0) >= seq for device, seq in heads.items())


def book(home_dir, add=(), remove=()) -> None:
    """`agentlog peers add` and `remove`, through the API (what the CLI calls, without starting a process)."""
    with home.open_home(home_dir) as store:
        for addr in add:
            store.peer_book.add(addr)
        for addr in remove:
            store.peer_book.remove(addr)


def found_at(home_dir, *addresses: str) -> dict | None:
    """The addresses a home's serve found on the network, once it has saved every one of `addresses`."""
    with home.open_home(home_dir) as store:
        found = store.peer_book.found()
    return found if set(addresses) <= set(found) else None


def peer_rows(home_dir) -> list[dict]:
    """`agentlog status --json`'s peers (through the API, without starting a process)."""
    with home.open_home(home_dir) as store:
        return peer_status(store, store.roster())


def with_history(homes, *names: str) -> None:
    """Give each named home the founder's log (as a sync would), so it sends its own events to any member."""
    founder = home.open_home(homes["laptop"])
    try:
        for name in names:
            with home.open_home(homes[name]) as store:
                sync(founder, store)
    finally:
        founder.close()


@pytest.mark.slow
def test_sync_reaches_every_stored_peer_and_peers_add_reaches_a_running_serve(tmp_path, daemons):
    """One scenario for two bars (two daemons are the costly part): `agentlog sync` with no address, then
    `peers add` and `peers remove` on a running serve."""
    homes = provision(tmp_path, "laptop", "phone", "hub")
    with_history(homes, "phone")
    observe(homes["laptop"], 2, "laptop")
    observe(homes["phone"], 2, "phone")
    laptop, phone = daemons(homes["laptop"]), daemons(homes["phone"])
    nowhere = f"127.0.0.1:{closed_port()}"
    book(homes["hub"], add=(laptop.address, phone.address, nowhere))

    proc = agentlog(homes["hub"], "sync", "--no-discovery", check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"synced with laptop at {laptop.address}: " in proc.stdout and \
        f"synced with phone at {phone.address}: " in proc.stdout, proc.stdout
    assert [line for line in lines if line.startswith(f"not reached {nowhere}: cannot connect")], proc.stdout
    assert lines[-1].startswith("reached 2 of 3; "), proc.stdout
    assert proc.stderr == ""
    assert holds(homes["hub"], own_heads(homes["laptop"], homes["phone"]))

    # The laptop's serve was given no peer: `peers add` reaches it without a restart, `peers remove` too.
    observe(homes["phone"], 3, "later")
    later = own_heads(homes["phone"])
    agentlog(homes["laptop"], "peers", "add", phone.address)
    wait_until(lambda: holds(homes["laptop"], later), "the laptop's serve to dial the peer added meanwhile")
    book(homes["laptop"], remove=(phone.address,))
    laptop.wait_log(lambda e: e.get("event") == "peer no longer dialed" and e.get("address") == phone.address,
                    "that it stopped dialing the removed peer")

    # None reached: every peer is still a line, and the exit status says so (3, a peer problem) in one error line.
    book(homes["hub"], remove=(laptop.address, phone.address))
    proc = agentlog(homes["hub"], "sync", "--no-discovery", check=False)
    assert proc.returncode == 3 and proc.stdout.startswith(f"not reached {nowhere}: "), proc
    assert proc.stderr.strip() == "agentlog: error: no peer reached", proc.stderr


class Refuser:
    """A TCP listener on 127.0.0.1 that accepts and closes at once: a stranger that cannot do the handshake."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_two_daemons_find_each_other_over_mdns_announcing_nothing_that_names_them(tmp_path, daemons, multicast):
    from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf

    homes = provision(tmp_path, "qzcanarylaptop", "qzcanaryphone")
    with home.open_home(homes["qzcanarylaptop"]) as store:
        group_key, canaries = store.meta("group_key"), [store.group, store.device]
    with home.open_home(homes["qzcanaryphone"]) as store:
        canaries.append(store.device)
        phone_id = store.device.hex()
    canaries = [c.hex().encode() for c in canaries] + canaries + [b"qzcanary"]
    host = socket.gethostname().split(".")[0].lower()
    observe(homes["qzcanarylaptop"], 2, "laptop")
    observe(homes["qzcanaryphone"], 2, "phone")

    # A stranger announcing the group's tag (one who held the group secret, a revoked device) fails the handshake.
    refuser = Refuser()
    zc = Zeroconf(interfaces=["127.0.0.1"])
    nonce = bytes(range(8))
    name, server, properties = discovery.records(group_key, nonce)
    stranger = ServiceInfo(discovery.SERVICE_TYPE, name, port=refuser.port, properties=properties, server=server,
                           addresses=[socket.inet_aton("127.0.0.1")])
    registering = threading.Thread(target=zc.register_service, args=(stranger,))
    registering.start()
    seen: set[str] = set()
    browser = ServiceBrowser(zc, discovery.SERVICE_TYPE, handlers=[lambda name, **_: seen.add(name)])
    try:
        laptop = daemons(homes["qzcanarylaptop"], discovery=True)
        phone = daemons(homes["qzcanaryphone"], discovery=True)
        wait_until(lambda: holds(homes["qzcanarylaptop"], own_heads(homes["qzcanaryphone"])) and
                   holds(homes["qzcanaryphone"], own_heads(homes["qzcanarylaptop"])), "the two to find each other")
        for h in homes.values():
            with home.open_home(h) as store:
                assert store.peer_book.addresses() == []        # nobody typed an address

        stranger_at = f"127.0.0.1:{refuser.port}"
        failed = laptop.wait_log(lambda e: e.get("event") == "connect failed" and e.get("address") == stranger_at,
                                 "that the stranger failed the handshake")
        assert failed["retry_in_s"] > 0 and refuser.accepted >= 1
        found = wait_until(lambda: found_at(homes["qzcanarylaptop"], phone.address, stranger_at),
                           "status to show both addresses found on the network")
        assert found[stranger_at].error and not found[phone.address].error, found
        wait_until(lambda: [(p["kind"], p["discovered"]) for p in peer_rows(homes["qzcanarylaptop"])
                            if p["address"] == stranger_at or p["device"] == phone_id] ==
                   [("device", True), ("discovered", True)], "status to show the phone and the stranger as found")
        with home.open_home(homes["qzcanarylaptop"]) as store:
            assert stranger_at not in [s.address for s in store.peer_book.states().values()]    # nothing stored

        # What the daemons announce: read back with a browser, as anyone on the network can.
        registering.join()
        wait_until(lambda: len(seen) >= 3, "the browser to see both daemons")
        ports = {laptop.port, phone.port}
        infos = [info for n in seen if (info := zc.get_service_info(discovery.SERVICE_TYPE, n, 2000))]
        announced = [info for info in infos if info.port in ports]
        assert {info.port for info in announced} == ports
        for info in announced:
            raw = b"".join([info.name.encode(), (info.server or "").encode(), info.text or b""])
            assert not [c for c in canaries if c.lower() in raw.lower()], info
            assert host not in (info.name + "." + (info.server or "")).lower().split("."), info   # not this machine's
            assert set(info.properties) == {b"v", b"t"}
    finally:
        browser.cancel()
        zc.close()
        refuser.close()
