"""Hypercore beside agentlog for `make bench` (issue 21): the same catch-up, both measured in each run.

Each run measures, beside the primitives (Ed25519, BLAKE2b):
- agentlog: tools/bench_replication.py's catch-up, a new device's `agentlog serve` spawned and dialing A's
  running daemon, timed until it holds A's events;
- Hypercore (the npm package pinned in tools/hypercore/package.json): a writer core of as many blocks, each
  the size of one of our events (signed record and payload), served over TCP on 127.0.0.1 by one node
  process; a new reader core in a second node process, timed from spawning it until it holds every block
  (tools/hypercore/catchup.js).
The two take turns first from run to run. The npm package is installed into a scratch directory under the
system temp dir once, then kept in the user's cache directory, keyed by the package files' hash; without
node, npm or the registry the part is skipped with the reason.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_replication
import benchlib

from agentlog.store import home

PACKAGE = Path(__file__).resolve().parent / "hypercore"
SCRIPT = PACKAGE / "catchup.js"
PACKAGE_FILES = ("package.json", "package-lock.json")
INSTALL_TIMEOUT_S = 300

FIGURES = (
    ("hc_ours", "agentlog catch-up of {hc_events} events, same runs", "events/s"),
    ("hc_peer", "Hypercore catch-up of {hc_events} blocks of {hc_block} B", "events/s"),
    ("hc_ratio", "agentlog over Hypercore, median of per-run ratios", "x"),
)
RATIOS = {"hc_ours": ("verify", "hc_peer"), "hc_peer": ("verify",)}
TARGETS = {"hc_ratio": (">=", 1.0)}


class HypercoreMissing(RuntimeError):
    """node, npm or the hypercore package cannot be had here."""


@dataclass(frozen=True)
class HypercoreSizes:
    events: int = 100_000           # caught up by each side
    batch: int = 1_000              # append_many batch when building A's home


QUICK = HypercoreSizes(events=20_000)


def cache_dir() -> Path:
    """Where the installed package is kept between runs: $XDG_CACHE_HOME or ~/.cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentlog-bench"


def install() -> tuple[str, Path]:
    """(node, its node_modules with hypercore): from the cache, else `npm ci` into a scratch directory under
    the system temp dir, then moved into the cache; HypercoreMissing with a one-line reason where it cannot be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise HypercoreMissing(f"{'node' if node is None else 'npm'} is not installed")
    digest = hashlib.blake2b(b"".join((PACKAGE / f).read_bytes() for f in PACKAGE_FILES), digest_size=8)
    target = cache_dir() / f"hypercore-{digest.hexdigest()}"
    if (target / "node_modules" / "hypercore" / "package.json").is_file():
        return node, target / "node_modules"
    with tempfile.TemporaryDirectory(prefix="agentlog-hypercore-") as scratch:
        for name in PACKAGE_FILES:
            shutil.copy(PACKAGE / name, scratch)
        try:
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=scratch,
                                  capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise HypercoreMissing(f"npm ci of hypercore took over {INSTALL_TIMEOUT_S} s (no registry?)") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise HypercoreMissing(f"npm ci of hypercore failed (no registry?): {first}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        shutil.move(Path(scratch) / "node_modules", staged / "node_modules")
        try:
            staged.rename(target)
        except OSError:                 # another bench installed it meanwhile
            shutil.rmtree(staged)
    return node, target / "node_modules"


class Writer:
    """The node process serving a writer core of `blocks` blocks of `size` bytes on 127.0.0.1."""

    def __init__(self, node: str, modules: Path, path: Path, blocks: int, size: int):
        self.env = {**os.environ, "NODE_PATH": str(modules)}
        self.proc = subprocess.Popen([node, str(SCRIPT), "serve", str(path), str(blocks), str(size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"catchup.js serve exited ({self.proc.wait()}): {self.proc.stderr.read()[-2000:]}")
        ready = json.loads(line)
        if ready["length"] != blocks:
            raise RuntimeError(f"catchup.js serve holds {ready['length']} blocks, not {blocks}")
        self.key, self.port = ready["key"], ready["port"]

    def read(self, node: str, path: Path, blocks: int) -> float:
        """Seconds from spawning a reader on a new core at `path` until it holds every block."""
        start = time.perf_counter()
        done = subprocess.run([node, str(SCRIPT), "read", str(path), self.key, str(self.port)], capture_output=True,
                              text=True, env=self.env, timeout=120 + blocks / 200, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"catchup.js read exited {done.returncode}: {done.stderr[-2000:]}")
        held = json.loads(done.stdout.splitlines()[-1])["held"]
        if held != blocks:
            raise RuntimeError(f"the Hypercore reader holds {held} blocks, not {blocks}")
        return seconds

    def stop(self) -> None:
        """Close its stdin (it ends itself), SIGKILL after 10 s."""
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(sizes, runs: int, quick: bool) -> tuple[list[dict[str, float]], dict]:
    """Install (or find) hypercore, build A's home and the writer core, then `runs` runs of the primitives and
    both catch-ups; everything but the cached package is removed afterwards."""
    node, modules = install()
    hc = QUICK if quick else HypercoreSizes()
    rng = random.Random(21)
    limit = 300 + runs * (240 + hc.events / 500)
    results = []
    info = {"sizes": hc.__dict__, "catch_up": [], "peer_seconds": [], "ratios": [], "load_average": [], "order": [],
            "node": subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip(),
            "hypercore": json.loads((modules / "hypercore" / "package.json").read_text())["version"]}
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-hypercore-") as tmp_name:
        tmp = Path(tmp_name)
        faulthandler.dump_traceback_later(limit, exit=True)
        writer = None
        try:
            a_path, b_paths = bench_replication.group_of(tmp, "a", [f"b{n}" for n in range(runs)])
            with home.open_home(a_path) as a_store:
                first_seq = a_store.heads()[a_store.device].seq
            author, _ = bench_replication.write(a_path, hc.events, hc.batch, rng)
            payload, record = bench_replication.sizes_of(a_path, author, first_seq)
            info["block_bytes"] = round(payload + record)
            info["labels"] = {"hc_events": f"{hc.events:,}", "hc_block": info["block_bytes"]}
            writer = Writer(node, modules, tmp / "hypercore-writer", hc.events, info["block_bytes"])
            for n in range(runs):
                info["load_average"].append(os.getloadavg()[0])
                began = time.perf_counter()
                out = benchlib.bench_crypto(sizes)
                ours_first = n % 2 == 0
                info["order"].append("agentlog first" if ours_first else "Hypercore first")
                for side in ((0, 1) if ours_first else (1, 0)):
                    if side == 0:
                        out["hc_ours"] = bench_replication.catch_up(a_path, b_paths[n], info)["repl_catchup"]
                    else:
                        seconds = writer.read(node, tmp / f"hypercore-reader{n}", hc.events)
                        info["peer_seconds"].append(seconds)
                        out["hc_peer"] = hc.events / seconds
                out["hc_ratio"] = out["hc_ours"] / out["hc_peer"]
                info["ratios"].append(out["hc_ratio"])
                results.append(out)
                print(f"hypercore run {n + 1}/{runs} done in {time.perf_counter() - began:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            if writer is not None:
                writer.stop()
            faulthandler.cancel_dump_traceback_later()
    return results, info


def print_notes(info: dict, figures: dict, runs: int) -> None:
    """What the Hypercore figures measured, below the table."""
    ratios = [r["value"] for r in figures.get("hc_ours", {}).get("ratio", ()) if r["to"] == "hc_peer"]
    medians = f", ratio of the medians {ratios[0]:.2f}" if ratios else ""
    print(f"\nhypercore figures: {runs} run{'s' * (runs != 1)}, agentlog's catch-up and Hypercore "
          f"{info['hypercore']}'s (node {info['node']}) taking turns first ({', '.join(info['order'])}); agentlog: "
          f"B's `serve` spawned until B's frontier is A's (as in the replication figures); Hypercore: a new reader "
          f"core's node process spawned until it holds every block of a writer core served by another node process "
          f"over TCP on 127.0.0.1 (Hypercore signs the tree once per append batch, 1,000 blocks here, not each "
          f"block); blocks of {info['block_bytes']} B, one of our events' signed record and payload; per-run ratios "
          f"{', '.join(f'{r:.2f}' for r in info['ratios'])}{medians}; 1-minute load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in info['load_average'])} on {os.cpu_count()} cpus")


def main() -> int:
    return benchlib.part_main(__doc__.splitlines()[0], run, (*benchlib.primitives("sign", "verify"), *FIGURES),
                              RATIOS, TARGETS, print_notes, skipped=(HypercoreMissing,))


if __name__ == "__main__":
    sys.exit(main())
