"""How do I stop a server while keeping existing connections open?

`await server.aclose(close_connections=False)`: the listeners close at once (new clients
are refused), the open connections go on undisturbed, and `aclose` (and `serve`) return
once every handler has finished on its own. Handy for a rolling deploy: start the new
process on the same port with `reuse_port=True`, then drain the old one.
"""

from __future__ import annotations

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def drain(server: trio_ws.WebSocketServer) -> None:
    await server.aclose(close_connections=False)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve, handler, "127.0.0.1", 8765)
        print(f"listening on ws://127.0.0.1:{server.port}/; draining in 10 s", flush=True)
        await trio.sleep(10)
        await drain(server)
        print("no connection left", flush=True)


if __name__ == "__main__":
    trio.run(main)
