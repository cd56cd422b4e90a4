"""`agentlog serve`: the background replicator as a process: JSON logs, clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import structlog
import trio

from agentlog.errors import ERROR_TEXT_MAX, AgentlogError, StoreError, describe
from agentlog.store import invites
from agentlog.store.compaction import Policy, compact
from agentlog.store.peers import address
from agentlog.store.store import Store
from agentlog.sync import pair_net
from agentlog.sync.replicator import Replicator
from agentlog.text import printable_doc

log = structlog.get_logger("agentlog.sync.serve")
LOG_FIELD_LIMIT = 2048                      # characters of one logged string (a peer's reason is at most 1024)
CHECK_EVERY_S = 60.0
RESTING_S = 3600.0                          # at most one automatic compaction an hour
SCRUB_EVERY_S = 5.0                         # a pending scrub (docs/erasure.md) is run again this often,
SCRUB_BACKOFF_S = 600.0                     # then less often while it stays pending, down to once in this
DISCOVERY_RETRY_S = 60.0                    # discovery that failed starts again after this pause
FILES_MAX = 65536                           # the soft limit on open files serve raises itself to, at most


def configure_logging(stream=None, *, quiet: bool = False) -> None:
    """One JSON object per line on stderr: timestamp (UTC), level, event and its fields (none when `quiet`);
    every string in it printable and bounded, since reasons and names come from peers. Stdlib logging
    (trio's, any library's) and Python's warnings go the same way, one line each, without tracebacks."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL if quiet else logging.INFO),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    _printable_fields, structlog.processors.JSONRenderer(sort_keys=True)],
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(logging.WARNING)
    logging.raiseExceptions = False             # a record that cannot be formatted is dropped, not printed
    logging.captureWarnings(True)               # Python's warnings too, instead of lines of their own


class _ToStructlog(logging.Handler):
    """A stdlib log record as one structlog line: its logger, message and (instead of a traceback) the error."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = describe(record.exc_info[1])
            message = " ".join(record.getMessage().split())[:ERROR_TEXT_MAX]
            structlog.get_logger("stdlib").log(record.levelno, message, **fields)
        except Exception:
            pass


def raise_file_limit() -> None:
    """Raise the soft limit on open files to the hard one (at most FILES_MAX): every connection holds one."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = FILES_MAX if hard == resource.RLIM_INFINITY else min(hard, FILES_MAX)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass                                    # not on this platform, or not allowed: keep the limit


def _printable_fields(logger, method: str, event: dict) -> dict:
    """structlog processor: every string field through text.printable (escaped, at most LOG_FIELD_LIMIT)."""
    return printable_doc(event, LOG_FIELD_LIMIT)


def run(store: Store, listen: tuple[str, int] | None, peers: list[str], heartbeat: float,
        policy: Policy | None = None, discovery: bool = False) -> None:
    """`serve` as a blocking call, for a caller that runs no trio of its own (the CLI). What is loaded so far
    (modules, the open store) lives as long as the daemon: frozen, the cyclic collector's full passes skip it;
    the collector is on from here (the CLI starts without it)."""
    gc.freeze()
    gc.enable()
    trio.run(partial(serve, store, listen, peers, heartbeat, policy, discovery=discovery))


async def serve(store: Store, listen: tuple[str, int] | None, peers: list[str], heartbeat: float,
                policy: Policy | None = None, *, discovery: bool = False,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Replicate until SIGTERM or SIGINT, then close every connection and save the peers' states;
    compact when the policy says the log has grown enough; with `discovery`, announce this device on the
    local network and dial the group's devices found there (docs/discovery.md)."""
    raise_file_limit()
    replicator = Replicator(store, listen=listen, peers=peers, heartbeat=heartbeat,
                            on_pair=pair_net.answerer(store, serving=True))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals, \
            _published(store, listen) as published:
        async with trio.open_nursery() as nursery:
            await nursery.start(replicator.run)
            published(replicator.port)
            if policy is not None:
                nursery.start_soon(compact_when_due, store, policy)
            nursery.start_soon(scrub_when_pending, store)
            if discovery:
                nursery.start_soon(discover, store, replicator, listen[0] if listen else None)
            log.info("serving", device=store.device.hex()[:16], name=store.name, port=replicator.port,
                     peers=replicator.dialers.wanted())
            task_status.started(replicator)
            async for signum in signals:
                log.info("stopping", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
    found = {a: replace(f, state="gone") for a, f in replicator.dialers.found.items()}
    try:
        replicator.peer_book.save(replicator.states, found if discovery else None)
    except StoreError as exc:
        log.warning("peer states not saved", error=str(exc))
    log.info("stopped")


async def discover(store: Store, replicator: Replicator, host: str | None) -> None:
    """Announce this device (when it listens) and hand the group's devices found on the network to the replicator's
    dialers; a failure of zeroconf (no multicast here, say) is logged and tried again after DISCOVERY_RETRY_S."""
    from agentlog.sync import mdns  # zeroconf is loaded only by a serve that discovers

    replicator.dialers.dirty = True             # forget what an earlier run found
    group_key = store.meta("group_key")
    dialers = replicator.dialers
    while True:
        try:
            await mdns.run(group_key, host, replicator.port,
                           found=lambda r: dialers.discovered(address(r.host, r.port), True),
                           lost=lambda r: dialers.discovered(address(r.host, r.port), False))
        except Exception as exc:
            log.warning("discovery failed", error=describe(exc), retry_in_s=DISCOVERY_RETRY_S)
        for addr in list(dialers.found):        # what this run found is not known to be there any more
            dialers.discovered(addr, False)
        await trio.sleep(DISCOVERY_RETRY_S)


@contextmanager
def _published(store: Store, listen: tuple[str, int] | None):
    """Write where this serve accepts connections (agentlog.store.invites.SERVE_FILE) once it listens, for
    `agentlog devices invite` to print (or remove a stale one when it does not listen: a serve killed before);
    remove it when serve ends, if it is still ours."""
    path = store.path / invites.SERVE_FILE
    written = []

    def publish(port: int | None) -> None:
        try:
            if listen is None or port is None:
                path.unlink(missing_ok=True)
                return
            text = address(pair_net.reachable_host(listen[0]), port)
            path.with_suffix(".tmp").write_text(text)
            os.replace(path.with_suffix(".tmp"), path)
            written.append(text)
        except OSError as exc:
            log.warning("listening address not published", error=describe(exc))
    try:
        yield publish
    finally:
        try:
            if written and path.read_text() == written[0]:
                path.unlink()
        except OSError:
            pass


async def scrub_when_pending(store: Store, interval: float = SCRUB_EVERY_S) -> None:
    """Run a scrub again, in a worker thread, while one of any process of this home is pending (a reader
    pinned the pages an erasure freed, or erased bytes were still found); waiting twice as long after each
    scrub that stays pending, up to SCRUB_BACKOFF_S (bytes a scrub cannot reach stay found)."""
    wait = interval
    while True:
        await trio.sleep(wait)
        try:
            if not await trio.to_thread.run_sync(store.scrubber.wanted):
                wait = interval
                continue
            report = await trio.to_thread.run_sync(store.scrubber.run)
        except AgentlogError as exc:
            log.warning("scrub failed", error=str(exc))
            continue
        except Exception as exc:                # not a refusal: a bug or the store failing; the daemon goes on
            log.error("scrub failed", error=describe(exc))
            continue
        wait = min(2 * wait, SCRUB_BACKOFF_S) if report.pending else interval
        log.info("scrubbed", pages=report.pages, pending=report.pending, pinned=report.pinned,
                 found=len(report.found))


async def compact_when_due(store: Store, policy: Policy, interval: float = CHECK_EVERY_S) -> None:
    """Check the policy every `interval` seconds; compact in a worker thread when it is due."""
    while True:
        await trio.sleep(interval)
        try:
            if not await trio.to_thread.run_sync(policy.due, store):
                continue
            report = await trio.to_thread.run_sync(lambda: compact(store, horizon_ms=policy.horizon_ms))
        except AgentlogError as exc:
            log.warning("compaction failed", error=str(exc))
            continue
        except Exception as exc:                # not a refusal: a bug or the store failing; the daemon goes on
            log.error("compaction failed", error=describe(exc))
            continue
        log.info("compacted", snapshot=report.snapshot.hex()[:16] if report.snapshot else None,
                 dropped=report.dropped, kept=report.kept, silent=[d.hex()[:16] for d in report.silent],
                 unacknowledged=report.unacknowledged)
        await trio.sleep(RESTING_S)        # what stays (views, events not yet stable) may keep the size over
