"""Hub recovery: how long a resuming client takes to receive the publications it missed.

python benchmarks/hub_recovery.py --missed 1000 --repeat 5 [--redis redis://127.0.0.1:6379/0]

One process, one in-process hub with history, a trio_ws server and a trio_ws client on
127.0.0.1. The client subscribes, sees one publication, drops; `--missed` publications are
made while it is away; it reconnects with its last position. The time is from the start of
the reconnect (handshake included) to the last missed publication received, checked to be
every offset once, in order. Printed as JSON: the median and the spread of the runs for
payloads of 100 B and 10 kB, and the messages/s that makes. With `--redis URL`, the hub keeps
its history in that Redis (`RedisBackend`): the missed publications are read back from its
stream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import trio

import trio_ws


async def one_recovery(missed: int, size: int, redis: str | None) -> float:
    """Seconds from reconnecting to holding all `missed` publications."""
    backend = trio_ws.RedisBackend(redis) if redis else None
    topic = f"room-{time.monotonic_ns()}"  # a stream of its own in each run
    async with trio_ws.open_hub(backend=backend, history_size=missed + 10) as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            offset, epoch = ws.path.split("?since=")[1].split(":")
            since = trio_ws.StreamPosition(int(offset), epoch)
            async with hub.subscribe(ws, topic, since=since, queue_size=missed + 10) as subscription:
                assert subscription.recovered
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0, compression=None) as server:
            start = hub.position(topic) if backend is None else (await backend.position(topic, None, None))[0]
            for i in range(missed):
                await hub.publish(topic, f"{i:08}" + "." * (size - 8))
            began = time.perf_counter()
            async with trio_ws.connect(
                f"ws://127.0.0.1:{server.port}/?since={start.offset}:{start.epoch}", compression=None
            ) as ws:
                for i in range(missed):
                    message = await ws.recv()
                    if message[:8] != f"{i:08}":
                        raise AssertionError(f"expected publication {i}, got {message[:8]!r}")
                took = time.perf_counter() - began
    return took


async def main(missed: int, repeat: int, redis: str | None) -> None:
    results = {}
    for size in (100, 10_000):
        runs = [await one_recovery(missed, size, redis) for _ in range(repeat)]
        median = statistics.median(runs)
        results[f"{size} B"] = {
            "missed": missed,
            "median ms": round(median * 1000, 2),
            "min ms": round(min(runs) * 1000, 2),
            "max ms": round(max(runs) * 1000, 2),
            "messages/s": round(missed / median),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", metavar="URL", help="keep the history in this Redis")
    args = parser.parse_args()
    trio.run(main, args.missed, args.repeat, args.redis)
