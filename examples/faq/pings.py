"""How do I respond to pings?

You don't: trio_ws answers every ping with a pong by itself, on both sides. To measure the
round trip yourself, `await ws.ping()` returns it in seconds.
"""

from __future__ import annotations

import trio

import trio_ws


async def measure(uri: str, count: int = 3) -> list[float]:
    async with trio_ws.connect(uri) as ws:
        return [await ws.ping() for _ in range(count)]


if __name__ == "__main__":
    print([f"{rtt * 1000:.2f} ms" for rtt in trio.run(measure, "ws://127.0.0.1:8765/")])
