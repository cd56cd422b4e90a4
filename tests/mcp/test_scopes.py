"""The MCP server's scopes: list_scopes as `agentlog scopes list --json` prints it, `scope` on the write tools,
and a write to a scope this device cannot read refused with the CLI's message (fail until store.scopes lands)."""

from __future__ import annotations

import pytest

from agentlog.store import devices, home
from tests.helpers.cli import run
from tests.helpers.sync import sync
from tests.mcp.test_mcp import agent, cli_error, cli_json


@pytest.fixture
def homes(tmp_path):
    """The laptop's home (closed, for the server) and the phone's store (open), enrolled and synced."""
    laptop = home.create(tmp_path / "laptop", "laptop")
    laptop.create_group("laptop")
    phone = home.create(tmp_path / "phone", "phone")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)
    laptop.close()
    yield tmp_path / "laptop", phone
    phone.close()


async def test_scopes_through_the_sdk_client(homes, tmp_path):
    laptop_home, phone = homes
    run(laptop_home, "scopes", "create", "health")
    async with agent(laptop_home) as a:
        [health] = (await a.call("list_scopes"))["scopes"]
        assert (health["scope"], [r["name"] for r in health["readers"]], health["epoch"], health["can_read"]) == (
            "health", ["laptop"], 1, True)
        assert await a.call("list_scopes") == {"scopes": cli_json(laptop_home, "scopes", "list")}

        written = [
            (await a.call("observe", setting="diet", value="vegetarian", scope="health"))["event"],
            (await a.call("set_preference", setting="diet", value="vegan", scope="health"))["event"],
        ]
        decision = (await a.call("decide", setting="dose", value="low", scope="health"))["decision_id"]
        written += [decision, (await a.call("correct", decision_id=decision, value="none", scope="health"))["event"]]
        plain = (await a.call("observe", setting="theme", value="dark"))["event"]
        assert (await a.call("get_preference", setting="diet"))["value"] == "vegan"
        assert (await a.call("status"))["scopes"] == [{**health, "unread": 0}]

    scopes = {r["id"]: r["scope"] for r in cli_json(laptop_home, "log")}
    assert [scopes[e] for e in written] == ["health"] * 4 and scopes[plain] == "user"

    with home.open_home(laptop_home) as laptop:
        sync(laptop, phone)
    [carried] = cli_json(tmp_path / "phone", "status")["scopes"]       # the phone carries them and reads none
    assert (carried["scope"], carried["can_read"], carried["unread"]) == ("health", False, 4)


async def test_a_write_to_a_scope_not_read_here_is_the_cli_error(homes):
    laptop_home, phone = homes
    phone.scopes.create("diary")
    with home.open_home(laptop_home) as laptop:
        sync(phone, laptop)
    async with agent(laptop_home) as a:
        before = await a.call("status")
        [diary] = (await a.call("list_scopes"))["scopes"]
        assert (diary["scope"], diary["can_read"]) == ("diary", False)
        for tool, arguments, command in (
            ("observe", {"setting": "mood", "value": "calm"}, ("observe", "mood", "calm")),
            ("set_preference", {"setting": "mood", "value": "calm"}, ("pref", "set", "mood", "calm")),
            ("memory_put", {"content": "a note"}, ("memory", "put", "a note")),
        ):
            message = await a.error(tool, **arguments, scope="diary")
            assert "diary" in message and message == cli_error(laptop_home, *command, "--scope", "diary")
        assert await a.call("status") == before
