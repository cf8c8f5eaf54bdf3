"""Soak: a server under churn, echo, broadcast and compression for a fixed time, with its
memory and file descriptors sampled every 10 s. Not part of the test suite.

python benchmarks/soak.py --minutes 10

The server runs in a process of its own (echo at /echo, a hub topic published 20 times a
second at /feed). This process runs 50 echo clients (a message every 20 ms, each reply
checked), 100 feed subscribers, and 10 churning clients that connect, exchange three
messages and leave, a third of them by resetting TCP. Half of every kind negotiate
permessage-deflate. At the end it prints the samples and whether RSS and descriptors
stayed flat (last sample within 10% and 8 MiB of the one at the first minute).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

import trio_ws

SAMPLE_EVERY = 10  # seconds


async def serve() -> None:
    async with trio_ws.open_hub() as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            if ws.path == "/feed":
                async with hub.subscribe(ws, "feed"):
                    await ws.wait_closed()
            else:
                async for message in ws:
                    await ws.send(message)

        async def publisher() -> None:
            n = 0
            while True:
                await hub.publish("feed", f'{{"tick": {n}, "text": "{"news " * 20}"}}')
                n += 1
                await trio.sleep(0.05)

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server, trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            print(f"listening on {server.port}", flush=True)
            await trio.sleep_forever()


@dataclass
class Counts:
    echoed: int = 0
    delivered: int = 0
    churned: int = 0
    errors: list[str] = field(default_factory=list)


def compression(i: int) -> str | None:
    return "deflate" if i % 2 else None


async def echo_client(url: str, i: int, counts: Counts) -> None:
    async with trio_ws.connect(url + "/echo", compression=compression(i)) as ws:
        n = 0
        while True:
            message = f"{i}:{n} " + "payload " * random.randint(1, 50)
            await ws.send(message)
            if await ws.recv() != message:
                counts.errors.append(f"echo {i}:{n} came back different")
            counts.echoed += 1
            n += 1
            await trio.sleep(0.02)


async def feed_client(url: str, i: int, counts: Counts) -> None:
    async with trio_ws.connect(url + "/feed", compression=compression(i)) as ws:
        async for _ in ws:
            counts.delivered += 1


UPGRADE = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def reset_midway(port: int) -> None:
    """Upgrade by hand, send half a frame, and leave with a TCP reset."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE)
    await stream.receive_some()
    await stream.send_all(b"\x81\x85abcd")  # the header of a 5-byte message, no payload
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def churn_client(url: str, i: int, counts: Counts) -> None:
    while True:
        if random.random() < 1 / 3:
            await reset_midway(int(url.rsplit(":", 1)[1]))
        else:
            async with trio_ws.connect(url + "/echo", compression=compression(i)) as ws:
                for n in range(3):
                    await ws.send(f"churn {n}")
                    await ws.recv()
        counts.churned += 1


def sample(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def run(minutes: float) -> int:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[-1])
    url = f"ws://127.0.0.1:{port}"
    counts = Counts()
    samples: list[tuple[float, int, int, int, int, int]] = []
    started = time.monotonic()

    async def guarded(client: object, i: int) -> None:
        while True:
            try:
                await client(url, i, counts)  # type: ignore[operator]
            except (trio_ws.ConnectionClosed, OSError, trio.BrokenResourceError) as exc:
                counts.errors.append(f"{client.__name__} {i}: {exc!r}")  # type: ignore[attr-defined]

    try:
        with trio.move_on_after(minutes * 60):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(guarded, echo_client, i)
                for i in range(100):
                    nursery.start_soon(guarded, feed_client, i)
                for i in range(10):
                    nursery.start_soon(guarded, churn_client, i)
                while True:
                    await trio.sleep(SAMPLE_EVERY)
                    rss, fds = sample(server.pid)
                    elapsed = time.monotonic() - started
                    row = (elapsed, rss, fds, counts.echoed, counts.delivered, counts.churned)
                    samples.append(row)
                    print(
                        f"{row[0]:6.0f} s  RSS {rss / 2**20:6.1f} MiB  fds {fds:4d}  echoed {row[3]:8,}  "
                        f"delivered {row[4]:9,}  churned {row[5]:6,}",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(10)
    baseline = next((s for s in samples if s[0] >= 60), samples[0])
    last = samples[-1]
    rss_flat = last[1] <= baseline[1] * 1.1 or last[1] - baseline[1] < 8 * 2**20
    fds_flat = last[2] <= baseline[2] + 20
    print(
        f"RSS at {baseline[0]:.0f} s {baseline[1] / 2**20:.1f} MiB, at the end {last[1] / 2**20:.1f} MiB, "
        f"max {max(s[1] for s in samples) / 2**20:.1f} MiB; fds {baseline[2]} -> {last[2]} "
        f"(max {max(s[2] for s in samples)}); errors {len(counts.errors)} {counts.errors[:3]}"
    )
    print("flat" if rss_flat and fds_flat else "NOT FLAT")
    return 0 if rss_flat and fds_flat else 1


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve)
    else:
        sys.exit(trio.run(run, args.minutes))
