"""The NATS JetStream client (nats-py) in one daemon thread running its own asyncio loop: connect with the
relay's credentials, keep the group's bounded stream, publish with message ids and wait for every ack,
deliver the stream from a sequence on, in batches, with one ack covering every earlier delivery (AckAll).
The only module importing nats; callers in any thread get `concurrent.futures.Future`s, and deliveries and
loss of the connection through callbacks."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from agentlog.errors import RelayUnavailable

CONNECT_TIMEOUT_S = 5
REQUEST_TIMEOUT_S = 10.0        # a JetStream API call or a batch of publish acks answers within this
PUBLISH_WINDOW = 4096           # publishes awaiting their ack at once
DUPLICATE_WINDOW_S = 120        # the stream drops a message id it saw this recently (a retried publish)
ACK_WAIT_S = 30.0               # a delivery not acked this long is delivered again
MAX_ACK_PENDING = 20000         # deliveries awaiting their ack before the server waits
INACTIVE_S = 60.0               # the server forgets a consumer whose device left this long ago
PENDING_MSGS = 65536            # deliveries the client holds before the callback took them


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the relay: user and password, or a .creds file (JWT and NKey seed), plus TLS
    files (a CA to trust, a client certificate and key). None of them: an open server."""

    user: str | None = None
    password: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def tls(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


@dataclass(frozen=True)
class StreamState:
    """The stream's messages as the relay reports them: first and last sequence, count and bytes."""

    first_seq: int
    last_seq: int
    messages: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message of the stream handed to this device: ack it (`Bridge.ack`) once it and every delivery
    before it in the stream are dealt with."""

    subject: str
    body: bytes
    stream_seq: int
    pending: int                # messages of the consumer's subjects after this one, when it left the relay
    delivered: int              # how many times the relay has delivered it (1: the first time)
    msg_id: str                 # its Nats-Msg-Id header, as the publisher set it ("" when none)
    handle: object              # the client's message, for the ack


class Bridge:
    """One connection to one relay. `on_deliver(list[Delivery])` and `on_down(reason)` run in the bridge's
    thread: deliveries come in batches (those the client read together), so that a consumer crosses threads
    once per batch rather than once per message."""

    def __init__(self, url: str, credentials: Credentials | None = None, *,
                 on_deliver: Callable[[list[Delivery]], None], on_down: Callable[[str], None],
                 name: str = "agentlog", ack_wait_s: float = ACK_WAIT_S):
        self.url, self.credentials, self.name = url, credentials or Credentials(), name
        self.ack_wait_s = ack_wait_s
        self.on_deliver, self.on_down = on_deliver, on_down
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"relay {url}", daemon=True)
        self._nc = None
        self._js = None
        self._sub = None
        self._batch: list[Delivery] = []
        self._closing = False
        self._last_error: Exception | None = None

    def start(self) -> Bridge:
        self._thread.start()
        return self

    def _submit(self, coro: Coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(_translated(coro, self.url), self._loop)

    # -- the calls, from any thread -----------------------------------------------------------------

    def connect(self) -> Future:
        """Connect (no automatic reconnect: the caller decides when to try again). Fails with
        RelayUnavailable, `refused` when the relay refused the credentials or TLS."""
        return self._submit(self._connect())

    def ensure_stream(self, name: str, subjects: list[str], *, max_age_s: float, max_bytes: int) -> Future:
        """Create the stream, or bring its limits to these; resolves to its StreamState."""
        return self._submit(self._ensure_stream(name, subjects, max_age_s, max_bytes))

    def stream_state(self, name: str) -> Future:
        return self._submit(self._stream_state(name))

    def publish(self, stream: str, items: Sequence[tuple[str, str, bytes]], *, rollup: bool = False) -> Future:
        """Publish (subject, msg_id, body) items, pipelined, each with header Nats-Msg-Id; resolves once the
        relay acknowledged every one (a duplicate id is acknowledged too) to their stream sequences.
        `rollup`: each replaces every earlier message on its subject (the snapshot subject keeps one)."""
        return self._submit(self._publish(stream, list(items), rollup))

    def consume(self, stream: str, subject: str, start_seq: int) -> Future:
        """Deliver the stream's messages on `subject` from `start_seq` on, live, to `on_deliver`; a delivery
        not acked within ACK_WAIT_S (itself or by a later one: the consumer's policy is AckAll) comes again.
        Replaces any earlier consumer of this bridge; resolves to the number of messages from `start_seq` on
        when it started."""
        return self._submit(self._consume(stream, subject, max(1, start_seq)))

    def last_message(self, stream: str, subject: str) -> Future:
        """The body of the stream's last message on `subject`; resolves to None when there is none."""
        return self._submit(self._last_message(stream, subject))

    @property
    def max_payload(self) -> int:
        """The largest message body the connected server takes."""
        return self._nc.max_payload if self._nc is not None else 0

    def stop_consuming(self) -> Future:
        """End the consumer (deliveries already made still come to `on_deliver`; their acks still count)."""
        return self._submit(self._unsubscribe())

    def ack(self, handle: object) -> None:
        """Acknowledge a delivery and every one before it in the stream (AckAll: one message per batch, not one
        per delivery). Fire and forget: an ack lost with the connection means a redelivery."""
        if handle is not None and not self._closing:
            self._loop.call_soon_threadsafe(self._loop.create_task, self._ack(handle))

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is pending, close the connection and end the thread (blocking)."""
        if not self._thread.is_alive():
            return
        self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout)
        except Exception:
            pass                            # the connection was gone already: nothing to flush
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # -- in the bridge's loop -----------------------------------------------------------------------

    async def _connect(self) -> None:
        c = self.credentials
        options = dict(servers=[self.url], name=self.name, allow_reconnect=False, connect_timeout=CONNECT_TIMEOUT_S,
                       max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=self._error,
                       disconnected_cb=self._disconnected, closed_cb=self._disconnected,
                       pending_size=64 * 1024 * 1024)
        if c.user is not None:
            options.update(user=c.user, password=c.password or "")
        if c.creds:
            options.update(user_credentials=c.creds)
        tls = c.tls()
        if tls is not None:
            options.update(tls=tls, tls_hostname=None)
        self._last_error = None
        try:
            self._nc = await nats.connect(**options)
        except nats.errors.NoServersError:
            raise self._last_error or OSError("no answer") from None
        self._js = self._nc.jetstream(timeout=REQUEST_TIMEOUT_S, publish_async_max_pending=PUBLISH_WINDOW)

    async def _error(self, exc: Exception) -> None:
        """Remember why: a connect that fails says so; a connection's later errors end in `_disconnected`."""
        self._last_error = exc

    async def _disconnected(self) -> None:
        if not self._closing:
            self.on_down(f"connection to the relay lost: {self._nc.last_error or 'closed'}" if self._nc
                         else "connection to the relay lost")

    async def _ensure_stream(self, name: str, subjects: list[str], max_age_s: float, max_bytes: int) -> StreamState:
        config = api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE,
                                  retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD,
                                  max_age=max_age_s, max_bytes=max_bytes,
                                  duplicate_window=min(DUPLICATE_WINDOW_S, max_age_s),
                                  allow_rollup_hdrs=True, num_replicas=1)
        try:
            info = await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            info = await self._js.update_stream(config)       # it exists with other limits: take ours
        return _state(info.state)

    async def _stream_state(self, name: str) -> StreamState:
        return _state((await self._js.stream_info(name)).state)

    async def _publish(self, stream: str, items: list[tuple[str, str, bytes]], rollup: bool) -> list[int]:
        if not items:
            return []
        extra = {"Nats-Rollup": "sub"} if rollup else {}
        async with asyncio.timeout(REQUEST_TIMEOUT_S + len(items) / 1000):   # one timer: wait_for costs a task each
            waiting = [await self._js.publish_async(subject, body, stream=stream,
                                                    headers={"Nats-Msg-Id": msg_id, **extra})
                       for subject, msg_id, body in items]
            acks = await asyncio.gather(*waiting)
        return [a.seq for a in acks]

    async def _last_message(self, stream: str, subject: str) -> bytes | None:
        try:
            return (await self._js.get_last_msg(stream, subject)).data
        except nats.js.errors.NotFoundError:
            return None

    async def _unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass

    async def _consume(self, stream: str, subject: str, start_seq: int) -> int:
        await self._unsubscribe()
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq,
                                    ack_policy=api.AckPolicy.ALL, ack_wait=self.ack_wait_s,
                                    max_ack_pending=MAX_ACK_PENDING, inactive_threshold=INACTIVE_S)
        config.deliver_subject, config.filter_subject = self._nc.new_inbox(), subject
        info = await self._nc.jsm(timeout=REQUEST_TIMEOUT_S).add_consumer(stream, config=config)
        self._sub = await self._js.subscribe_bind(stream, config, info.name, cb=self._deliver, manual_ack=True,
                                                  pending_msgs_limit=PENDING_MSGS)
        return info.num_pending      # as made: nothing delivered before this device subscribed to its deliveries

    async def _deliver(self, msg) -> None:
        """Collect a message; the batch goes to `on_deliver` once the client has handed over what it read."""
        stream_seq, delivered, pending = _positions(msg.reply)
        if not self._batch:
            self._loop.call_soon(self._hand_over)
        self._batch.append(Delivery(msg.subject, msg.data, stream_seq, pending, delivered,
                                    (msg.headers or {}).get("Nats-Msg-Id", ""), msg))

    def _hand_over(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self.on_deliver(batch)

    async def _ack(self, msg) -> None:
        try:
            await msg.ack()
        except nats.errors.Error:
            pass                                # gone with the connection: the relay delivers them again

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.flush(timeout=2)
            except (TimeoutError, nats.errors.Error):
                pass
            await nc.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:                         # acks and callbacks still under way: the loop ends
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def _translated(coro: Coroutine, url: str):
    """Run a call; whatever the client or server raises becomes one RelayUnavailable naming why."""
    try:
        return await coro
    except nats.errors.AuthorizationError:
        raise RelayUnavailable("the relay refused this device's credentials", url, refused=True) from None
    except (nats.errors.SecureConnRequiredError, nats.errors.SecureConnFailedError, ssl.SSLError) as exc:
        raise RelayUnavailable(f"TLS with the relay failed: {exc or type(exc).__name__}", url, refused=True) from None
    except nats.js.errors.APIError as exc:
        raise RelayUnavailable(f"the relay refused a request: {exc.description or exc}", url,
                               refused=exc.code in (401, 403)) from None
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        text = str(exc) or type(exc).__name__
        refused = "authorization" in text.lower() or "authentication" in text.lower()
        raise RelayUnavailable(f"{'refused' if refused else 'unreachable'}: {text}", url, refused=refused) from None


def _positions(reply: str) -> tuple[int, int, int]:
    """(stream sequence, times delivered, pending) from a JetStream delivery's reply subject, read as the
    client's metadata reads it (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.
    <pending>`, or with domain and account hash after `$JS.ACK`) without building its objects."""
    tokens = reply.split(".") if reply else ()
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5]), int(tokens[4]), int(tokens[8])
    if len(tokens) >= 11 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[7]), int(tokens[6]), int(tokens[10])
    raise nats.errors.NotJSMessageError


def _state(state) -> StreamState:
    return StreamState(state.first_seq, state.last_seq, state.messages, state.bytes)
