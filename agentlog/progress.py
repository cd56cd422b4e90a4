"""Progress on a terminal for long work; silent when stderr is piped or output is --json."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self._last = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        pct = 100 * done // total if total else 100
        self.stream.write(f"\r{self.label}: {done}/{total} ({pct}%)")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
