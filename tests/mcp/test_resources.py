"""`agentlog mcp`'s resources and subscriptions, through the SDK's own client over stdio: the profile, a setting,
a memory entry and the open conflicts read as the tools answer; a client subscribed to a setting hears
`notifications/resources/updated` when a peer's event, ingested by another process, changes it."""

from __future__ import annotations

import json
import sys
import warnings

import mcp.types as types
import pytest
import trio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from tests.helpers.sync import sync


async def read(session: ClientSession, uri: str) -> dict:
    [content] = (await session.read_resource(uri)).contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def test_resources_and_a_peers_change_notified(laptop, phone, tmp_path):
    laptop.prefs.observe("editor.theme", "dark")
    entry = laptop.memory.put("Anna's birthday is 3 May", tags=["family"])
    sync(laptop, phone)
    laptop_home = laptop.path.parent
    updated: list[str] = []
    arrived = trio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            arrived.set()

    params = StdioServerParameters(command=sys.executable, args=["-m", "agentlog", "mcp", "--home", str(laptop_home)])
    async with stdio_client(params) as (r, w), ClientSession(r, w, message_handler=on_message) as session:
        init = await session.initialize()
        assert init.capabilities.resources.subscribe
        assert {t.uri_template for t in (await session.list_resource_templates()).resource_templates} == {
            "agentlog://preferences/{setting}", "agentlog://memory/{id}"}
        assert {str(r.uri) for r in (await session.list_resources()).resources} == {
            "agentlog://preferences", "agentlog://conflicts"}
        [theme] = (await read(session, "agentlog://preferences"))["settings"]
        assert theme == await read(session, "agentlog://preferences/editor.theme")
        assert theme["value"] == "dark"
        got = await read(session, f"agentlog://memory/{entry.hex()}")
        assert got["content"] == "Anna's birthday is 3 May" and got["created_iso"].endswith("Z")
        assert await read(session, "agentlog://conflicts") == {"memory": [], "preferences": []}
        with warnings.catch_warnings():             # deprecated for 2026-07-28 servers; this one speaks 2025-11-25
            warnings.simplefilter("ignore")
            await session.subscribe_resource("agentlog://preferences/editor.theme")
            await session.subscribe_resource("agentlog://preferences/units.temperature")

        phone.prefs.set("editor.theme", "light")
        sync(phone, laptop)                  # this process, beside the server's, takes the phone's event
        with trio.fail_after(30):
            await arrived.wait()
        assert updated == ["agentlog://preferences/editor.theme"]
        assert (await read(session, "agentlog://preferences/editor.theme"))["value"] == "light"
        unknown = "ab" * 16
        with pytest.raises(MCPError, match=f"^no memory {unknown} on this device$"):
            await session.read_resource(f"agentlog://memory/{unknown}")
