"""How do I send a message to a single user?

Keep a registry from user id to connection: add on connect, remove when the handler ends.
Expect two failures: the user is not connected (not in the registry), or the connection closes
while you send (`ConnectionClosed`).

Protocol of this example: the first message is the user's name; then "to NAME: TEXT".
"""

from __future__ import annotations

import trio

import trio_ws

USERS: dict[str, trio_ws.WebSocket] = {}


async def send_to(user: str, text: str) -> bool:
    """Deliver `text` to `user`; False if they are not connected (any more)."""
    ws = USERS.get(user)
    if ws is None:
        return False
    try:
        await ws.send(text)
    except trio_ws.ConnectionClosed:
        return False
    return True


async def handler(ws: trio_ws.WebSocket) -> None:
    name = str(await ws.recv())
    USERS[name] = ws
    try:
        async for message in ws:
            target, _, text = str(message).removeprefix("to ").partition(": ")
            if not await send_to(target, f"{name}: {text}"):
                await ws.send(f"error: {target} is not connected")
    finally:
        if USERS.get(name) is ws:
            del USERS[name]


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
