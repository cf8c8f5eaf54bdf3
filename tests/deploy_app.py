"""A whole application in one `ServerConfig`, for the deployment tests:
`python -m trio_ws serve tests.deploy_app:config [--workers N] [--redis URL]`.

- `hub=HubConfig(history_size=...)`: the hub with history, no CLI flag needed.
- `lifespan`: a task per process that publishes a tick to "ticks" every 20 ms.
- /ticks?offset=N&epoch=E: the ticks, resumed after a position; first a "start" line with
  the worker's pid and whether the resume recovered everything.
- /echo: echoes; "work" makes it busy for WORK_SECONDS, then it answers "done" and echoes on.
- /flood: sends until the client's buffers are full (a client that never reads).
- /ignore: never looks at its connection (a drain must cancel it).
- /pid: sends the worker's pid and VERSION, then echoes.
- /healthz: 200 (plain HTTP), 503 once the server drains.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import trio_ws

VERSION = os.environ.get("DEPLOY_APP_VERSION", "1")
WORK_SECONDS = 2.0
TICK_EVERY = 0.02
router = trio_ws.Router()
state: dict[str, trio_ws.WebSocketServer] = {}


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        if message == "work":
            await trio.sleep(WORK_SECONDS)
            await ws.send("done")
        else:
            await ws.send(message)


@router.route("/pid")
async def pid(ws: trio_ws.WebSocket) -> None:
    await ws.send(f"{os.getpid()} {VERSION}")
    async for message in ws:
        await ws.send(message)


@router.route("/ignore")
async def ignore(ws: trio_ws.WebSocket) -> None:
    """Waits on something else, never looking at its connection again."""
    await trio.sleep_forever()


@router.route("/flood")
async def flood(ws: trio_ws.WebSocket) -> None:
    chunk = b"x" * 65536
    while True:
        await ws.send(chunk)


def tick(pub: trio_ws.Publication) -> str:
    return json.dumps({"offset": pub.offset, "epoch": pub.epoch, "data": pub.data})


@router.route("/ticks")
async def ticks(ws: trio_ws.WebSocket) -> None:
    query = ws.request.query
    since = None
    if "offset" in query:
        since = trio_ws.StreamPosition(int(query["offset"][0]), query["epoch"][0])
    hub = trio_ws.current_hub()
    async with hub.subscribe(ws, "ticks", since=since, format=tick) as sub:
        await ws.send(json.dumps({"start": True, "pid": os.getpid(), "recovered": sub.recovered}))
        await ws.wait_closed()


def health(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path_only != "/healthz":
        return None
    server = state.get("server")
    if server is not None and server.draining.is_set():
        return trio_ws.Response(503, body="draining\n")
    return trio_ws.Response(200, body="ok\n")


@asynccontextmanager
async def publish_ticks(server: trio_ws.WebSocketServer, hub: trio_ws.Hub | None) -> AsyncIterator[None]:
    """The lifespan: a ticker that lives as long as the process."""
    assert hub is not None
    state["server"] = server

    async def ticker() -> None:
        n = 0
        while True:
            await hub.publish("ticks", f"{os.getpid()}-{n}")
            n += 1
            await trio.sleep(TICK_EVERY)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        yield
        nursery.cancel_scope.cancel()


config = trio_ws.ServerConfig(
    handler=router,
    process_request=health,
    hub=trio_ws.HubConfig(history_size=5000, history_ttl=60),
    lifespan=publish_ticks,
    graceful_timeout=3,
    close_timeout=2,
)


@asynccontextmanager
async def fail_to_start(server: trio_ws.WebSocketServer, hub: trio_ws.Hub | None) -> AsyncIterator[None]:
    raise RuntimeError("the database is not there")
    yield  # pragma: no cover


#: A configuration that imports but cannot start: its lifespan fails in every worker.
broken = trio_ws.ServerConfig(handler=router, lifespan=fail_to_start)
