"""How do I pass arguments to the connection handler?

The server calls `handler(ws)`. Bind the other arguments first: with `functools.partial`,
or with a closure that captures them.
"""

from __future__ import annotations

import functools

import trio

import trio_ws


async def greet(ws: trio_ws.WebSocket, greeting: str, punctuation: str = "!") -> None:
    async for name in ws:
        await ws.send(f"{greeting}, {name}{punctuation}")


def make_handler(greeting: str) -> trio_ws.server.Handler:
    async def handler(ws: trio_ws.WebSocket) -> None:
        async for name in ws:
            await ws.send(f"{greeting}, {name}.")

    return handler


async def main() -> None:
    with_partial = functools.partial(greet, greeting="Hello", punctuation="!!")
    async with (
        trio_ws.open_server(with_partial, "127.0.0.1", 8765) as first,
        trio_ws.open_server(make_handler("Good day"), "127.0.0.1", 8766) as second,
    ):
        print(f"listening on ws://127.0.0.1:{first.port}/ and ws://127.0.0.1:{second.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
