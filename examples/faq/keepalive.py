"""How do I keep idle connections open, and how do I detect dead ones?

Both sides send a ping every `ping_interval` seconds (20 by default) and close the connection
with 1011 when no pong comes within `ping_timeout` (20): idle connections stay open through
proxies, dead ones are noticed. `ws.latency` holds the last round-trip time. `None` for
`ping_interval` turns keepalive off.
"""

from __future__ import annotations

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    async for _ in ws:
        await ws.send(f"latency {ws.latency * 1000:.2f} ms")


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765, ping_interval=5, ping_timeout=5) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
