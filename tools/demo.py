"""`make demo`: two devices form a group, learn preferences offline, exchange logs, agree
on what the user prefers (and why), verify, and catch a tampered byte. Runs the real
`agentlog` CLI on throwaway homes."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from agentlog import home
from agentlog.store import Store


def agentlog(home_dir: Path, *args: str, expect: int = 0) -> str:
    """Run one CLI command, echo it like a shell transcript, and return its stdout."""
    print(f"\n$ agentlog --home {home_dir.name} {' '.join(_short(shlex.quote(a)) for a in args)}")
    proc = subprocess.run([sys.executable, "-m", "agentlog", "--home", str(home_dir), *args], capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print("  " + _short(line))
    out = proc.stdout.strip()
    if proc.returncode != expect:
        sys.exit(f"demo: step failed with exit {proc.returncode}")
    return out


def _short(text: str) -> str:
    return text if len(text) <= 110 else text[:100] + " …"


def exchange(a: Path, b: Path) -> None:
    """Copy each device's missing events to the other (the replicator's job, issue 5)."""
    with home.open_home(a) as sa, home.open_home(b) as sb:
        into_b = sb.ingest([(e.record, e.payload) for e in sa.events_after(sb.frontier())])
        into_a = sa.ingest([(e.record, e.payload) for e in sb.events_after(sa.frontier())])
    print(f"\n# exchanged logs: {into_b.accepted} events {a.name} -> {b.name}, {into_a.accepted} {b.name} -> {a.name}"
          " (every one validated: group, enrolment, chain, signature, payload hash)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="agentlog-demo-") as tmp:
        laptop, phone = Path(tmp) / "laptop", Path(tmp) / "phone"
        print("# 1. The laptop starts a group; the phone asks to join.")
        agentlog(laptop, "init", "--name", "laptop")
        device_id = agentlog(phone, "init", "--name", "phone", "--join")
        token = agentlog(laptop, "devices", "add", device_id, "--name", "phone")
        agentlog(phone, "devices", "join", token)

        print("\n# 2. Offline, the phone sees dark mode at night; the laptop sees light mode by day,")
        print("#    decides a font size, and the user corrects it.")
        for _ in range(3):
            agentlog(phone, "observe", "theme", "dark", "--context", "daypart=night")
        for _ in range(2):
            agentlog(laptop, "observe", "theme", "light", "--context", "daypart=day")
        agentlog(laptop, "observe", "units", "metric")
        decision = agentlog(laptop, "decide", "font", "small", "--confidence", "0.8")
        agentlog(laptop, "correct", decision, "large")
        agentlog(phone, "override", "set", "font", "medium")

        print("\n# 3. They meet again and exchange what the other lacks.")
        exchange(laptop, phone)
        agentlog(phone, "log")
        agentlog(phone, "devices", "list")
        agentlog(phone, "verify")

        print("\n# 4. Both devices now hold the same preference view (same digest) and answer alike,")
        print("#    except where the phone overrides for itself.")
        agentlog(phone, "pref", "get", "theme", "--context", "daypart=night")
        agentlog(laptop, "pref", "get", "theme", "--context", "daypart=day")
        agentlog(laptop, "pref", "get", "theme")
        agentlog(laptop, "pref", "get", "font", "--explain")
        agentlog(phone, "pref", "list")
        agentlog(laptop, "status")
        agentlog(phone, "status")
        agentlog(laptop, "replay", "--rebuild")

        print("\n# 5. Someone edits the phone's LMDB file behind agentlog's back.")
        data = phone / "store" / "data.mdb"
        with Store(phone / "store", None) as store:
            target = next(e for e in store.events() if e.header.kind == "observation" and b"metric" in (e.payload or b""))
        raw = bytearray(data.read_bytes())
        at = raw.find(b"metric")
        while at >= 0:
            raw[at : at + 6] = b"METRIC"
            at = raw.find(b"metric", at + 6)
        data.write_bytes(bytes(raw))
        print(f"  (changed the value of {target.header.kind} seq {target.header.seq} from 'metric' to 'METRIC')")
        agentlog(phone, "verify", expect=1)
        print("\ndemo: ok")


if __name__ == "__main__":
    main()
