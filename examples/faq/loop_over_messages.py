"""Why does the server close the connection after one message?

Because the handler returned after handling one: a handler that returns closes the connection
(with 1000). Loop over the messages instead; the loop ends when the client closes.
"""

from __future__ import annotations

import trio

import trio_ws


async def handler_one_message(ws: trio_ws.WebSocket) -> None:
    """Wrong: answers one message, returns, and so closes the connection."""
    message = await ws.recv()
    await ws.send(message)


async def handler(ws: trio_ws.WebSocket) -> None:
    """Right: answers every message until the client leaves."""
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
