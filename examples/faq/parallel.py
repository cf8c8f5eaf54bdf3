"""How do I do two things in parallel, e.g. read and write at once?

Open a nursery and run each in its own task. Both end when the connection closes; an error
in either cancels the other. (Sending from several tasks at once is fine too.)

A nursery reports what its tasks raised as an ExceptionGroup. To get the error itself out
(a `ConnectionClosedError` when the server fails mid-way, say), catch it with `except*` and
raise the one that matters: `talk_or_raise` below.

    python examples/faq/parallel.py ws://127.0.0.1:8765/
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def read_all(ws: trio_ws.WebSocket, received: list[trio_ws.Message]) -> None:
    async for message in ws:
        received.append(message)


async def write_some(ws: trio_ws.WebSocket, count: int) -> None:
    for n in range(count):
        await ws.send(f"tick {n}")
        await trio.sleep(0.01)


async def talk(uri: str, count: int = 5) -> list[trio_ws.Message]:
    received: list[trio_ws.Message] = []
    async with trio_ws.connect(uri) as ws, trio.open_nursery() as nursery:
        nursery.start_soon(read_all, ws, received)
        await write_some(ws, count)
        await trio.sleep(0.2)  # let the last replies arrive
        nursery.cancel_scope.cancel()  # stop reading; leaving connect() closes the connection
    return received


async def talk_or_raise(uri: str, count: int = 5) -> list[trio_ws.Message]:
    """`talk`, but an abnormal close comes out as itself, not inside an ExceptionGroup."""
    received: list[trio_ws.Message] = []
    try:
        async with trio_ws.connect(uri) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(read_all, ws, received)
            await write_some(ws, count)
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    except* trio_ws.ConnectionClosedError as group:
        raise group.exceptions[0] from None  # the reader's: how the connection ended
    return received


if __name__ == "__main__":
    print(trio.run(talk, sys.argv[1]))
