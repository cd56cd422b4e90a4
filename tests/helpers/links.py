"""Two sans-IO protocol connections joined in memory: an in-order queue of encoded messages, no sockets."""

from __future__ import annotations

from agentlog.errors import EventError, SnapshotError
from agentlog.sync import messages
from agentlog.sync.peer_log import StoreLog
from agentlog.sync.protocol import Close, Connection, Ingest, Install, Send


class Link:
    """Two connections joined by an in-order queue of encoded messages; ingest and install run at once."""

    def __init__(self, a_store, b_store, now: float = 0.0, *, log=StoreLog, **options):
        self.log = log
        self.stores = {}
        self.a = self._conn(a_store, b_store, now, **options)
        self.b = self._conn(b_store, a_store, now, **options)
        self.queue: list = []
        self.closed: list[tuple[str, Close]] = []
        self.sent: list[tuple[str, object]] = []
        self.wire_bytes = 0
        self.now = now

    def _conn(self, store, other, now, **options):
        conn = Connection(self.log(store), store.group, store.device, other.device, now, **options)
        self.stores[id(conn)] = store
        return conn

    def name(self, conn) -> str:
        return "a" if conn is self.a else "b"

    def start(self) -> None:
        self.handle(self.a, self.a.start(self.now))
        self.handle(self.b, self.b.start(self.now))

    def handle(self, conn, actions) -> None:
        other = self.b if conn is self.a else self.a
        for act in actions:
            if isinstance(act, Send):
                raw = messages.encode(act.message)
                self.wire_bytes += len(raw)
                self.sent.append((self.name(conn), act.message))
                self.queue.append((other, raw))
            elif isinstance(act, Ingest):
                log = StoreLog(self.stores[id(conn)])
                try:
                    heads, frontier, _ = log.ingest(act.events)
                except EventError as exc:
                    self.handle(conn, conn.rejected(act.batch, exc, self.now))
                else:
                    self.handle(conn, conn.ingested(act.batch, heads, frontier, self.now))
            elif isinstance(act, Install):
                try:
                    frontier = StoreLog(self.stores[id(conn)]).install(act.record, act.payload, act.states, act.cuts)
                except SnapshotError as exc:
                    self.handle(conn, conn.install_failed(str(exc), self.now))
                else:
                    self.handle(conn, conn.installed(frontier, self.now))
            elif isinstance(act, Close):
                self.closed.append((self.name(conn), act))

    def run(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            target, raw = self.queue.pop(0)
            self.handle(target, target.receive(messages.decode(raw), self.now))
        raise AssertionError("the protocol did not settle")


def views(store):
    v = store.views()
    return {name: v[name]["digest"] for name in v}
