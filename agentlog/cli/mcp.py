"""`agentlog mcp`: serve this device's preferences and memory to an AI agent (agentlog.mcp.server)."""

from __future__ import annotations

from agentlog.cli.common import home_path, open_home
from agentlog.errors import UsageError


def register(sub, common) -> None:
    c = sub.add_parser("mcp", help="serve this device's preferences and memory to an AI agent over MCP on stdio")
    c.set_defaults(func=cmd_mcp)


def cmd_mcp(args) -> int:
    try:
        from agentlog.mcp import server as mcp_server
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("mcp", "mcp_types"):
            raise
        raise UsageError("agentlog mcp needs the optional extra: pip install 'agentlog[mcp]'") from None

    with open_home(args) as store:
        mcp_server.serve_stdio(store, home_path(args))
    return 0
