"""The `agentlog` command line: one module per command group, each registering its own
subcommands; errors print one line and exit with a documented code.

May import anything in the package; nothing imports it but `agentlog.__main__`.
"""
