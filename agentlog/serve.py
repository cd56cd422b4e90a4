"""`agentlog serve`: the background replicator as a process: JSON logs, clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys

import structlog
import trio

from .replicator import Replicator
from .store import Store

log = structlog.get_logger("agentlog.serve")


def configure_logging(stream=None, *, quiet: bool = False) -> None:
    """One JSON object per line on stderr: timestamp (UTC), level, event and its fields (none when `quiet`)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL if quiet else logging.INFO),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer(sort_keys=True)],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


async def serve(store: Store, listen: tuple[str, int] | None, peers: list[str], heartbeat: float,
                *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Replicate until SIGTERM or SIGINT, then close every connection and save the peers' states."""
    replicator = Replicator(store, listen=listen, peers=peers, heartbeat=heartbeat)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(replicator.run)
            log.info("serving", device=store.device.hex()[:16], name=store.name, port=replicator.port,
                     peers=replicator.addresses)
            task_status.started(replicator)
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
    replicator.peer_book.save(replicator.states)
    log.info("stopped")
