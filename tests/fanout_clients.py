"""Many WebSocket clients in one process, for fan-out tests: each checks it got every
broadcast, in order.

    python tests/fanout_clients.py URL CLIENTS BROADCASTS

Prints "ready" once every client is connected, then "complete N" with the number of
clients that received "broadcast 0" .. "broadcast BROADCASTS-1" in order.
"""

from __future__ import annotations

import sys

import trio

import trio_ws


async def main(url: str, clients: int, broadcasts: int) -> None:
    connected = 0
    complete = 0
    all_connected = trio.Event()

    async def client() -> None:
        nonlocal connected, complete
        async with trio_ws.connect(url, compression=None, ping_interval=None) as ws:
            connected += 1
            if connected == clients:
                all_connected.set()
            for n in range(broadcasts):
                if await ws.recv() != f"broadcast {n}":
                    return
            complete += 1

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
        await all_connected.wait()
        print("ready", flush=True)
    print(f"complete {complete}", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
