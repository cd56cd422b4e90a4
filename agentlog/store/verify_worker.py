"""Entry point of a verify worker process: `python -m agentlog.store.verify_worker` (see verify.py)."""

import sys

from agentlog.store.verify import run_worker

if __name__ == "__main__":
    run_worker(sys.stdin.buffer, sys.stdout.buffer)
