"""How do I get the IP address of the client?

`ws.remote_address`: the (host, port) pair of the peer, as the socket reports it. Behind a
reverse proxy that is the proxy; read X-Forwarded-For from `ws.request_headers` instead, if
you trust the proxy.
"""

from __future__ import annotations

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    host, port = ws.remote_address[:2]
    forwarded = ws.request_headers.get("X-Forwarded-For")
    await ws.send(f"you are {host} port {port}" + (f", forwarded for {forwarded}" if forwarded else ""))


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
