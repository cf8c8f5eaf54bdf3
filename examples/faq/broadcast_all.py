"""How do I send a message to all users?

`trio_ws.broadcast(server.connections, message)`: it queues the message on every open
connection and returns at once; a slow client is skipped rather than slowing the others.
To send from outside a handler, keep the server object (as here) and call it from any task.
"""

from __future__ import annotations

import trio

import trio_ws


class Chat:
    """Everything one client says goes to every connected client."""

    server: trio_ws.WebSocketServer

    async def handler(self, ws: trio_ws.WebSocket) -> None:
        async for message in ws:
            trio_ws.broadcast(self.server.connections, message)


async def main() -> None:
    chat = Chat()
    async with trio_ws.open_server(chat.handler, "127.0.0.1", 8765) as chat.server:
        print(f"listening on ws://127.0.0.1:{chat.server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
