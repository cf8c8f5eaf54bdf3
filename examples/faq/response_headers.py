"""How do I set HTTP headers on the response?

- `subprotocols=[...]` sets Sec-WebSocket-Protocol, `compression=` Sec-WebSocket-Extensions;
- `server_header="..."` sets the Server header, `server_header=None` removes it;
- `extra_headers={...}` (a mapping, pairs or `Headers`) adds fixed headers;
- `process_response(request, response)` edits the 101 per request, e.g. to set a cookie.
"""

from __future__ import annotations

import secrets

import trio

import trio_ws


def process_response(request: trio_ws.Request, response: trio_ws.Response) -> None:
    response.headers["Set-Cookie"] = f"session={secrets.token_hex(8)}; HttpOnly"


async def handler(ws: trio_ws.WebSocket) -> None:
    await ws.send(f"subprotocol {ws.subprotocol}")


OPTIONS = dict(
    subprotocols=["chat.v2", "chat.v1"],
    compression="deflate",
    server_header=None,
    extra_headers={"X-Frame-Options": "DENY"},
    process_response=process_response,
)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765, **OPTIONS) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
