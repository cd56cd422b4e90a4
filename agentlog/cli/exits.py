"""The exit codes of every `agentlog` command (README, "Exit codes"), and the code of a failure."""

from __future__ import annotations

from agentlog.errors import AgentlogError, NotFoundError, PeerError

EXIT_OK = 0
EXIT_PROBLEMS = 1               # a check found problems: verify, audit verify, replay
EXIT_ERROR = 2                  # a usage mistake or bad input: arguments, values, tokens, damaged files
EXIT_PEER = 3                   # a peer was unreachable, refused, timed out or broke the protocol
EXIT_NOT_FOUND = 4              # what was named does not exist: memory entry, decision, device, home


def exit_code(exc: AgentlogError) -> int:
    """The exit code of a failure, from its place in the error hierarchy (README, "Exit codes")."""
    if isinstance(exc, PeerError):
        return EXIT_PEER
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    return EXIT_ERROR
