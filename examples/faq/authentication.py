"""How do I authenticate a connection?

Two ways, both shown:

1. During the handshake (`/header`): check the Authorization header in `process_request`
   and answer 401 with WWW-Authenticate. Nothing is upgraded for a stranger. Browsers cannot
   set headers on a WebSocket, so this suits other clients (or cookies).
2. In the first message (`/message`): accept the connection, then require a token as the
   first message within a few seconds, and close with 1008 (policy violation) otherwise.
   Works from browsers and keeps the token out of URLs and logs.
"""

from __future__ import annotations

import hmac

import trio

import trio_ws

TOKENS = {"s3cret-token": "alice"}
router = trio_ws.Router()


def user_for(token: str) -> str | None:
    for known, user in TOKENS.items():
        if hmac.compare_digest(known, token):
            return user
    return None


def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
    if not request.path.startswith("/header"):
        return None
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if user_for(token) is None:
        return trio_ws.Response(401, {"WWW-Authenticate": 'Bearer realm="chat"'}, "invalid token\n")
    return None


@router.route("/header")
async def header_auth(ws: trio_ws.WebSocket) -> None:
    user = user_for(ws.request_headers["Authorization"].removeprefix("Bearer "))
    await ws.send(f"hello {user}")


@router.route("/message")
async def first_message_auth(ws: trio_ws.WebSocket) -> None:
    user = None
    with trio.move_on_after(5):
        user = user_for(str(await ws.recv()))
    if user is None:
        await ws.close(1008, "authentication failed")
        return
    await ws.send(f"hello {user}")


async def main() -> None:
    async with trio_ws.open_server(router, "127.0.0.1", 8765, process_request=process_request) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
