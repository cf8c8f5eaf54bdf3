"""How do I access HTTP headers, cookies and the Authorization header?

During the handshake: in `process_request(request)`, from `request.headers` (reject there,
before upgrading). After it: from `ws.request_headers` in the handler. Cookies come in the
Cookie header; `http.cookies.SimpleCookie` parses it.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

import trio

import trio_ws


def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
    if "Authorization" not in request.headers:
        return trio_ws.Response(401, {"WWW-Authenticate": 'Bearer realm="demo"'}, "missing credentials\n")
    return None


async def handler(ws: trio_ws.WebSocket) -> None:
    cookies = SimpleCookie(ws.request_headers.get("Cookie", ""))
    session = cookies["session"].value if "session" in cookies else None
    await ws.send(f"authorization={ws.request_headers['Authorization']} session={session}")


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765, process_request=process_request) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
