"""How do I set a timeout on recv()?

With Trio's cancel scopes: `trio.move_on_after(seconds)` to carry on without a message,
`trio.fail_after(seconds)` to raise `trio.TooSlowError`. It is cancellation-safe: a
`recv()` cancelled by the timeout takes nothing from the queue, so the message that arrives
later is returned by the next `recv()`, in order.
"""

from __future__ import annotations

import trio

import trio_ws


async def recv_or_none(ws: trio_ws.WebSocket, seconds: float) -> trio_ws.Message | None:
    with trio.move_on_after(seconds):
        return await ws.recv()
    return None


async def recv_or_fail(ws: trio_ws.WebSocket, seconds: float) -> trio_ws.Message:
    with trio.fail_after(seconds):  # raises trio.TooSlowError
        return await ws.recv()


async def main(uri: str = "ws://127.0.0.1:8765/") -> None:
    async with trio_ws.connect(uri) as ws:
        message = await recv_or_none(ws, 1.0)
        print("nothing within a second" if message is None else f"got {message!r}")


if __name__ == "__main__":
    trio.run(main)
