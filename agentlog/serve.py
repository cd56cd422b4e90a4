"""`agentlog serve`: the background replicator as a process: JSON logs, clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys

import structlog
import trio

from .compaction import Policy, compact
from .errors import AgentlogError
from .replicator import Replicator
from .store import Store
from .text import printable_doc

log = structlog.get_logger("agentlog.serve")
LOG_FIELD_LIMIT = 2048                      # characters of one logged string (a peer's reason is at most 1024)
CHECK_EVERY_S = 60.0
RESTING_S = 3600.0                          # at most one automatic compaction an hour


def configure_logging(stream=None, *, quiet: bool = False) -> None:
    """One JSON object per line on stderr: timestamp (UTC), level, event and its fields (none when `quiet`);
    every string in it printable and bounded, since reasons and names come from peers."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL if quiet else logging.INFO),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    _printable_fields, structlog.processors.JSONRenderer(sort_keys=True)],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def _printable_fields(logger, method: str, event: dict) -> dict:
    """structlog processor: every string field through text.printable (escaped, at most LOG_FIELD_LIMIT)."""
    return printable_doc(event, LOG_FIELD_LIMIT)


async def serve(store: Store, listen: tuple[str, int] | None, peers: list[str], heartbeat: float,
                policy: Policy | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Replicate until SIGTERM or SIGINT, then close every connection and save the peers' states;
    compact when the policy says the log has grown enough."""
    replicator = Replicator(store, listen=listen, peers=peers, heartbeat=heartbeat)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(replicator.run)
            if policy is not None:
                nursery.start_soon(compact_when_due, store, policy)
            log.info("serving", device=store.device.hex()[:16], name=store.name, port=replicator.port,
                     peers=replicator.addresses)
            task_status.started(replicator)
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
    replicator.peer_book.save(replicator.states)
    log.info("stopped")


async def compact_when_due(store: Store, policy: Policy, interval: float = CHECK_EVERY_S) -> None:
    """Check the policy every `interval` seconds; compact in a worker thread when it is due."""
    while True:
        await trio.sleep(interval)
        if not await trio.to_thread.run_sync(policy.due, store):
            continue
        try:
            report = await trio.to_thread.run_sync(lambda: compact(store, horizon_ms=policy.horizon_ms))
        except AgentlogError as exc:
            log.warning("compaction failed", error=str(exc))
            continue
        log.info("compacted", snapshot=report.snapshot.hex()[:16] if report.snapshot else None,
                 dropped=report.dropped, kept=report.kept, silent=[d.hex()[:16] for d in report.silent])
        await trio.sleep(RESTING_S)        # what stays (views, events not yet stable) may keep the size over
