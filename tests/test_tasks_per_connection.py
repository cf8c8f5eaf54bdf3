"""How many Trio tasks an idle connection costs, counted by walking the task tree with 100
idle connections open: on the server (raw TCP peers, which run no task here) and on the
client side of `connect`."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
import trio.lowlevel

import trio_ws

from .conftest import RawClient, all_tasks, ws_url

CONNECTIONS = 100
#: The most tasks an idle server connection may run, its handler's included: the handler and
#: the reader (the writer runs only while the kernel's send buffer is full; keepalive pings
#: come from the server's one timer task).
SERVER_TASKS_PER_CONNECTION = 2
#: The most an idle client connection may run beside the code inside `async with connect()`:
#: the reader and its keepalive timers.
CLIENT_TASKS_PER_CONNECTION = 2


async def idle(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


async def settle() -> None:
    """Let every task started so far reach its first wait."""
    for _ in range(20):
        await trio.lowlevel.checkpoint()


async def in_recv(ws: trio_ws.WebSocket) -> None:
    async for _ in ws:
        pass


@pytest.mark.parametrize(
    ("handler", "tasks"),
    [
        (idle, SERVER_TASKS_PER_CONNECTION),  # a handler elsewhere: the reader reads
        (in_recv, 1),  # a handler in recv() reads the socket itself: no reader task
    ],
)
async def test_tasks_per_idle_server_connection(handler: trio_ws.server.Handler, tasks: int) -> None:
    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        await settle()
        before = all_tasks()
        peers = [await RawClient.connect(server.port) for _ in range(CONNECTIONS)]
        with trio.fail_after(10):
            while len(server.connections) < CONNECTIONS:
                await trio.sleep(0.01)
        await settle()
        per_connection = (all_tasks() - before) / CONNECTIONS
        print(f"server: {per_connection} tasks per idle connection")
        assert per_connection == tasks
        for peer in peers:
            await peer.stream.aclose()


async def test_tasks_per_idle_client_connection() -> None:
    async with trio_ws.open_server(idle, "127.0.0.1", 0, max_connections=None) as server:
        await settle()
        before = all_tasks()
        with trio.fail_after(30):
            async with AsyncExitStack() as stack:
                for _ in range(CONNECTIONS):
                    await stack.enter_async_context(trio_ws.connect(ws_url(server)))
                while len(server.connections) < CONNECTIONS:
                    await trio.sleep(0.01)
                await settle()
                both = (all_tasks() - before) / CONNECTIONS
                print(f"client and server together: {both} tasks per connection")
                assert both.is_integer() and both <= SERVER_TASKS_PER_CONNECTION + CLIENT_TASKS_PER_CONNECTION
