"""What an idle server connection costs in memory: tracemalloc counts what the server
allocates for 300 connections opened after a warm-up, while another process holds the raw
TCP peers (so their side is not counted). The bound is the one the benchmarks hold the
server to (`benchmarks/run.py`, idle_mem, which measures the process's RSS)."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc

import pytest
import trio
import trio.testing

import trio_ws

pytestmark = pytest.mark.alone

CONNECTIONS = 300
BOUND_BYTES = 11 * 1024

PEERS = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
peers = []
for _ in range(count):
    peer = socket.create_connection(("127.0.0.1", port))
    peer.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert peer.recv(4096).startswith(b"HTTP/1.1 101")
    peers.append(peer)
print("up", flush=True)
sys.stdin.read()
"""


async def open_peers(port: int, count: int) -> subprocess.Popen[bytes]:
    peers = subprocess.Popen(
        [sys.executable, "-c", PEERS, str(port), str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert peers.stdout is not None
    assert await trio.to_thread.run_sync(peers.stdout.readline) == b"up\n"
    return peers


async def in_recv(ws: trio_ws.WebSocket) -> None:
    async for _ in ws:
        pass


async def test_an_idle_connection_costs_at_most_11_kib() -> None:
    async with trio_ws.open_server(in_recv, "127.0.0.1", 0, max_connections=None) as server:
        warm_up = await open_peers(server.port, 20)
        try:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                peers = await open_peers(server.port, CONNECTIONS)
                with trio.fail_after(10):
                    while len(server.connections) < 20 + CONNECTIONS:
                        await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            per_connection = grown / CONNECTIONS
            print(f"{per_connection:.0f} bytes per idle connection")
            assert per_connection <= BOUND_BYTES
            for process in (peers, warm_up):
                assert process.stdin is not None
                process.stdin.close()
                await trio.to_thread.run_sync(process.wait)
        finally:
            warm_up.kill()
