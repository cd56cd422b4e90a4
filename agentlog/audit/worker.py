"""One worker process of `agentlog audit export` on a large store: `python -m agentlog.audit.worker`."""

import sys

from agentlog.audit.export import run_worker

if __name__ == "__main__":
    run_worker(sys.stdin.buffer, sys.stdout.buffer)
