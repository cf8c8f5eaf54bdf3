"""Server memory per open connection, with and without permessage-deflate.

    python benchmarks/connection_memory.py [--connections 1000]

Starts examples/echo.py in its own process, opens the connections from this one, has each
exchange one message (so the server has built its compressor and decompressor), and reads
the server's resident memory from /proc before and after.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import trio

import trio_ws

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(count: int, compression: str | None) -> float:
    args = [sys.executable, str(ROOT / "examples" / "echo.py"), "--port", "0"]
    if compression is None:
        args.append("--no-compression")
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        before = rss_kib(server.pid)
        opened = 0
        all_open = trio.Event()
        done = trio.Event()

        async def client() -> None:
            nonlocal opened
            async with trio_ws.connect(url, compression=compression, ping_interval=None) as ws:
                await ws.send('{"type": "hello", "text": "a typical small JSON message"}')
                await ws.recv()
                opened += 1
                if opened == count:
                    all_open.set()
                await done.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(client)
            with trio.fail_after(120):
                await all_open.wait()
            await trio.sleep(0.5)
            after = rss_kib(server.pid)
            done.set()
        return (after - before) / count
    finally:
        server.terminate()
        server.wait()


async def main(count: int) -> None:
    for compression in (None, "deflate"):
        per_connection = await measure(count, compression)
        print(f"compression={compression!s:8} {per_connection:6.1f} KiB per connection ({count} connections)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    trio.run(main, parser.parse_args().connections)
