"""Open many raw WebSocket connections from one process and hold them, for load tests.

python tests/load_clients.py PORT COUNT [--deflate] [--message] [--batch N]

Each connection upgrades (offering permessage-deflate with --deflate); with --message it
sends one message and waits for its echo, so that both directions' codecs exist. Prints
"ready N FAILED" once every connection is up (or failed), then holds them until stdin closes.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib

import trio

from trio_ws.frames import Frame, Opcode, serialize_frame

REQUEST = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def message(deflate: bool) -> bytes:
    text = b'{"type": "hello", "text": "an idle client says hello once"}'
    if not deflate:
        return serialize_frame(Frame(Opcode.TEXT, text), mask=True)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return serialize_frame(Frame(Opcode.TEXT, data[:-4], rsv1=True), mask=True)


async def one(port: int, args: argparse.Namespace, held: list[trio.SocketStream], failed: list[str]) -> None:
    try:
        with trio.fail_after(60):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(REQUEST + (DEFLATE if args.deflate else b"") + b"\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some()
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                received += chunk
            if not received.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(received[:40].decode("latin-1"))
            if args.message:
                await stream.send_all(message(args.deflate))
                if received.endswith(b"\r\n\r\n"):
                    await stream.receive_some()  # the echo
        held.append(stream)
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, ConnectionError) as exc:
        failed.append(repr(exc))


async def main(args: argparse.Namespace) -> None:
    held: list[trio.SocketStream] = []
    failed: list[str] = []
    async with trio.open_nursery() as nursery:
        for start in range(0, args.count, args.batch):
            async with trio.open_nursery() as batch:
                for _ in range(start, min(start + args.batch, args.count)):
                    batch.start_soon(one, args.port, args, held, failed)
        print(f"ready {len(held)} {len(failed)} {failed[:1]}", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # hold until the test closes stdin
        nursery.cancel_scope.cancel()
    os._exit(0)  # thousands of sockets: let the kernel close them


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--message", action="store_true")
    parser.add_argument("--batch", type=int, default=500)
    trio.run(main, parser.parse_args())
