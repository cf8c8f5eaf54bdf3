"""An app with every kind of traffic the metrics count, for the metrics tests:
`python -m trio_ws serve tests.metrics_app:config --workers 2 --metrics`.

- /echo: echoes.
- /held: sends "<pid> <worker slot>", then waits until the client closes.
- /refuse: 403 (plain HTTP, from process_request).
- /overflow: subscribes itself under on_overflow="disconnect" with a queue of one, then
  publishes binary messages to itself until the hub drops it (1013): the client reads nothing.
- /resume: publishes two binary messages, then resumes from before them (recovered), and
  from a position of another epoch (not recovered); sends "done" (text) once both started.
"""

from __future__ import annotations

import os
import uuid

import trio_ws
from trio_ws.metrics import EXPORTER

OVERFLOW_MESSAGE = 256 * 1024
router = trio_ws.Router()


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@router.route("/held")
async def held(ws: trio_ws.WebSocket) -> None:
    await ws.send(f"{os.getpid()} {EXPORTER.worker}")
    await ws.wait_closed()


@router.route("/overflow")
async def overflow(ws: trio_ws.WebSocket) -> None:
    hub = trio_ws.current_hub()
    topic = f"overflow-{uuid.uuid4().hex}"
    async with hub.subscribe(ws, topic, queue_size=1, on_overflow="disconnect") as subscription:
        for _ in range(1000):  # far more than the buffers on the way hold
            await hub.publish(topic, bytes(OVERFLOW_MESSAGE))
            if subscription.phase.value == "ended":
                break
        await ws.wait_closed()


@router.route("/resume")
async def resume(ws: trio_ws.WebSocket) -> None:
    hub = trio_ws.current_hub()
    topic = f"resume-{uuid.uuid4().hex}"
    async with hub.subscribe(ws, topic) as first:
        assert first.position is not None
        await hub.publish(topic, b"1")
        await hub.publish(topic, b"2")
        async with hub.subscribe(ws, topic, since=first.position) as recovered:
            lost = trio_ws.StreamPosition(first.position.offset, "another-epoch")
            async with hub.subscribe(ws, topic, since=lost) as not_recovered:
                assert recovered.recovered is True and not_recovered.recovered is False
                await ws.send("done")
                await ws.wait_closed()


async def refuse(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path_only == "/refuse":
        return trio_ws.Response(403, body="no\n")
    return None


config = trio_ws.ServerConfig(
    handler=router,
    process_request=refuse,
    hub=trio_ws.HubConfig(history_size=100),
    metrics=True,
)
