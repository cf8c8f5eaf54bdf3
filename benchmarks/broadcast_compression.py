"""Cost of `broadcast` on compressed connections: own compressors vs one shared frame.

    python benchmarks/broadcast_compression.py [--clients 300] [--messages 200]

With context takeover (the default) each connection compresses with its own compressor;
with `DeflateConfig(server_no_context_takeover=True)` the server compresses each message
once for all. Reports the CPU time spent inside broadcast() per message and the bytes
each connection receives per message, for uncompressed, per-connection and shared.
"""

from __future__ import annotations

import argparse
import json
import time

import trio

import trio_ws

MESSAGE = json.dumps(
    {"type": "price", "symbol": "ACME", "bid": 101.25, "ask": 101.27, "volume": 18000, "venue": "XNAS"}
)


async def run(
    compression: str | trio_ws.DeflateConfig | None, clients: int, messages: int
) -> tuple[float, float]:
    spent = 0.0
    received_bytes = 0

    async def hold(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    async with (
        trio_ws.open_server(hold, "127.0.0.1", 0, compression=compression) as server,
        trio.open_nursery() as nursery,
    ):
        done = trio.Event()
        ready = 0

        async def client() -> None:
            nonlocal ready
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
                ready += 1
                for _ in range(messages):
                    await ws.recv()
            await done.wait()

        for _ in range(clients):
            nursery.start_soon(client)
        while ready < clients or len(server.connections) < clients:
            await trio.sleep(0.01)
        sample = next(iter(server.connections))
        for _ in range(messages):
            before = sample.bytes_sent
            started = time.process_time()
            assert trio_ws.broadcast(server.connections, MESSAGE) == clients
            spent += time.process_time() - started
            await trio.sleep(0.002)  # let the clients read: nobody is skipped
            while sample.buffered_amount:  # its frame is all counted once it has left
                await trio.sleep(0.001)
            received_bytes += sample.bytes_sent - before
        done.set()
    return spent / messages, received_bytes / messages


async def main(clients: int, messages: int) -> None:
    print(f"{clients} clients, {messages} broadcasts of a {len(MESSAGE)}-byte JSON message")
    for label, compression in [
        ("uncompressed (one shared frame)", None),
        ("deflate, own compressor each", "deflate"),
        (
            "deflate, no context takeover (one shared frame)",
            trio_ws.DeflateConfig(server_no_context_takeover=True),
        ),
    ]:
        seconds, size = await run(compression, clients, messages)
        print(f"{label:50} {seconds * 1e6:8.0f} us per broadcast  {size:5.0f} bytes per delivery")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    trio.run(main, args.clients, args.messages)
