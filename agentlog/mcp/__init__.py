"""`agentlog mcp`: the Model Context Protocol server over stdio for agents.

May import anything in the package but the CLI; only the CLI imports it.
"""
