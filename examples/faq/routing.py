"""How do I access the request path, and route by it?

`ws.path` is the request target, query string included. A `Router` dispatches on it:
each `{name}` in a route matches one path segment and is passed to the handler by keyword.
A path that matches no route gets an HTTP 404 before any upgrade.
"""

from __future__ import annotations

import urllib.parse

import trio

import trio_ws

router = trio_ws.Router()


@router.route("/")
async def home(ws: trio_ws.WebSocket) -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(ws.path).query)
    await ws.send(f"home, path {ws.path}, query {query}")


@router.route("/rooms/{room}")
async def room(ws: trio_ws.WebSocket, room: str) -> None:
    await ws.send(f"welcome to {room}")


async def main() -> None:
    async with trio_ws.open_server(router, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
