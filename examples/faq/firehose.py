"""Does a handler that sends in a tight loop starve the other connections?

No. `send()` is a checkpoint that yields to the scheduler, and it waits while the client has
more than `write_limit` bytes unread, so a firehose runs at the speed of its reader while the
other connections are served as usual.
"""

from __future__ import annotations

import trio

import trio_ws

router = trio_ws.Router()


@router.route("/firehose")
async def firehose(ws: trio_ws.WebSocket) -> None:
    n = 0
    while True:
        await ws.send(f"event {n}")
        n += 1


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    async with trio_ws.open_server(router, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
