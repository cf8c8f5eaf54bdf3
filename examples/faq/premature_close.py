"""Why does the server close the connection prematurely?

With asyncio, a handler that starts a task and returns closes the connection while that task
still runs. In Trio a task can only start in a nursery, and a nursery waits for its tasks:
open one in the handler and the connection lives until the work is done.
"""

from __future__ import annotations

import trio

import trio_ws


async def report_progress(ws: trio_ws.WebSocket, steps: int) -> None:
    for step in range(1, steps + 1):
        await trio.sleep(0.05)  # some slow work
        await ws.send(f"step {step} of {steps}")


async def handler(ws: trio_ws.WebSocket) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(report_progress, ws, 3)
        # ... the handler may do other things here; the nursery waits for report_progress.
    # Only now does the handler return, and the connection close with 1000.


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
