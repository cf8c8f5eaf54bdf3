"""A page and its WebSockets from one trio_ws server over HTTPS with HTTP/2 offered, for the
browser tests. Prints "listening on PORT" once it listens, then a line per WebSocket:
"websocket HTTP_VERSION HOST:PORT" (the client's address: one port, one connection).

python tests/http2_page_server.py CERT_FILE KEY_FILE
"""

from __future__ import annotations

import ssl
import sys

import trio

import trio_ws

PAGE = """<!doctype html>
<html><head><title>waiting</title></head><body><pre id="out"></pre>
<script>
const echoes = [];
for (let i = 0; i < 3; i++) {
  const ws = new WebSocket(`wss://${location.host}/echo`);
  ws.onopen = () => ws.send(`hello ${i}`);
  ws.onmessage = (event) => {
    echoes.push(event.data);
    document.getElementById("out").textContent = JSON.stringify(echoes.slice().sort());
    if (echoes.length === 3) document.title = "done";
  };
}
</script></body></html>
"""


def page(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path_only == "/":
        return trio_ws.Response(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE)
    return None


async def echo(ws: trio_ws.WebSocket) -> None:
    host, port = ws.remote_address[:2]
    print(f"websocket {ws.request.http_version} {host}:{port}", flush=True)
    async for message in ws:
        await ws.send(message)


async def main(cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, ssl_context=context, http2=True, process_request=page
    ) as server:
        print(f"listening on {server.port}", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:3])
