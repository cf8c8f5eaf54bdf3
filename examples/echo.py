"""Echo server: sends every message back. The conformance suite runs against it.

python examples/echo.py [--host 127.0.0.1] [--port 8765] [--max-size BYTES]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging

import trio

import trio_ws


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int, max_size: int, compression: str | None) -> None:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio_ws.serve, echo, host, port, max_size=max_size, compression=compression)
        server = await nursery.start(serve)
        print(f"echo server listening on ws://{host}:{server.port}/", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="WebSocket echo server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--max-size", type=int, default=2**25, help="largest message in bytes")
    parser.add_argument("--no-compression", action="store_true", help="decline permessage-deflate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        compression = None if args.no_compression else "deflate"
        trio.run(main, args.host, args.port, args.max_size, compression)
