"""The chat demo: `python -m trio_ws demo` serves a page at / and the chat at /ws.

Rooms are Hub topics, so `python -m trio_ws demo --workers 2 --redis URL` runs it in two
processes. Messages are JSON (see docs/demo.md for the schema); bad JSON, unknown types and
over-long texts get an error message back to that client only.
"""

from __future__ import annotations

import contextlib
import json
import os
from importlib.resources import files
from typing import Any

import trio

from .config import ServerConfig
from .connection import WebSocket
from .http import Request, Response
from .hub import current_hub, open_hub
from .server import open_server

__all__ = ["DemoApp", "app", "config", "run"]

MAX_TEXT = 1000  # characters in one chat message
MAX_NAME = 40  # characters in a nickname or a room name
MAX_FRAME = 2**16  # bytes in one WebSocket message: larger closes with 1009
JOIN_TIMEOUT = 30


def _event(kind: str, room: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "room": room, **fields})


def _error(why: str) -> str:
    return json.dumps({"type": "error", "error": why})


def _valid_label(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) <= MAX_NAME


class DemoApp:
    """A handler with its own `process_request`: the page at /, the chat at /ws."""

    def __init__(self) -> None:
        self.page = (files("trio_ws") / "demo.html").read_bytes()

    def process_request(self, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None
        if path == "/":
            headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
            return Response(200, headers, self.page)
        return Response(404, body="not found\n")

    async def __call__(self, ws: WebSocket) -> None:
        join: Any = None
        with trio.move_on_after(JOIN_TIMEOUT):
            with contextlib.suppress(ValueError):
                join = json.loads(await ws.recv())
        if not (isinstance(join, dict) and join.get("type") == "join"):
            await ws.send(_error('the first message must be {"type": "join", "room": ..., "name": ...}'))
            await ws.close(1008, "join first")
            return
        if not (_valid_label(join.get("room")) and _valid_label(join.get("name"))):
            await ws.send(_error(f"room and name must be 1 to {MAX_NAME} characters"))
            await ws.close(1008, "invalid join")
            return
        room, name = str(join["room"]).strip(), str(join["name"]).strip()
        hub = current_hub()
        await ws.send(_event("welcome", room, name=name, worker=os.getpid()))  # before room traffic
        async with hub.subscribe(ws, room):
            await hub.publish(room, _event("join", room, name=name))
            try:
                async for raw in ws:
                    await self._handle(ws, room, name, raw)
            finally:
                with trio.move_on_after(1, shield=True):  # announce the leave, even when cancelled
                    await hub.publish(room, _event("leave", room, name=name))

    async def _handle(self, ws: WebSocket, room: str, name: str, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            await ws.send(_error("invalid JSON"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "message":
            text = message.get("text")
            if not isinstance(text, str) or not text:
                await ws.send(_error("a message needs a non-empty text"))
            elif len(text) > MAX_TEXT:
                await ws.send(_error(f"message too long: at most {MAX_TEXT} characters"))
            else:
                await current_hub().publish(room, _event("message", room, name=name, text=text))
        elif kind == "here":
            await current_hub().publish(room, _event("here", room, name=name))
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong", "t": message.get("t")}))
        else:
            await ws.send(_error(f"unknown message type {kind!r}"))


app = DemoApp()
#: What `python -m trio_ws demo` serves, in one process or in several.
config = ServerConfig(handler=app, max_size=MAX_FRAME)


async def run(host: str, port: int, demo: ServerConfig = config) -> None:
    """The demo (`config`, or a variant of it) in this process, until cancelled: what
    `python -m trio_ws demo` runs, unless --workers or --redis ask for worker processes."""
    async with open_hub(), open_server(demo, host, port) as server:
        print(f"chat demo on http://{host}:{server.port}/ (Ctrl-C to stop)", flush=True)
        await trio.sleep_forever()
