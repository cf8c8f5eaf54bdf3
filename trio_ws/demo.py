"""The chat demo: `python -m trio_ws demo` serves a page at / and the chat at /ws.

Rooms are Hub topics with history, so `python -m trio_ws demo --workers 2 --redis URL` runs
it in two processes, and a page that reconnects (to any of them) gets the messages it
missed, or is told that some may be missing. Who is present comes from the hub's presence.
Messages are JSON (see docs/demo.md for the schema); bad JSON, unknown types and over-long
texts get an error message back to that client only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from typing import Any

import trio

from .config import ServerConfig
from .connection import WebSocket
from .exceptions import CloseCode
from .history import Publication, StreamPosition
from .http import Request, Response
from .hub import Subscription, current_hub, presence_topic
from .hub_config import HubConfig
from .server import WebSocketServer

__all__ = ["DemoApp", "app", "config"]

MAX_TEXT = 1000  # characters in one chat message
MAX_NAME = 40  # characters in a nickname or a room name
MAX_FRAME = 2**16  # bytes in one WebSocket message: larger closes with 1009
HISTORY_SIZE = 500  # messages each room keeps for pages that reconnect
JOIN_TIMEOUT = 30


def _event(kind: str, room: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "room": room, **fields})


def _error(why: str) -> str:
    return json.dumps({"type": "error", "error": why})


def _valid_label(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) <= MAX_NAME


def _position_in(join: dict[str, Any]) -> StreamPosition | None:
    """The `since` of a join ({"offset": int, "epoch": str}), if it has a valid one."""
    since = join.get("since")
    if not isinstance(since, dict):
        return None
    try:
        return StreamPosition(since.get("offset"), since.get("epoch"))  # type: ignore[arg-type]
    except ValueError:  # not a position a hub gives: start live
        return None


def _record_in(pub: Publication) -> Any:
    """The JSON a publication carries (None if it is not JSON: any Redis client can publish)."""
    try:
        return json.loads(pub.data if isinstance(pub.data, str) else bytes(pub.data))
    except ValueError:
        return None


def _as_message(pub: Publication) -> str:
    """A room's publication as the page gets it: the message event with its position."""
    event = _record_in(pub)
    if not isinstance(event, dict):
        return _event("noise", pub.topic)
    event.update(offset=pub.offset, epoch=pub.epoch)
    return json.dumps(event)


def _as_presence_change(room: str) -> Any:
    """The hub's join and leave records of `room` as the page's `join` and `leave` events."""

    def change(pub: Publication) -> str:
        try:
            record = _record_in(pub)
            kind, member, name = record["type"], record["id"], record["info"]["name"]
        except (TypeError, KeyError):
            return _event("noise", room)  # not the hub's: any Redis client can publish there
        return _event(kind, room, id=member, name=name)

    return change


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

        def welcome(subscription: Subscription) -> str:  # sent before any room traffic
            start = subscription.position
            return _event(
                "welcome",
                room,
                name=name,
                worker=os.getpid(),
                offset=start.offset if start else None,
                epoch=start.epoch if start else None,
                recovered=subscription.recovered,
            )

        since = _position_in(join) if hub.history_size else None  # (--history-size 0: no resuming)
        try:
            await self._chat(ws, room, name, since, welcome)
        except ValueError as exc:  # a room the hub refuses (say, a lone surrogate): this client only
            await ws.send(_error(f"invalid room: {exc}"))
            await ws.close(1008, "invalid room")

    async def _chat(
        self,
        ws: WebSocket,
        room: str,
        name: str,
        since: StreamPosition | None,
        welcome: Callable[[Subscription], str],
    ) -> None:
        hub = current_hub()
        # The room first: its welcome goes before any of its messages. Then its joins and
        # leaves, and a snapshot of who is present, taken once both are in force.
        async with (
            hub.subscribe(ws, room, since=since, format=_as_message, first=welcome, info={"name": name}),
            hub.subscribe(ws, presence_topic(room), format=_as_presence_change(room)),
        ):
            try:
                present = await hub.presence(room)
            except ConnectionError:  # Redis is away: who is here is unknown for now
                present = {}
            people = [{"id": member, "name": info["name"]} for member, info in present.items()
                      if isinstance(info, dict) and isinstance(info.get("name"), str)]  # fmt: skip
            await ws.send(_event("present", room, people=people))
            async for raw in ws:
                await self._handle(ws, room, name, raw)

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
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong", "t": message.get("t")}))
        else:
            await ws.send(_error(f"unknown message type {kind!r}"))


app = DemoApp()


@contextlib.asynccontextmanager
async def move_pages_on_drain(server: WebSocketServer, hub: object) -> AsyncIterator[None]:
    """The demo's lifespan: once the server drains (SIGTERM, a rolling restart), every page
    is closed with 1012 (service restart) at once, and reconnects to a process that serves,
    instead of waiting out the graceful timeout."""
    async with trio.open_nursery() as nursery:

        async def move_pages() -> None:
            await server.draining.wait()
            for ws in list(server.connections):
                nursery.start_soon(ws.close, CloseCode.SERVICE_RESTART, "server restarting")

        nursery.start_soon(move_pages)
        yield
        nursery.cancel_scope.cancel()


#: What `python -m trio_ws demo` serves, in one process or in several.
config = ServerConfig(
    handler=app, max_size=MAX_FRAME, hub=HubConfig(history_size=HISTORY_SIZE), lifespan=move_pages_on_drain
)
