"""How do I close a connection properly?

Leave the `async with trio_ws.connect(...)` block: it closes with 1000 (normal closure),
waits for the server's close frame (at most `close_timeout` seconds), then closes TCP.
To close with another code or a reason, `await ws.close(code, reason)` (the block's end
then has nothing left to do). An exception leaving the block closes with 1011 and comes
out as itself. After the close, `ws.close_code` and `ws.close_reason` say how it ended.
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def say_hello(uri: str) -> tuple[int | None, int | None]:
    """Send one message and leave: 1000. Then close one with 4000 and a reason."""
    async with trio_ws.connect(uri) as ws:
        await ws.send("hello")
        print(await ws.recv())
    async with trio_ws.connect(uri) as other:
        await other.close(4000, "done for today")
    return ws.close_code, other.close_code


if __name__ == "__main__":
    print(trio.run(say_hello, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"))
