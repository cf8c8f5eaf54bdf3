"""One worker process of the chaos tests: a hub on a RedisBackend that publishes numbered
messages at a steady rate, and a server its clients subscribe through.

python tests/chaos_worker.py '{"url": "redis://...", "rate": 50, "backend": {...}}'

Every message is JSON: {"origin": pid, "n": number, "t": time.monotonic() when sent}.
With "burst": [on, off] it publishes for `on` seconds, then pauses `off` seconds.
Routes: /subscribe (every publish, from this process and the others); /start and /stop
(publishing, each answered "ok"); /stats (send times and the backend's counters, as JSON).
The first stdout line names the URL.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import trio

import trio_ws

TOPIC = "chaos"


class Publisher:
    """Publishes numbered messages until stopped; remembers when each was sent."""

    def __init__(self, rate: float, burst: tuple[float, float] | None) -> None:
        self.rate = rate
        self.burst = burst
        self.sent_at: list[float] = []
        self.started = trio.Event()
        self.stopping = False  # the publish under way finishes: none is cut off by the stop
        self.stopped = trio.Event()

    async def run(self, hub: trio_ws.Hub) -> None:
        await self.started.wait()
        try:
            started = trio.current_time()
            tick = 0
            while not self.stopping:
                tick += 1
                await trio.sleep_until(started + tick / self.rate)  # on time, however slow a publish
                if self.burst is not None:
                    on, off = self.burst
                    if (trio.current_time() - started) % (on + off) >= on:
                        continue
                now = time.monotonic()
                message = {"origin": os.getpid(), "n": len(self.sent_at), "t": now}
                self.sent_at.append(now)
                await hub.publish(TOPIC, json.dumps(message))
        finally:
            self.stopped.set()


async def main(options: dict[str, Any]) -> None:
    backend = trio_ws.RedisBackend(options["url"], **options.get("backend", {}))
    burst = options.get("burst")
    publisher = Publisher(options.get("rate", 50), tuple(burst) if burst else None)
    router = trio_ws.Router()

    @router.route("/subscribe")
    async def subscribe(ws: trio_ws.WebSocket) -> None:
        async with trio_ws.current_hub().subscribe(ws, TOPIC, queue_size=10_000):
            await ws.send("subscribed")
            await ws.wait_closed()

    @router.route("/start")
    async def start(ws: trio_ws.WebSocket) -> None:
        publisher.started.set()
        await ws.send("ok")

    @router.route("/stop")
    async def stop(ws: trio_ws.WebSocket) -> None:
        publisher.stopping = True
        await publisher.stopped.wait()
        await ws.send("ok")

    @router.route("/stats")
    async def stats(ws: trio_ws.WebSocket) -> None:
        counters = {
            "undelivered": backend.undelivered,
            "missed": backend.missed,
            "rejected": backend.rejected,
        }
        await ws.send(json.dumps({"pid": os.getpid(), "sent_at": publisher.sent_at, **counters}))

    async with trio_ws.open_hub(backend=backend) as hub:
        async with trio_ws.open_server(router, "127.0.0.1", 0) as server:
            sys.stdout.write(f"worker {os.getpid()} listening on ws://127.0.0.1:{server.port}/\n")
            sys.stdout.flush()
            await publisher.run(hub)
            await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
