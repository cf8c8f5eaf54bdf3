"""A server's connections get their reader one scheduler pass late, from the server's one
`ReaderStarts` task, and only if the handler is not in recv() by then. Each handler shape
below meets that look differently (in recv() already, arriving just after it, leaving just
after it, never coming): whatever the shape, pings are answered, messages arrive, and the
client's close is answered at once, for many connections opened together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

import trio_ws

from .conftest import ws_url
from .test_direct_recv import reader_tasks

pytestmark = pytest.mark.timeout(60)

CONNECTIONS = 20


async def straight_to_recv(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def a_checkpoint_first(ws: trio_ws.WebSocket) -> None:
    """In recv() one pass late: the same pass as the look, in either order."""
    await trio.lowlevel.checkpoint()
    await straight_to_recv(ws)


async def in_and_out_of_recv(ws: trio_ws.WebSocket) -> None:
    """In recv() at the look, and out of it right after, again and again."""
    while True:
        message = None
        with trio.move_on_after(0.001):
            message = await ws.recv()
        if message is not None:
            await ws.send(message)


async def sends_first(ws: trio_ws.WebSocket) -> None:
    await ws.send("hello")
    await straight_to_recv(ws)


async def sleeps_first(ws: trio_ws.WebSocket) -> None:
    await trio.sleep(0.3)  # the pings and the message come meanwhile: the reader takes them
    await straight_to_recv(ws)


async def never_reads(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


SHAPES: dict[str, Callable[[trio_ws.WebSocket], Awaitable[None]]] = {
    "straight to recv": straight_to_recv,
    "a checkpoint first": a_checkpoint_first,
    "in and out of recv": in_and_out_of_recv,
    "sends first": sends_first,
    "sleeps first": sleeps_first,
    "never reads": never_reads,
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_handler_shape_is_read_answered_and_closed(shape: str) -> None:
    handler = SHAPES[shape]
    echoes = handler is not never_reads
    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:

        async def client() -> None:
            async with trio_ws.connect(ws_url(server), close_timeout=5) as ws:
                if handler is sends_first:
                    assert await ws.recv() == "hello"
                with trio.fail_after(2):
                    await ws.ping()
                    await ws.send("x")
                    if echoes:
                        assert await ws.recv() == "x"
                started = trio.current_time()
                await ws.close()
                assert trio.current_time() - started < 1  # answered, not cut off at close_timeout
            assert ws.close_code == 1000

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(CONNECTIONS):
                    nursery.start_soon(client)
            while server.connections:
                await trio.sleep(0.01)


async def test_handlers_waiting_in_recv_hold_no_reader_and_the_rest_one_each() -> None:
    """Half the handlers wait in recv(), half elsewhere: readers only for the second half."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        if ws.path == "/recv":
            await straight_to_recv(ws)
        else:
            await never_reads(ws)

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio.open_nursery() as nursery:
            for path in ["/recv", "/elsewhere"] * 10:
                await nursery.start(serve_a_client, ws_url(server, path))
            with trio.fail_after(5):
                while len(server.connections) < 20:
                    await trio.sleep(0.01)
            # Every client waits in recv() (a client's first reader leaves then), and so do
            # half the handlers: the other ten need a reader each.
            assert await reader_tasks() == 10
            nursery.cancel_scope.cancel()


async def serve_a_client(url: str, task_status: trio.TaskStatus[None]) -> None:
    async with trio_ws.connect(url) as ws:
        task_status.started()
        await ws.recv()
