"""The server side of hub_fanout.py: `/sub` subscribes to topic "fan", `/pub` publishes each
text it receives there. Each client first gets the serving process's id."""

from __future__ import annotations

import os

import trio_ws

router = trio_ws.Router()


@router.route("/sub")
async def subscribe(ws: trio_ws.WebSocket) -> None:
    hub = trio_ws.current_hub()
    async with hub.subscribe(ws, "fan", queue_size=4096):
        await ws.send(str(os.getpid()))
        await ws.wait_closed()


@router.route("/pub")
async def publish(ws: trio_ws.WebSocket) -> None:
    hub = trio_ws.current_hub()
    await ws.send(str(os.getpid()))
    async for message in ws:
        await hub.publish("fan", message)
