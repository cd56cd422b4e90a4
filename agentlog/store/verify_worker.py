"""Signature checks of `agentlog verify` in helper processes: `python -m agentlog.store.verify_worker SIZE`.

Ed25519 verification is most of a verify's cost. The parent scans the store once and hands fixed-size records
(event key ++ id ++ signature, SIZE bytes) to helpers in frames; each helper checks every record's signature
against the key's author and, at the end of its input, writes back the records that failed. A helper imports
only agentlog.crypto, so it starts in a few tens of milliseconds and never opens the store.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading

from agentlog import crypto

FRAME = 512
"""Records per frame: about 30 ms of checks, so helpers share the work evenly and the last one ends soon."""


def failed_records(frame: bytes, size: int) -> bytes:
    """The records of `frame` whose signature (last 64 bytes) does not verify over the id (the 32 before it)
    under the author (the first 32 bytes), concatenated."""
    failed = bytearray()
    verify, sig_at, id_at = crypto.verify, size - crypto.SIG_LEN, size - crypto.SIG_LEN - crypto.ID_LEN
    for at in range(0, len(frame), size):
        record = frame[at : at + size]
        if not verify(record[:32], record[id_at:sig_at], record[sig_at:]):
            failed += record
    return bytes(failed)


class SignaturePool:
    """`jobs` helper processes checking the frames `put` here, each fed by a thread of its own (a helper takes
    the next frame when it has read the last, so a faster one takes more); `finish` checks what is left
    in this process and gives every failing record."""

    def __init__(self, jobs: int, size: int):
        self._size = size
        self._frames: queue.Queue = queue.Queue()
        self._failed: list[bytes] = []
        self._errors: list[str] = []
        self._procs = [subprocess.Popen([sys.executable, "-m", __name__, str(size)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(jobs)]
        self._feeders = [threading.Thread(target=self._feed, args=(p,), daemon=True) for p in self._procs]
        for t in self._feeders:
            t.start()

    def put(self, frame: bytes) -> None:
        self._frames.put(frame)

    def finish(self) -> tuple[bytes, list[str]]:
        """Wait for every frame's checks (checking here the frames no helper has taken yet): the failing
        records, and why a helper failed (then some frames may be unchecked)."""
        while True:
            try:
                frame = self._frames.get_nowait()
            except queue.Empty:
                break
            self._failed.append(failed_records(frame, self._size))
        for _ in self._procs:
            self._frames.put(None)
        for t in self._feeders:
            t.join()
        return b"".join(self._failed), self._errors

    def close(self) -> None:
        """Stop every helper (after finish, they have exited already)."""
        for p in self._procs:
            if p.poll() is None:
                p.kill()
        for _ in self._procs:
            self._frames.put(None)
        for t in self._feeders:
            t.join()

    def _feed(self, proc: subprocess.Popen) -> None:
        try:
            while (frame := self._frames.get()) is not None:
                proc.stdin.write(len(frame).to_bytes(4, "little"))
                proc.stdin.write(frame)
                proc.stdin.flush()
            out, err = proc.communicate()
        except (OSError, ValueError) as exc:          # it died before reading every frame
            proc.kill()
            lines = proc.stderr.read().decode(errors="replace").strip().splitlines()
            self._errors.append(lines[-1] if lines else f"{type(exc).__name__}: {exc}")
            return
        if proc.returncode:
            lines = err.decode(errors="replace").strip().splitlines()
            self._errors.append(lines[-1] if lines else f"exit status {proc.returncode}")
        else:
            self._failed.append(out)


def serve(stdin, stdout, size: int) -> None:
    """Helper side: check each frame read from `stdin`; at its end, write the failing records to `stdout`."""
    failed = []
    while len(head := stdin.read(4)) == 4:
        frame = stdin.read(int.from_bytes(head, "little"))
        failed.append(failed_records(frame, size))
    stdout.write(b"".join(failed))
    stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, int(sys.argv[1]))
