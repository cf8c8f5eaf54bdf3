"""What does ConnectionClosedError: code = 1006 mean, and how do I stop it being logged?

1006 is not sent by anyone: it means the TCP connection ended without a closing handshake
(the client crashed, lost its network, or a proxy cut it). It is normal on the Internet.

In a handler, a `ConnectionClosed` that escapes is normal: trio_ws logs it at DEBUG only,
never as an error. Catch it where you want to react (here: count the disconnections); log
only what you care about, e.g. `logging.getLogger("trio_ws").setLevel(logging.WARNING)`.
"""

from __future__ import annotations

import logging

import trio

import trio_ws

logging.getLogger("trio_ws").setLevel(logging.WARNING)  # INFO would log every open and close
lost: list[int] = []


async def handler(ws: trio_ws.WebSocket) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except trio_ws.ConnectionClosedError as exc:
        lost.append(exc.code)  # 1006 when the peer vanished


async def main() -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 8765) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
