"""What one nats-server with JetStream holds on this machine, measured with raw nats-py (no agentlog code):
the figures in docs/scaling.md.

Starts its own `nats-server -js` (tools/natslib.py) in a temporary directory, then measures, beside two
primitives taken in the same run (XChaCha20-Poly1305 seal of a relay message's size, a core NATS round trip):
- one stream: publish rate with each ack awaited (what a device does for one event) and with a window of
  unacknowledged publishes (what a catch-up does), each message with a Nats-Msg-Id (dedup on); consume rate
  of an ordered consumer (no acks) and of a durable pull consumer acking every message;
- groups, stream per group: streams created up to each level in --groups, each with --devices durable
  consumers (one per device) and a few messages per device; at each level the creation rates, the server's
  RSS, open files and store size, and the publish and fetch rates across random groups;
- groups, one shared stream: the same groups as subject-filtered consumers on one stream `agentlog.>`;
- connections: --connections clients connected at once (one per device), the RSS each costs.

    python tools/nats_scaling.py [--groups 100,1000,3000] [--shared-groups 100,1000] [--devices 20] [--quick]
                                  [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import nats
import natslib
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

MESSAGE_BYTES = 400
"""About one sealed relay message: a small event's record and payload, framed, plus key id, nonce and tag."""
PER_DEVICE = 5
"""Messages each device publishes into its group's stream at the group levels."""
GROUP_MAX_BYTES = 16 << 20
"""max_bytes of each group's stream at the group levels: the server reserves every stream's max_bytes from its
store limit, so the relay's default (1 GiB) would stop a level at the store's size in GiB."""
SHARED_MAX_BYTES = 8 << 30
"""max_bytes of the one shared stream: room for every level's messages (one bound for all groups)."""
RELAY_DEFAULT_MAX_BYTES = 1 << 30
"""The relay's default stream bound (`peers add --stream-max-mb`): how many such streams the server accepts."""
SAMPLE = 2_000
"""Publishes and fetches timed across random groups at each level."""


def tag(g: int) -> str:
    return f"{g:032x}"


def stream_config(name: str, subjects: list[str], max_bytes: int = GROUP_MAX_BYTES) -> StreamConfig:
    """A stream as the relay makes it: file storage, bounded by age and bytes, 2-minute dedup window."""
    return StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE, max_age=30 * 86400,
                        max_bytes=max_bytes, duplicate_window=120)


def durable(name: str, subject: str | None = None) -> ConsumerConfig:
    return ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                          filter_subject=subject)


async def round_trip(nc, n: int) -> float:
    """Core NATS round trip (PING/PONG through flush) p50, ms: the transport's floor."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await nc.flush()
        times.append(time.perf_counter_ns() - start)
    return benchlib.percentile(times, 50) / 1e6


async def one_stream(nc, n: int) -> dict[str, float]:
    """Publish and consume rates on one stream."""
    js = nc.jetstream()
    await js.add_stream(stream_config("ONE", ["one.>"], RELAY_DEFAULT_MAX_BYTES))
    body, out, lat = os.urandom(MESSAGE_BYTES), {}, []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter_ns()
        await js.publish(f"one.{i % 20}", body, headers={"Nats-Msg-Id": f"s{i}"})
        lat.append(time.perf_counter_ns() - t)
    out["pub_sync"] = benchlib.rate(n, time.perf_counter() - start)
    out["pub_sync_p50"], out["pub_sync_p99"] = benchlib.percentile(lat, 50) / 1e6, benchlib.percentile(lat, 99) / 1e6
    start = time.perf_counter()
    for i in range(n):
        await js.publish_async(f"one.{i % 20}", body, headers={"Nats-Msg-Id": f"a{i}"}, wait_stall=10)
    await js.publish_async_completed()
    out["pub_window"] = benchlib.rate(n, time.perf_counter() - start)
    total = (await js.stream_info("ONE")).state.messages
    if total != 2 * n:
        raise RuntimeError(f"the stream holds {total} messages, {2 * n} were published")
    start = time.perf_counter()
    seen, done = [0], asyncio.Event()

    async def count(msg) -> None:
        seen[0] += 1
        if seen[0] == total:
            done.set()
    sub = await js.subscribe("one.>", cb=count, ordered_consumer=True, pending_msgs_limit=total)
    await asyncio.wait_for(done.wait(), 120)
    out["consume_ordered"] = benchlib.rate(total, time.perf_counter() - start)
    await sub.unsubscribe()
    psub = await js.pull_subscribe("one.>", "reader", config=durable("reader"))
    got, start = 0, time.perf_counter()
    while got < total:
        for msg in await psub.fetch(min(500, total - got), timeout=10):
            await msg.ack()
            got += 1
    await nc.flush()
    out["consume_acked"] = benchlib.rate(total, time.perf_counter() - start)
    await js.delete_stream("ONE")
    return out


async def grow_groups(nc, js, first: int, last: int, devices: int, shared: bool) -> tuple[float, float]:
    """Groups first..last-1 with their device consumers and messages: (streams/s, consumers/s)."""
    body = os.urandom(MESSAGE_BYTES)
    stream_s = consumer_s = 0.0
    for g in range(first, last):
        start = time.perf_counter()
        if not shared:
            await js.add_stream(stream_config(f"AGENTLOG_{tag(g)}", [f"agentlog.{tag(g)}.>"]))
        stream_s += time.perf_counter() - start
        start = time.perf_counter()
        for d in range(devices):
            await js.add_consumer("SHARED" if shared else f"AGENTLOG_{tag(g)}",
                                  durable(f"g{g}d{d}", f"agentlog.{tag(g)}.>" if shared else None))
        consumer_s += time.perf_counter() - start
        for d in range(devices):
            for k in range(PER_DEVICE):
                await js.publish_async(f"agentlog.{tag(g)}.{d:032x}", body, headers={"Nats-Msg-Id": f"{g}.{d}.{k}"},
                                       wait_stall=10)
    await js.publish_async_completed()
    return benchlib.rate(last - first, stream_s), benchlib.rate((last - first) * devices, consumer_s)


async def across_groups(js, groups: int, devices: int, shared: bool, rng: random.Random) -> dict[str, float]:
    """Publish (ack awaited) and fetch-and-ack one message, each to a random group's stream and device."""
    body, pubs, fetches = os.urandom(MESSAGE_BYTES), [], []
    for i in range(SAMPLE):
        g, d = rng.randrange(groups), rng.randrange(devices)
        t = time.perf_counter_ns()
        await js.publish(f"agentlog.{tag(g)}.{d:032x}", body, headers={"Nats-Msg-Id": f"x{i}"})
        pubs.append(time.perf_counter_ns() - t)
    for _ in range(SAMPLE // 4):
        g, d = rng.randrange(groups), rng.randrange(devices)
        stream = "SHARED" if shared else f"AGENTLOG_{tag(g)}"
        t = time.perf_counter_ns()
        sub = await js.pull_subscribe_bind(f"g{g}d{d}", stream)
        msg = (await sub.fetch(1, timeout=10))[0]
        await msg.ack_sync()
        fetches.append(time.perf_counter_ns() - t)
        await sub.unsubscribe()
    return {"pub_p50": benchlib.percentile(pubs, 50) / 1e6, "pub_p99": benchlib.percentile(pubs, 99) / 1e6,
            "pub_rate": benchlib.rate(SAMPLE, sum(pubs) / 1e9),
            "fetch_p50": benchlib.percentile(fetches, 50) / 1e6, "fetch_p99": benchlib.percentile(fetches, 99) / 1e6}


async def group_levels(server: natslib.NatsServer, levels: list[int], devices: int, shared: bool) -> list[dict]:
    """Grow the groups level by level; after each level, what the server holds and how fast it still serves."""
    nc = await nats.connect(server.url, max_reconnect_attempts=0)
    js, rng, rows, have = nc.jetstream(timeout=30), random.Random(7), [], 0
    rss0 = server.rss_mb()
    try:
        if shared:
            await js.add_stream(stream_config("SHARED", ["agentlog.>"], SHARED_MAX_BYTES))
        for level in levels:
            streams_per_s, consumers_per_s = await grow_groups(nc, js, have, level, devices, shared)
            have = level
            jsz = server.monitor("jsz")
            row = {"groups": level, "devices": level * devices, "streams": jsz["streams"],
                   "consumers": jsz["consumers"], "messages": jsz["messages"],
                   "streams_per_s": streams_per_s, "consumers_per_s": consumers_per_s,
                   "rss_mb": server.rss_mb(), "rss_growth_mb": server.rss_mb() - rss0,
                   "open_files": server.open_files(), "store_mb": server.store_mb()}
            row.update(await across_groups(js, level, devices, shared, rng))
            rows.append(row)
            print(f"  {'shared' if shared else 'per-group'} {json.dumps(row)}", file=sys.stderr, flush=True)
    finally:
        await nc.close()
    return rows


async def reservations(server: natslib.NatsServer) -> dict[str, float]:
    """Streams of the relay's default max_bytes created until the server refuses one (it reserves each one's
    max_bytes from its store limit), beside that limit."""
    nc = await nats.connect(server.url, max_reconnect_attempts=0)
    js, created = nc.jetstream(timeout=30), 0
    try:
        while created < 100_000:
            try:
                await js.add_stream(stream_config(f"R{created}", [f"r.{created}.>"], RELAY_DEFAULT_MAX_BYTES))
            except nats.js.errors.APIError as exc:
                refusal = str(exc.description)
                break
            created += 1
        else:
            refusal = "none"
    finally:
        await nc.close()
    limit = server.monitor("jsz")["config"]["max_storage"]
    return {"streams": created, "max_storage_gb": limit / (1 << 30), "refusal": refusal}


async def connections(server: natslib.NatsServer, n: int) -> dict[str, float]:
    """n clients connected at once, as n devices online: RSS per connection."""
    before = server.rss_mb()
    clients = []
    try:
        for i in range(0, n, 100):
            clients += await asyncio.gather(*(nats.connect(server.url, max_reconnect_attempts=0)
                                              for _ in range(min(100, n - i))))
        await asyncio.sleep(1)
        return {"connections": len(clients), "kb_per_connection": (server.rss_mb() - before) * 1024 / len(clients),
                "rss_mb": server.rss_mb()}
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def measure(args, tmp: Path) -> dict:
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    out["aead_seal"] = benchlib.bench_aead(20_000)["aead_seal"]
    server = natslib.NatsServer(tmp / "one").start()
    try:
        out["nats_server"] = server.monitor("varz")["version"]
        nc = await nats.connect(server.url)
        out["round_trip_p50"] = await round_trip(nc, 2_000)
        runs = [await one_stream(nc, args.messages) for _ in range(args.runs)]
        out["one_stream"] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  one stream {json.dumps(out['one_stream'])}", file=sys.stderr, flush=True)
        await nc.close()
        out["connections"] = await connections(server, args.connections)
        print(f"  connections {json.dumps(out['connections'])}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    server = natslib.NatsServer(tmp / "reserve").start()
    try:
        out["reservations"] = await reservations(server)
        print(f"  reservations {json.dumps(out['reservations'])}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    for shared in (False, True):
        server = natslib.NatsServer(tmp / ("shared" if shared else "per-group")).start()
        try:
            levels = args.shared_groups if shared else args.groups
            out["shared" if shared else "per_group"] = await group_levels(server, levels, args.devices, shared)
        finally:
            server.stop()
    return out


def report(out: dict, args) -> None:
    """The figures as docs/scaling.md quotes them."""
    one = out["one_stream"]
    print(f"nats-server {out['nats_server']}, {out['machine']['cpus']} cpus, python {out['machine']['python']}, "
          f"messages of {MESSAGE_BYTES} B, file storage; medians of {args.runs} runs where repeated\n")
    print("primitives in the same run")
    print(f"  XChaCha20-Poly1305 seal of {benchlib.AEAD_PLAIN_BYTES} B  {out['aead_seal']:>12,.0f} ops/s")
    print(f"  core NATS round trip (flush) p50  {out['round_trip_p50']:>12.3f} ms")
    print(f"\none stream, {args.messages:,} messages each way")
    print(f"  publish, each ack awaited          {one['pub_sync']:>12,.0f} msg/s  "
          f"(p50 {one['pub_sync_p50']:.3f} ms, p99 {one['pub_sync_p99']:.3f} ms)")
    print(f"  publish, window of acks            {one['pub_window']:>12,.0f} msg/s")
    print(f"  consume, ordered consumer          {one['consume_ordered']:>12,.0f} msg/s")
    print(f"  consume, durable pull, ack each    {one['consume_acked']:>12,.0f} msg/s")
    con = out["connections"]
    print(f"\nconnections: {con['connections']:,} clients at once, {con['kb_per_connection']:.0f} KB RSS each, "
          f"server RSS {con['rss_mb']:.0f} MB")
    res = out["reservations"]
    print(f"\nstreams of {RELAY_DEFAULT_MAX_BYTES >> 20} MB max_bytes (the relay's default) accepted: "
          f"{res['streams']:,}, then refused ({res['refusal']}); the server's store limit "
          f"{res['max_storage_gb']:.1f} GiB")
    for key, title in (("per_group", "stream per group"), ("shared", "one shared stream, filtered consumers")):
        bound = f"{GROUP_MAX_BYTES >> 20} MB max_bytes per group stream" if key == "per_group" else \
            f"{SHARED_MAX_BYTES >> 30} GiB max_bytes for all"
        print(f"\ngroups, {title}, {args.devices} devices each ({PER_DEVICE} messages per device, {bound})")
        print(f"  {'groups':>7} {'consumers':>9} {'streams/s':>9} {'cons/s':>7} {'RSS MB':>7} {'files':>6} "
              f"{'store MB':>8} {'pub p50':>8} {'pub p99':>8} {'fetch p50':>9} {'fetch p99':>9}")
        for r in out[key]:
            streams_per_s = "-" if key == "shared" else f"{r['streams_per_s']:,.0f}"
            print(f"  {r['groups']:>7,} {r['consumers']:>9,} {streams_per_s:>9} {r['consumers_per_s']:>7,.0f} "
                  f"{r['rss_mb']:>7,.0f} {r['open_files']:>6,} {r['store_mb']:>8,.1f} {r['pub_p50']:>8.3f} "
                  f"{r['pub_p99']:>8.3f} {r['fetch_p50']:>9.3f} {r['fetch_p99']:>9.3f}")
    print("\npub: publish with ack awaited, to a random group's stream; fetch: bind a random device's durable "
          "consumer, fetch one message, ack it synchronously (ms)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", default="100,1000,3000", help="group levels, comma-separated (cumulative)")
    p.add_argument("--shared-groups", default="100,1000",
                   help="group levels of the shared stream (its filtered consumers slow down as it grows)")
    p.add_argument("--devices", type=int, default=20, help="devices (durable consumers) per group")
    p.add_argument("--messages", type=int, default=20_000, help="messages per direction on one stream")
    p.add_argument("--connections", type=int, default=2_000, help="clients connected at once")
    p.add_argument("--runs", type=int, default=3, help="runs of the one-stream figures")
    p.add_argument("--quick", action="store_true", help="small levels, for a smoke run")
    p.add_argument("--json", type=Path, help="write every figure here too")
    args = p.parse_args(argv)
    if args.quick:
        args.groups, args.shared_groups = "10,50", "10,50"
        args.devices, args.messages, args.connections, args.runs = 5, 2_000, 100, 1
    args.groups = [int(g) for g in args.groups.split(",")]
    args.shared_groups = [int(g) for g in args.shared_groups.split(",")]
    try:
        natslib.binary()
    except natslib.NatsMissing as exc:
        print(f"nats_scaling: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="agentlog-nats-scaling-") as tmp:
        out = asyncio.run(measure(args, Path(tmp)))
    report(out, args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
