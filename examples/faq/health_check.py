"""How do I implement a health check?

`process_request` sees every HTTP request, upgrade or not: answer GET /healthz with 200 and
let everything else go on to the WebSocket handshake.
"""

from __future__ import annotations

import trio

import trio_ws


def health_check(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path_only == "/healthz":  # path_only: without the query string
        return trio_ws.Response(200, {"Content-Type": "text/plain"}, "OK\n")
    return None


async def handler(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765, process_request=health_check) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
