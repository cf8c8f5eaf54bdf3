"""How do I run HTTP and WebSocket on the same port?

Within limits: `process_request` can answer plain HTTP requests (a page, a health check, a
redirect) with a `Response`, and lets upgrades through. For a real web application, run an
HTTP framework and proxy /ws to trio_ws, or the other way round.
"""

from __future__ import annotations

import trio

import trio_ws

PAGE = """<!doctype html><title>echo</title><p id=out></p><script>
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => ws.send("hello");
ws.onmessage = (event) => { document.getElementById("out").textContent = event.data; };
</script>"""


def serve_http(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None  # a WebSocket handshake: let it through
    if request.path_only == "/":
        return trio_ws.Response(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)
    return trio_ws.Response(404, body="not found\n")


async def handler(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765, process_request=serve_http) as server:
        print(f"open http://127.0.0.1:{server.port}/ (the page talks to ws://127.0.0.1:{server.port}/ws)")
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
