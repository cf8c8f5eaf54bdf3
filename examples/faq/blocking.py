"""Why can only one client connect at a time?

A blocking call (time.sleep, requests.get, a slow C function) stops the whole Trio loop, so
every other connection waits. Run it in a worker thread with trio.to_thread.run_sync; the
handler waits for it while every other connection keeps going.
"""

from __future__ import annotations

import time

import trio

import trio_ws


def slow_lookup(text: str) -> str:
    """Stands for any blocking call."""
    time.sleep(0.2)
    return text.upper()


async def handler(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        assert isinstance(message, str)
        result = await trio.to_thread.run_sync(slow_lookup, message)
        await ws.send(result)


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
