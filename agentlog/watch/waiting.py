"""Waiting for a watcher's wake-up socket inside the caller's event loop: asyncio's or trio's (sniffio tells)."""

from __future__ import annotations

import socket

import sniffio


async def readable(sock: socket.socket, timeout: float) -> None:
    """Return once `sock` is readable or `timeout` seconds passed, without blocking the event loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(sock)
        return
    import asyncio

    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sock.fileno())
