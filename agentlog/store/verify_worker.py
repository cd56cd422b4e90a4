"""Signature checks of `agentlog verify` in helper processes: `python -m agentlog.store.verify_worker STORE`.

Ed25519 verification is most of a verify's cost. Each helper opens the store read-only, in one read snapshot,
and checks the chunks (CHUNK events each, in key order) the parent hands it one at a time, so a faster one
takes more and the parent takes what is left when it is done. Helpers start before the parent's walk of the
file's structure and check meanwhile: one reading a damaged file may die or stop, never the parent, which
reports the walk's findings and ends them. A helper imports only lmdb and agentlog.crypto, so it starts in a
few tens of milliseconds.
"""

from __future__ import annotations

import itertools
import subprocess
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
    """`jobs` helper processes checking chunks of the store at `path`, each fed by a thread of its own; `finish`
    checks the chunks left in this process and gives every failing key."""

    def __init__(self, jobs: int, path: str):
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._ended = False
        self._failed: list[bytes] = []
        self._errors: list[str] = []
        self.txnids: list[int] = []
        from agentlog.store.workers import spawn  # the store stack: loaded here in the parent, never in a helper
        self._procs = [spawn(__name__, path) for _ in range(jobs)]
        self._feeders = [threading.Thread(target=self._feed, args=(p,), daemon=True) for p in self._procs]
        for t in self._feeders:
            t.start()

    def _claim(self) -> int | None:
        with self._lock:
            return None if self._ended else next(self._next)

    def _end(self) -> None:
        with self._lock:
            self._ended = True

    def finish(self, reader: ChunkReader) -> tuple[bytes, list[str]]:
        """Wait for every chunk's checks (checking here, with `reader`, the chunks no helper has taken yet): the
        failing keys, and why a helper failed (then some chunks may be unchecked)."""
        while (chunk := self._claim()) is not None:
            failed, ended = reader.check(chunk)
            self._failed.append(failed)
            if ended:
                self._end()
        for t in self._feeders:
            t.join()
        return b"".join(self._failed), self._errors

    def close(self) -> None:
        """Stop every helper (after finish, they have exited already)."""
        self._end()
        for p in self._procs:
            if p.poll() is None:
                p.kill()
        for t in self._feeders:
            t.join()

    def _feed(self, proc: subprocess.Popen) -> None:
        try:
            head = proc.stdout.read(8)
            if len(head) != 8:
                raise EOFError("no read snapshot")
            self.txnids.append(int.from_bytes(head, "little"))
            while (chunk := self._claim()) is not None:
                proc.stdin.write(chunk.to_bytes(4, "little"))
                proc.stdin.flush()
                ack = proc.stdout.read(1)
                if ack == b"e":
                    self._end()
                elif ack != b"k":
                    raise EOFError("no answer")
            out, err = proc.communicate()
        except (OSError, ValueError, EOFError) as exc:          # it died, or the parent ended it
            self._end()
            proc.kill()
            proc.wait()
            lines = proc.stderr.read().decode(errors="replace").strip().splitlines()
            self._errors.append(lines[-1] if lines else f"{type(exc).__name__}: {exc}")
            return
        if proc.returncode:
            self._end()
            lines = err.decode(errors="replace").strip().splitlines()
            self._errors.append(lines[-1] if lines else f"exit status {proc.returncode}")
        else:
            self._failed.append(out)


def serve(stdin, stdout, path: str) -> None:
    """Helper side: write the read snapshot's id, then check each chunk read from `stdin`, answering `k` (or `e`
    when the database ends within it); at the end of input, write the failing keys."""
    env = lmdb.open(path, max_dbs=MAX_DBS, readonly=True, create=False, subdir=True, readahead=False,
                    max_readers=126)
    with env.begin(db=env.open_db(b"events", create=False)) as txn:
        stdout.write(txn.id().to_bytes(8, "little"))
        stdout.flush()
        reader, failed = ChunkReader(txn, None), []
        while len(order := stdin.read(4)) == 4:
            keys, ended = reader.check(int.from_bytes(order, "little"))
            failed.append(keys)
            stdout.write(b"e" if ended else b"k")
            stdout.flush()
    stdout.write(b"".join(failed))
    stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1])
