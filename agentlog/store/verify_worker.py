"""Signature checks of `agentlog verify` in helper processes: `python -m agentlog.store.verify_worker STORE`.

Ed25519 verification is most of a verify's cost. Each helper opens the store read-only, in one read snapshot,
and checks the chunks (CHUNK events each, in key order) it takes from a queue it shares with the parent: a pipe
of chunk numbers on its stdin, each read whole by one reader. A faster helper takes more, the parent takes what
is left when its own work is done, and no helper waits for the parent (busy in Python, holding its GIL) between
chunks. Helpers start before the parent's walk of the file's structure and check meanwhile: one reading a damaged
file may die or stop, never the parent, which reports the walk's findings and ends them. A helper imports only
lmdb and agentlog.crypto, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import select
import sys
import threading

import lmdb

from agentlog import crypto

CHUNK = 512
"""Events per chunk: about 30 ms of checks, so helpers share the work evenly and the last one ends soon."""
KEY_LEN = 44
"""An event key (agentlog.store.layout.KEY_LEN); a forked branch's keys are longer, and not checked here."""
MAX_DBS = 64
"""agentlog.store.layout.MAX_DBS: what Store opens the environment with."""
ORDER = 4
"""Bytes of a chunk number in the queue (little-endian)."""
ORDERS_PER_WRITE = select.PIPE_BUF // ORDER
"""Chunk numbers written to the queue at once: a write of at most PIPE_BUF bytes lands whole, so a read of ORDER
bytes always takes exactly one number."""


class ChunkReader:
    """Checks chunks of the events database in one read transaction, each chunk after the last one."""

    def __init__(self, txn, db):
        self._cur = txn.cursor(db=db)
        self._found = self._cur.first()
        self._at = 0

    def check(self, chunk: int) -> tuple[bytes, bool]:
        """The keys (concatenated) of the chunk's events whose signature does not verify over the id under the
        key's author, and whether the database ends within it."""
        cur, found, verify, blake = self._cur, self._found, crypto.verify, crypto.blake2b256
        while found and self._at < chunk * CHUNK:
            found, self._at = cur.next(), self._at + 1
        failed = bytearray()
        end = (chunk + 1) * CHUNK
        while found and self._at < end:
            key, record = cur.item()
            if len(key) == KEY_LEN and len(record) > crypto.SIG_LEN and \
                    not verify(key[:32], blake(record[: -crypto.SIG_LEN]), record[-crypto.SIG_LEN :]):
                failed += key
            found, self._at = cur.next(), self._at + 1
        self._found = found
        return bytes(failed), not found


class SignaturePool:
    """`jobs` helper processes checking chunks of the store at `path`, taken from a queue of the chunk numbers
    below `chunks` (a thread writes them); `finish` checks here the chunks left and gives every failing key."""

    def __init__(self, jobs: int, path: str, chunks: int):
        from agentlog.store.workers import spawn  # the store stack: loaded here in the parent, never in a helper
        self.txnids: list[int] = []
        self._chunks = chunks
        self._queue, queue_in = os.pipe()
        try:
            self._procs = [spawn(__name__, path, stdin=self._queue) for _ in range(jobs)]
        except BaseException:
            os.close(queue_in)
            os.close(self._queue)
            raise
        self._writer = threading.Thread(target=_write_orders, args=(queue_in, chunks), daemon=True)
        self._writer.start()

    def finish(self, reader: ChunkReader) -> tuple[bytes, list[str]]:
        """Check here, with `reader`, the chunks no helper takes (and any past the queue's, if the store grew since
        it was counted), then wait for the helpers: the failing keys, and why a helper failed (then some chunks
        may be unchecked)."""
        failed, ended = [], False
        while (chunk := take(self._queue)) is not None:
            keys, ended = reader.check(chunk)
            failed.append(keys)
        chunk = self._chunks
        while not ended:
            keys, ended = reader.check(chunk)
            failed.append(keys)
            chunk += 1
        errors = []
        for proc in self._procs:
            out, err = proc.communicate()
            if proc.returncode or len(out) < 8:
                lines = err.decode(errors="replace").strip().splitlines()
                errors.append(lines[-1] if lines else f"exit status {proc.returncode}")
            else:
                self.txnids.append(int.from_bytes(out[:8], "little"))
                failed.append(out[8:])
        return b"".join(failed), errors

    def close(self) -> None:
        """Stop every helper (after finish, they have exited already) and the queue's writer."""
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        os.close(self._queue)                 # a writer blocked on a full queue fails and ends
        self._writer.join()


def _write_orders(fd: int, chunks: int) -> None:
    """Write the chunk numbers below `chunks` to the queue at `fd`, in writes that each land whole, then close it."""
    try:
        for first in range(0, chunks, ORDERS_PER_WRITE):
            os.write(fd, b"".join(n.to_bytes(ORDER, "little") for n in range(first, min(first + ORDERS_PER_WRITE,
                                                                                          chunks))))
    except OSError:                            # every reader is gone: verify ended early
        pass
    finally:
        os.close(fd)


def take(fd: int) -> int | None:
    """The next chunk number from the queue at `fd`, or None when every number is taken and the writer is done."""
    order = os.read(fd, ORDER)
    if not order:
        return None
    if len(order) != ORDER:
        raise EOFError(f"the chunk queue gave {len(order)} bytes, not {ORDER}")
    return int.from_bytes(order, "little")


def serve(queue: int, stdout, path: str) -> None:
    """Helper side: check each chunk taken from the queue at `queue`; at its end, write the read snapshot's id and
    the failing keys."""
    env = lmdb.open(path, max_dbs=MAX_DBS, readonly=True, create=False, subdir=True, readahead=False,
                    max_readers=126)
    with env.begin(db=env.open_db(b"events", create=False)) as txn:
        reader, out = ChunkReader(txn, None), [txn.id().to_bytes(8, "little")]
        while (chunk := take(queue)) is not None:
            out.append(reader.check(chunk)[0])
    stdout.write(b"".join(out))
    stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.fileno(), sys.stdout.buffer, sys.argv[1])
