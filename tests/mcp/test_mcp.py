"""`agentlog mcp` driven by the MCP SDK's own client over stdio, against real homes.

Each test starts `python -m agentlog mcp --home HOME` as a real subprocess through
mcp.client.stdio and talks to it with mcp.ClientSession. Results are checked against what
the stores then hold and against the CLI's --json; errors against the CLI's messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agentlog.mcp.schemas import with_iso
from agentlog.store import devices, home
from agentlog.store.peers import Peers, PeerState
from tests.helpers.cli import run
from tests.helpers.sync import sync

TOOLS = {
    "observe", "decide", "correct", "set_preference", "set_override", "clear_override", "get_preference",
    "list_preferences", "memory_put", "memory_update", "memory_delete", "memory_resolve", "memory_get",
    "memory_search", "memory_conflicts", "list_scopes", "status", "pref_forget", "memory_forget", "forget_events",
    "memory_merge", "memory_duplicates",
}
CANARY = "canary-5d1e the user's locker code"


class Agent:
    """The SDK's client session with one server; remembers which tools were called."""

    def __init__(self, session: ClientSession):
        self.session = session
        self.called: set[str] = set()

    async def call(self, name: str, **arguments) -> dict:
        """The tool's structured result, which must also be its text (JSON) content."""
        result = await self.session.call_tool(name, arguments)
        self.called.add(name)
        [block] = result.content
        assert not result.is_error, block.text
        assert json.loads(block.text) == result.structured_content
        return result.structured_content

    async def error(self, name: str, **arguments) -> str:
        """The text of the tool error the call must return."""
        result = await self.session.call_tool(name, arguments)
        self.called.add(name)
        [block] = result.content
        assert result.is_error and result.structured_content is None, block.text
        assert "Traceback" not in block.text
        return block.text


@asynccontextmanager
async def agent(home_dir):
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentlog", "mcp", "--home", str(home_dir)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "agentlog" and "get_preference" in init.instructions
        yield Agent(session)


@pytest.fixture
def homes(tmp_path):
    """The laptop's home (closed, for the server) with a peer on record, and the phone's store (open)."""
    laptop = home.create(tmp_path / "laptop", "laptop")
    laptop.create_group("laptop")
    phone = home.create(tmp_path / "phone", "phone")
    devices.join(phone, devices.enroll(laptop, phone.device, "phone"))
    sync(laptop, phone)
    laptop.peer_book.add("127.0.0.1:4712")
    Peers(laptop).save({phone.device: PeerState(name="phone", address="127.0.0.1:4712", state="partitioned",
                                                 last_seen_ms=time.time_ns() // 1_000_000,
                                                 frontier={laptop.device.hex(): 1, phone.device.hex(): 0},
                                                 error="connection reset")})
    laptop.close()
    yield tmp_path / "laptop", phone
    phone.close()


def cli_json(home_dir, *args):
    """The CLI's --json document as the MCP tools give it: with an ISO time beside each millisecond one."""
    return with_iso(json.loads(run(home_dir, *args, "--json").stdout))


def cli_error(home_dir, *args) -> str:
    """The CLI's one-line error for a command that must fail (bad input, 2, or not found, 4), without its prefix."""
    proc = run(home_dir, *args, check=False)
    assert proc.returncode in (2, 4) and proc.stderr.startswith("agentlog: error: "), proc.stderr
    return proc.stderr.strip().removeprefix("agentlog: error: ")


async def test_every_tool_through_the_sdk_client(homes):
    laptop_home, phone = homes
    async with agent(laptop_home) as a:
        listed = (await a.session.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        for tool in listed:
            assert len(tool.description) > 100 and "\n" not in tool.description and "  " not in tool.description
            assert tool.title and tool.title[0].isupper(), tool.name
            assert tool.output_schema["properties"] and tool.output_schema["description"], tool.name
            assert tool.input_schema["type"] == "object"
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}.{name}"
            assert tool.annotations.read_only_hint == (
                tool.name.startswith(("get_", "list_", "status"))
                or tool.name in ("memory_get", "memory_search", "memory_conflicts", "memory_duplicates")
            )
        await check_preferences(a, laptop_home, phone)
        await check_memory(a, laptop_home, phone)
        await check_erasure(a, laptop_home)
        await check_status(a, laptop_home)
        assert a.called == TOOLS


async def check_preferences(a: Agent, laptop_home, phone):
    theme = await a.call("get_preference", setting="editor.theme")
    assert (theme["value"], theme["source"], theme["confidence"]) == (None, "default", 0.0)

    first = await a.call("observe", setting="editor.theme", value="dark")
    await a.call("observe", setting="editor.theme", value="dark", weight=2.0)
    await a.call("observe", setting="editor.theme", value="light", context={"daypart": "night"}, weight=3.0)
    theme = await a.call("get_preference", setting="editor.theme")
    assert (theme["value"], theme["source"], theme["frontier"]) == ("dark", "learned", {"laptop": 5})
    night = await a.call("get_preference", setting="editor.theme", context={"daypart": "night"})
    assert (night["value"], night["context_bucket"]) == ("light", {"daypart": "night"})
    explained = await a.call("get_preference", setting="editor.theme", explain=True)
    assert first["event"] in [c["id"] for c in explained["contributions"]]
    assert explained == cli_json(laptop_home, "pref", "get", "editor.theme", "--explain")

    decided = await a.call("decide", setting="reply.length", value="short", confidence=0.9, reason="a quick question")
    assert (await a.call("get_preference", setting="reply.length"))["value"] == "short"
    corrected = await a.call("correct", decision_id=decided["decision_id"], value="long", reason="wanted detail")
    length = await a.call("get_preference", setting="reply.length", explain=True, limit=5)
    assert (length["value"], length["source"]) == ("long", "learned")
    correction = next(c for c in length["contributions"] if c["kind"] == "correction")
    assert (correction["id"], correction["value"], correction["author"]) == (corrected["event"], "long", "laptop")

    await a.call("set_preference", setting="units.temperature", value="celsius")
    units = await a.call("get_preference", setting="units.temperature", context={"app": "weather"})
    assert (units["value"], units["source"], units["confidence"], units["uncertain"]) == (
        "celsius",
        "explicit",
        1.0,
        False,
    )

    await a.call("set_override", setting="editor.theme", value="solarized")
    theme = await a.call("get_preference", setting="editor.theme")
    assert (theme["value"], theme["source"]) == ("solarized", "override")
    with home.open_home(laptop_home) as laptop:
        sync(laptop, phone)
    assert (phone.prefs.get("editor.theme").value, phone.prefs.get("editor.theme").source) == ("dark", "learned")
    await a.call("clear_override", setting="editor.theme")
    theme = await a.call("get_preference", setting="editor.theme")
    assert (theme["value"], theme["source"]) == ("dark", "learned")

    listed = (await a.call("list_preferences"))["settings"]
    assert [(s["setting"], s["value"]) for s in listed] == [
        ("editor.theme", "dark"), ("reply.length", "long"), ("units.temperature", "celsius")]
    assert listed == cli_json(laptop_home, "pref", "list")


async def check_memory(a: Agent, laptop_home, phone):
    put = await a.call("memory_put", content="Anna's birthday is 3 May", tags=["family"])
    anna = put["id"]
    assert (put["entry"]["content"], put["entry"]["type"], put["entry"]["tags"]) == (
        "Anna's birthday is 3 May",
        "fact",
        ["family"],
    )
    helix = (await a.call("memory_put", content="The user edits code in Helix", type="preference", confidence=0.8,
                          scope="topic:tools"))["id"]
    got = await a.call("memory_get", id=anna[:8])
    assert got == put["entry"] == cli_json(laptop_home, "memory", "get", anna)

    found = await a.call("memory_search", query="when is Anna's birthday", k=1)
    assert [h["entry"]["id"] for h in found["hits"]] == [anna] and found["searched"] == 2
    found = await a.call("memory_search", query="helix", lexical=True, scope="topic:tools")
    assert ([h["entry"]["id"] for h in found["hits"]], found["mode"]) == ([helix], "lexical")

    updated = await a.call("memory_update", id=anna, content="Anna's birthday is 4 May", add_tags=["dates"])
    assert (updated["id"], updated["entry"]["content"], sorted(updated["entry"]["tags"])) == (
        anna, "Anna's birthday is 4 May", ["dates", "family"])

    # The phone changes the content while the laptop does too: a conflict once they sync.
    with home.open_home(laptop_home) as laptop:
        sync(laptop, phone)
    phone.memory.update(bytes.fromhex(anna), content="Anna's birthday is 5 May")
    await a.call("memory_update", id=anna, content="Anna's birthday is 6 May", remove_tags=["dates"])
    with home.open_home(laptop_home) as laptop:
        sync(phone, laptop)
    [conflicted] = (await a.call("memory_conflicts"))["entries"]
    assert conflicted["id"] == anna
    assert sorted(c["value"] for c in conflicted["conflicts"]["content"]) == ["Anna's birthday is 5 May",
                                                                              "Anna's birthday is 6 May"]
    assert {c["device"] for c in conflicted["conflicts"]["content"]} == {"laptop", "phone"}
    assert (await a.call("memory_get", id=anna))["conflicts"] == conflicted["conflicts"]
    resolved = await a.call("memory_resolve", id=anna, field="content", value="Anna's birthday is 5 May")
    assert (resolved["entry"]["content"], resolved["entry"]["conflicts"]) == ("Anna's birthday is 5 May", {})
    assert (await a.call("memory_conflicts"))["entries"] == []

    deleted = await a.call("memory_delete", id=helix[:6], reason="the user switched editors")
    [tombstone] = deleted["entry"]["deleted"]
    assert (deleted["id"], deleted["entry"]["content"], tombstone["value"]) == (
        helix,
        None,
        "the user switched editors",
    )
    assert (await a.call("memory_get", id=helix))["deleted"] == deleted["entry"]["deleted"]
    assert (await a.call("memory_search", query="helix", lexical=True))["hits"] == []

    again = (await a.call("memory_put", content="Anna's birthday is on 5 May", tags=["dates"]))["id"]
    [pair] = (await a.call("memory_duplicates"))["pairs"]
    assert {pair["a"]["id"], pair["b"]["id"]} == {anna, again} and 0.6 <= pair["similarity"] <= 1
    merged = await a.call("memory_merge", id=anna, other=again[:8])
    assert (merged["id"], sorted(merged["entry"]["tags"])) == (anna, ["dates", "family"])
    assert (await a.call("memory_get", id=again))["merged_into"] == anna
    assert (await a.call("memory_duplicates"))["pairs"] == []


async def check_erasure(a: Agent, laptop_home):
    secret = (await a.call("memory_put", content=CANARY, tags=["vault"]))["id"]
    forgot = await a.call("memory_forget", id=secret[:8], reason="the user asked")
    [request] = forgot["requests"]
    assert forgot == cli_json(laptop_home, "memory", "forget", secret)     # forgotten already: the same request
    log = {r["id"]: r for r in cli_json(laptop_home, "log")}
    [put] = [r for r in log.values() if r["kind"] == "memory.put" and r["erased"]]
    assert (log[request]["kind"], put["erased"]["by"], put["erased"]["reason"]) == ("erase", request, "the user asked")
    assert CANARY not in json.dumps(await a.call("memory_search", query="locker code", lexical=True))
    gone = await a.error("memory_get", id=secret)
    assert gone.startswith(f"memory {secret} was erased by {request}") and gone == cli_error(
        laptop_home, "memory", "get", secret)

    jazz = (await a.call("observe", setting="music.genre", value="jazz"))["event"]
    erased = await a.call("forget_events", event_ids=[jazz.upper()], reason="misheard")
    assert erased["events"] == [jazz] and len(erased["requests"]) == 1
    assert cli_json(laptop_home, "log", "show", jazz)["erased"]["by"] == erased["requests"][0]
    rock = (await a.call("observe", setting="music.genre", value="rock"))["event"]
    forgot = await a.call("pref_forget", setting="music.genre", erase=True, reason="start over")
    [request] = forgot["requests"]
    assert (forgot["setting"], cli_json(laptop_home, "log", "show", forgot["forget"])["kind"]) == (
        "music.genre", "pref.forget")
    assert cli_json(laptop_home, "log", "show", rock)["erased"]["by"] == request
    assert (await a.call("get_preference", setting="music.genre"))["source"] == "default"
    assert (await a.call("status"))["erasure"]["erased"] == 3
    plain = await a.call("pref_forget", setting="music.genre")           # no erase: a forget, nothing erased
    assert plain["requests"] == [] and cli_json(laptop_home, "log", "show", plain["forget"])["kind"] == "pref.forget"
    assert (await a.call("forget_events", event_ids=[jazz]))["requests"] == []   # erased already: a no-op


async def check_status(a: Agent, laptop_home):
    status = await a.call("status")
    with home.open_home(laptop_home) as laptop:
        assert (status["device"], status["name"], status["events"]) == (laptop.device.hex(), "laptop", laptop.count())
        assert {name: v["digest"] for name, v in status["views"].items()} == {
            name: v["digest"].hex() for name, v in laptop.views().items()}
    assert {"pref", "memory"} <= set(status["views"])
    [peer] = status["peers"]
    assert (peer["name"], peer["address"], peer["state"], peer["error"]) == ("phone", "127.0.0.1:4712", "partitioned",
                                                                             "connection reset")
    assert status == cli_json(laptop_home, "status")
    assert await a.call("list_scopes") == {"scopes": cli_json(laptop_home, "scopes", "list")}


async def test_errors_carry_the_cli_message_and_change_nothing(homes):
    laptop_home, _ = homes
    async with agent(laptop_home) as a:
        entry = (await a.call("memory_put", content="The user lives in Lisbon"))["id"]
        await a.call("observe", setting="editor.theme", value="dark")
        before = await a.call("status")
        unknown = "0123456789abcdef0123456789abcdef"

        same_as_cli = [
            (("memory_get", {"id": unknown}), ("memory", "get", unknown)),
            (("memory_update", {"id": "zz"}), ("memory", "update", "zz", "--content", "x")),
            (("memory_put", {"content": "   "}), ("memory", "put", "   ")),
            (("memory_put", {"content": "x", "confidence": 1.5}), ("memory", "put", "x", "--confidence", "1.5")),
            (("memory_put", {"content": "x", "type": "rumour"}), ("memory", "put", "x", "--type", "rumour")),
            (
                ("memory_resolve", {"id": entry, "field": "content", "value": "y"}),
                ("memory", "resolve", entry, "content", "y"),
            ),
            (
                ("decide", {"setting": "editor.theme", "value": "dark", "confidence": 2}),
                ("decide", "editor.theme", "dark", "--confidence", "2"),
            ),
            (("observe", {"setting": "editor theme", "value": "dark"}), ("observe", "editor theme", "dark")),
            (("observe", {"setting": "editor.theme", "value": ""}), ("observe", "editor.theme", "")),
            (
                ("get_preference", {"setting": "editor.theme", "context": {"day part": "night"}}),
                ("pref", "get", "editor.theme", "--context", "day part=night"),
            ),
            (("clear_override", {"setting": "editor.theme"}), ("override", "clear", "editor.theme")),
            (("memory_forget", {"id": unknown}), ("memory", "forget", unknown)),
            (("forget_events", {"event_ids": ["abc"]}), ("forget", "abc")),
            (("forget_events", {"event_ids": ["ab" * 32]}), ("forget", "ab" * 32)),
            (("pref_forget", {"setting": "editor theme", "erase": True}),
             ("pref", "forget", "editor theme", "--erase")),
        ]
        for (tool, arguments), command in same_as_cli:
            assert await a.error(tool, **arguments) == cli_error(laptop_home, *command), tool

        assert await a.error("memory_get", id=unknown) == f"no memory {unknown} on this device"
        assert await a.error("correct", decision_id="abc", value="light") == (
            "decision id 'abc' is not an event id (64 hex digits, as decide returns)")
        assert await a.error("get_preference", setting="editor.theme", limit=0) == "limit must be at least 1"
        assert await a.error("pref_forget", setting="editor.theme", reason="why") == (
            "reason goes with erase (a forget without it records no reason)")
        assert await a.error("memory_put", content="x", confidence="very") == (
            "memory_put: argument confidence: input should be a valid number, unable to parse string as a number "
            "(got 'very')")
        assert await a.error("observe", value="dark") == "observe: argument setting is required"

        assert await a.call("status") == before
        assert (await a.call("memory_get", id=entry))["content"] == "The user lives in Lisbon"


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
        assert (await a.call("status"))["scopes"] == [{**health, "unread": 0, "uncarried": 0}]

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


def test_without_the_mcp_package_one_line_and_exit_2(tmp_path):
    code = "import sys; sys.modules['mcp'] = None; from agentlog.cli.main import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "mcp", "--home", str(tmp_path / "h")],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "agentlog: error: agentlog mcp needs the optional extra: pip install 'agentlog[mcp]'\n"


def test_no_home_is_the_cli_error(tmp_path):
    proc = run(tmp_path / "nowhere", "mcp", check=False)
    assert (proc.returncode, proc.stdout) == (4, "")
    assert proc.stderr.startswith("agentlog: error: no agentlog device at ") and len(proc.stderr.splitlines()) == 1
