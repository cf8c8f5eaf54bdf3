"""How do I close a connection? How do I stop a server cleanly, on SIGTERM?

Close one connection with `await ws.close(code, reason)` (or just return from the handler).
To stop the server, wait for the signal with `trio.open_signal_receiver` and call
`await server.aclose()`: it stops accepting, sends every client a close frame with 1001
(going away), waits for the handlers, and then `serve()` returns.

    python examples/faq/shutdown.py [PORT]    # then: kill -TERM <pid>
"""

from __future__ import annotations

import functools
import signal
import sys

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        if message == "bye":
            await ws.close(4000, "see you")  # closing one connection
            return
        await ws.send(message)


async def main(port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(functools.partial(trio_ws.serve, handler, "127.0.0.1", port))
            print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}; closing", flush=True)
                await server.aclose()  # serve() returns, and the nursery with it
                break


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
