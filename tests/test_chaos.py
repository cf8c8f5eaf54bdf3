"""Chaos: two worker processes publish 50 messages a second each through a real Redis
while it is SIGKILLed and restarted, cuts idle connections, or turns into a black hole.

For each, measured and checked: the longest time from "Redis is usable again" until
every process's publishes reach the other's clients again; that every loss happened
during an outage and was counted (`undelivered` at the publisher, `missed` at the
receiver); and that a process's own clients lose nothing, ever.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

import trio_ws

from .conftest import ROOT, ExampleProcess, RedisServer
from .relay import BlackHoleRelay
from .traffic import Delivery

pytestmark = pytest.mark.timeout(180)

Outage = tuple[float, float]  # (when it began, when Redis was usable again), time.monotonic()


@dataclass
class Worker:
    process: ExampleProcess
    pid: int
    url: str
    stats: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""


@dataclass
class Run:
    """What every client received from every worker, and the workers' own accounts."""

    workers: list[Worker]
    #: (the worker a client is on, its index there) -> origin pid -> what arrived
    received: dict[tuple[int, int], dict[int, Delivery]] = field(default_factory=dict)

    def delivery(self, origin: Worker, client: tuple[int, int]) -> Delivery:
        got = self.received[client].get(origin.pid, Delivery())
        return Delivery(origin.stats["sent_at"], got.arrived_at, got.duplicates, got.out_of_order)


async def ask(url: str, path: str) -> str:
    async with trio_ws.connect(url + path.lstrip("/"), max_size=None) as ws:
        return str(await ws.recv())


@asynccontextmanager
async def two_workers(redis_url: str, **options: Any) -> AsyncIterator[Run]:
    """Two chaos workers on `redis_url`, two subscribed clients on each, all recording."""
    workers = []
    for _ in range(2):
        # Started in a thread: a relay in this loop must forward the worker's first commands.
        process = await trio.to_thread.run_sync(
            lambda: ExampleProcess(
                "chaos_worker.py",
                json.dumps({"url": redis_url, **options}),
                path=ROOT / "tests" / "chaos_worker.py",
            )
        )
        workers.append(Worker(process, 0, process.url))
    for worker in workers:
        worker.pid = int(json.loads(await ask(worker.url, "stats"))["pid"])
    run = Run(workers)
    try:
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            for index, worker in enumerate(workers):
                for n in range(2):
                    ws = await stack.enter_async_context(trio_ws.connect(worker.url + "subscribe"))
                    assert await ws.recv() == "subscribed"
                    run.received[(index, n)] = {}
                    nursery.start_soon(record, ws, run.received[(index, n)])
            for worker in workers:
                assert await ask(worker.url, "start") == "ok"
            yield run
            for worker in workers:
                assert await ask(worker.url, "stop") == "ok"
            await trio.sleep(1.5)  # what is still on its way
            for worker in workers:
                worker.stats = json.loads(await ask(worker.url, "stats"))
            nursery.cancel_scope.cancel()
    finally:
        for worker in workers:
            worker.stderr = worker.process.stop()


async def record(ws: trio_ws.WebSocket, by_origin: dict[int, Delivery]) -> None:
    async for message in ws:
        event = json.loads(str(message))
        by_origin.setdefault(event["origin"], Delivery()).arrive(event["n"], time.monotonic())


def check(run: Run, outages: list[Outage], target: float, variant: str) -> dict[str, Any]:
    """Every loss inside an outage and counted, none for a process's own clients, and
    delivery back within `target` seconds of Redis being usable; returns the figures."""
    for worker in run.workers:  # shown if the test fails
        print(f"worker {worker.pid} stderr:\n{worker.stderr[-4000:]}")
    print(f"outages: {[(round(a, 2), round(b, 2)) for a, b in outages]}")
    # A message sent this close before Redis died may die with it (in flight): it belongs
    # to that outage.
    margin = 0.05
    ends = [start - margin for start, _ in outages[1:]] + [float("inf")] if outages else []
    recoveries: list[float] = []
    lost_total = counted_total = 0
    for o, origin in enumerate(run.workers):
        for r, receiver in enumerate(run.workers):
            deliveries = [run.delivery(origin, (r, n)) for n in range(2)]
            for delivery in deliveries:
                assert delivery.duplicates == delivery.out_of_order == 0, variant
            if o == r:
                assert [d.lost() for d in deliveries] == [[], []], f"{variant}: local delivery lost messages"
                continue
            lost = deliveries[0].lost()
            assert deliveries[1].lost() == lost, "the two clients of one process saw different losses"
            windows = []
            for (began, usable), until in zip(outages, ends, strict=True):
                recovery = deliveries[0].recovery_after(usable, until)
                recoveries.append(recovery)
                windows.append((began - margin, usable + recovery))
            assert deliveries[0].lost_outside(windows) == [], f"{variant}: lost outside an outage"
            counted = origin.stats["undelivered"] + receiver.stats["missed"]
            # Every loss is counted; a publish cut off in flight may be counted on both sides.
            assert len(lost) <= counted <= len(lost) + len(outages), (variant, len(lost), counted)
            lost_total += len(lost)
            counted_total += counted
    figures = {
        "variant": variant,
        "outages": len(outages),
        "longest recovery (s)": round(max(recoveries, default=0.0), 2),
        "sent": sum(len(w.stats["sent_at"]) for w in run.workers),
        "lost across processes": lost_total,
        "counted (undelivered + missed)": counted_total,
    }
    print(f"chaos {figures}")
    assert max(recoveries, default=0.0) < target, figures
    for worker in run.workers:
        assert worker.stats["rejected"] == 0
        assert "Traceback" not in worker.stderr, worker.stderr
    return figures


async def test_redis_killed_and_restarted_five_times(redis_server: RedisServer) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(2**32)))
    print(f"CHAOS_SEED={seed}")
    rng = random.Random(seed)
    outages: list[Outage] = []
    async with two_workers(redis_server.url) as run:
        for _ in range(5):
            await trio.sleep(rng.uniform(1.5, 3.5))
            began = time.monotonic()
            redis_server.kill()
            await trio.sleep(rng.uniform(0.2, 1.2))
            await trio.to_thread.run_sync(redis_server.start)
            outages.append((began, time.monotonic()))
        await trio.sleep(3)
    check(run, outages, 2.0, "SIGKILL")
    assert all(w.stats["undelivered"] > 0 for w in run.workers)  # the outages were real


async def test_an_idle_timeout_redis_loses_nothing() -> None:
    """`timeout 1` closes publishing connections idle between bursts: no loss at all."""
    server = RedisServer("--timeout", "1")
    server.start()
    try:
        async with two_workers(server.url, burst=[0.5, 2.6]) as run:
            await trio.sleep(10)
        info = server.command("INFO", "stats").decode()
        connections = int(info.split("total_connections_received:")[1].split()[0])
    finally:
        server.stop()
    check(run, [], 2.0, "timeout 1")
    # Redis really cut idle publishers (it counts idleness in whole seconds, hence pauses
    # of 2.6 s): 4 connections to begin with, the test's own, and one more per cut.
    assert connections >= 4 + 1 + 2 * 2, connections
    assert all(w.stats["undelivered"] == w.stats["missed"] == 0 for w in run.workers)


async def test_a_black_hole_between_the_workers_and_redis(redis_server: RedisServer) -> None:
    interval = 1.0
    rng = random.Random()
    outages: list[Outage] = []
    async with trio.open_nursery() as relay_nursery:
        relay = BlackHoleRelay(redis_server.port)
        await relay_nursery.start(relay.run)
        url = f"redis://127.0.0.1:{relay.port}/0"
        backend = {"health_check_interval": interval, "timeout": 0.5}
        async with two_workers(url, backend=backend) as run:
            for _ in range(2):
                await trio.sleep(rng.uniform(2, 3))
                relay.black_hole()  # Redis itself stays usable: a new connection gets through
                outages.append((time.monotonic(), time.monotonic()))
            await trio.sleep(3)
        relay_nursery.cancel_scope.cancel()
    check(run, outages, interval + 1, "black hole")
    assert all(w.stats["missed"] > 0 for w in run.workers)  # the black holes were real
