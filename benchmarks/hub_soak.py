"""Hub soak: two server processes share a hub through a real Redis for a fixed time, under
subscribe/unsubscribe churn, with bytearray and memoryview payloads that the publisher
overwrites or releases right after each publish, slow subscribers under both overflow
policies, and Redis killed and restarted twice. Not part of the test suite (a short run of
it is).

python benchmarks/hub_soak.py --minutes 10

Each server process publishes every topic t0..t9 20 times a second (text, bytearray and
memoryview in turn, 50 B to 2 KB) and topic "bulk" 20 times a second (64 KB). This process
runs, on each server, 10 fast subscribers (one per topic), 3 fast "bulk" subscribers, 4
slow "bulk" subscribers (2 per policy, queue of 8) and 10 churning subscribers (a random
topic, for 0.5 to 3 s). Every message is checked against the model: intact, in order, never
twice; from this server, never a gap (except for slow drop_oldest subscribers); from the
other server, gaps only around a Redis restart; slow "disconnect" subscribers are closed
with 1013 (and slow subscribers of either policy may be closed by the server's keepalive,
their pongs stuck behind megabytes they have not read). Server RSS is sampled every 10 s
and must stay flat (the last sample within 10% or 8 MiB of the one at the first minute, as
in soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

import trio_ws

ROOT = Path(__file__).resolve().parent.parent
TOPICS = [f"t{i}" for i in range(10)]
BULK = "bulk"
SAMPLE_EVERY = 10  # seconds
OUTAGE_GRACE = 5.0  # seconds after a restart in which cross-process gaps are expected


def payload(origin: int, topic: str, number: int) -> bytes:
    """Message `number` of `origin` on `topic`: a header, then filler derived from it."""
    size = 64_000 if topic == BULK else 50 + (number * 7919) % 1950
    header = f"{origin}:{topic}:{number}:".encode()
    filler = (str(number).encode() * (size // max(1, len(str(number))) + 1))[: max(0, size - len(header))]
    return header + filler


async def serve(redis_url: str) -> None:
    """One server process: publishes on every topic, serves /sub/<topic>?policy=..."""
    backend = trio_ws.RedisBackend(redis_url)
    async with trio_ws.open_hub(backend=backend) as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            topic = ws.path.split("/")[2].split("?")[0]
            policy = "disconnect" if "policy=disconnect" in ws.path else "drop_oldest"
            queue = 8 if "slow" in ws.path else 256
            await ws.send(f"hello {os.getpid()}")  # before any publish: the subscription starts now
            async with hub.subscribe(ws, topic, queue_size=queue, on_overflow=policy):  # type: ignore[arg-type]
                await ws.wait_closed()

        async def publish(topic: str) -> None:
            buffer = bytearray()
            number = 0
            started = trio.current_time()
            while True:
                number += 1
                await trio.sleep_until(started + number / 20)
                data = payload(os.getpid(), topic, number)
                kind = number % 3
                if kind == 0:
                    await hub.publish(topic, data.decode())
                elif kind == 1:  # a reused buffer, overwritten as soon as publish returns
                    buffer[:] = data
                    await hub.publish(topic, buffer)
                    buffer[:] = b"\xee" * len(buffer)
                else:  # a view, released as soon as publish returns
                    scratch = bytearray(data)
                    with memoryview(scratch) as view:
                        await hub.publish(topic, view)
                    scratch[:] = b"\xee" * len(scratch)

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server, trio.open_nursery() as nursery:
            for topic in [*TOPICS, BULK]:
                nursery.start_soon(publish, topic)
            print(f"listening on {server.port}", flush=True)
            await trio.sleep_forever()


@dataclass
class Model:
    """What every subscriber saw, checked as it arrives."""

    outages: list[tuple[float, float]] = field(default_factory=list)  # (killed at, grace ends)
    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def in_outage(self, at: float) -> bool:
        return any(start <= at <= end for start, end in self.outages)

    def violate(self, what: str) -> None:
        self.counts["violations"] += 1
        if len(self.violations) < 20:
            self.violations.append(what)


async def subscriber(
    port: int, topic: str, model: Model, *, kind: str, stay: float | None = None, policy: str = "drop_oldest"
) -> None:
    """Subscribe to `topic` on the server at `port`; check every message against the model."""
    slow = kind == "slow"
    path = f"/sub/{topic}?policy={policy}" + ("&slow" if slow else "")
    # A slow subscriber pings nobody: the server decides its fate (policy, or keepalive).
    # Uncompressed, so that the filler (which compresses to nothing) really fills the buffers.
    options: dict[str, object] = {"max_queue": 2, "ping_interval": None, "compression": None} if slow else {}
    last: dict[int, int] = {}
    async with trio_ws.connect(f"ws://127.0.0.1:{port}{path}", max_size=None, **options) as ws:
        local = int(str(await ws.recv()).split()[1])
        with trio.move_on_after(stay if stay is not None else float("inf")):
            try:
                async for message in ws:
                    data = message.encode() if isinstance(message, str) else message
                    origin_text, got_topic, number_text, _ = data.split(b":", 3)
                    origin, number = int(origin_text), int(number_text)
                    if data != payload(origin, got_topic.decode(), number) or got_topic.decode() != topic:
                        model.violate(f"{kind} {topic}: message {origin}:{number} is not intact")
                    previous = last.get(origin)
                    if previous is not None and number <= previous:
                        model.violate(
                            f"{kind} {topic}: {origin}:{number} after {previous} (twice or reordered)"
                        )
                    elif previous is not None and number > previous + 1:
                        model.counts[f"gaps {kind} {'local' if origin == local else 'remote'}"] += 1
                        allowed = (slow and policy == "drop_oldest") or (
                            origin != local and model.in_outage(time.monotonic())
                        )
                        if not allowed:
                            model.violate(f"{kind} {topic}: {origin} jumped {previous} -> {number}")
                    last[origin] = number
                    model.counts[f"delivered {kind}"] += 1
                    if slow:
                        await trio.sleep(0.1)
            except trio_ws.ConnectionClosed as exc:
                if exc.code == 1013 and slow and policy == "disconnect":
                    model.counts["slow subscribers closed with 1013"] += 1
                    return
                if exc.code == 1011 and slow:  # its pong waited behind megabytes it had not read
                    model.counts["slow subscribers closed by the server's keepalive"] += 1
                    return
                raise


async def run(minutes: float) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import RedisServer, rss_of  # the tests' launcher: a real redis-server

    redis = RedisServer()
    redis.start()
    servers = [
        subprocess.Popen([sys.executable, __file__, "--serve", redis.url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    ports = [int(server.stdout.readline().split()[-1]) for server in servers]  # type: ignore[union-attr]
    model = Model()
    samples: list[tuple[float, list[int]]] = []
    started = time.monotonic()
    duration = minutes * 60

    async def forever(port: int, topic: str, kind: str, policy: str = "drop_oldest") -> None:
        while True:
            try:
                await subscriber(port, topic, model, kind=kind, policy=policy)
            except (trio_ws.ConnectionClosed, OSError) as exc:
                model.violate(f"{kind} {topic} on {port}: {exc!r}")
                await trio.sleep(1)

    async def churn(port: int) -> None:
        while True:
            await subscriber(port, random.choice(TOPICS), model, kind="churn", stay=random.uniform(0.5, 3))
            model.counts["churned"] += 1

    async def restart_redis_twice() -> None:
        for fraction in (1 / 3, 2 / 3):
            await trio.sleep_until(trio.current_time() + started + duration * fraction - time.monotonic())
            killed = time.monotonic()
            model.outages.append((killed - 0.1, float("inf")))
            redis.kill()
            await trio.sleep(1)
            await trio.to_thread.run_sync(redis.start)
            model.outages[-1] = (killed - 0.1, time.monotonic() + OUTAGE_GRACE)
            model.counts["Redis restarts"] += 1

    try:
        with trio.move_on_after(duration):
            async with trio.open_nursery() as nursery:
                for port in ports:
                    for topic in TOPICS:
                        nursery.start_soon(forever, port, topic, "fast")
                    for _ in range(3):
                        nursery.start_soon(forever, port, BULK, "fast")
                    for policy in ("drop_oldest", "disconnect") * 2:
                        nursery.start_soon(forever, port, BULK, "slow", policy)
                    for _ in range(10):
                        nursery.start_soon(churn, port)
                nursery.start_soon(restart_redis_twice)
                while True:
                    await trio.sleep(SAMPLE_EVERY)
                    rss = [rss_of(server.pid) for server in servers]
                    samples.append((time.monotonic() - started, rss))
                    shown = "  ".join(f"{r / 2**20:6.1f}" for r in rss)
                    print(f"{samples[-1][0]:6.0f} s  RSS MiB {shown}  {dict(model.counts)}", flush=True)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        redis.stop()
    baseline = next((s for s in samples if s[0] >= 60), samples[0])
    flat = all(
        last <= first * 1.1 or last - first < 8 * 2**20
        for first, last in zip(baseline[1], samples[-1][1], strict=True)
    )
    print(
        json.dumps(
            {
                "RSS MiB at the baseline": [round(r / 2**20, 1) for r in baseline[1]],
                "RSS MiB at the end": [round(r / 2**20, 1) for r in samples[-1][1]],
                "RSS MiB max": [round(max(s[1][i] for s in samples) / 2**20, 1) for i in range(2)],
                **model.counts,
                "violations": model.violations,
            },
            indent=1,
        )
    )
    ok = flat and not model.violations and model.counts["Redis restarts"] == 2
    ok = ok and model.counts["slow subscribers closed with 1013"] > 0 and model.counts["churned"] > 0
    print("flat and consistent" if ok else "NOT FLAT OR INCONSISTENT")
    return 0 if ok else 1


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--serve", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve)
    else:
        sys.exit(trio.run(run, args.minutes))
