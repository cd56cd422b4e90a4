"""Reading a child process's output without ever letting its pipe fill."""

from __future__ import annotations

import queue


def pump(stream, lines: queue.Queue) -> None:
    """Move the child's stdout lines into a queue until EOF, so the pipe never fills."""
    try:
        for raw in stream:
            lines.put(raw.decode())
    finally:
        lines.put(None)
