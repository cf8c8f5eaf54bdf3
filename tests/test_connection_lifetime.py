"""No connection outlives its close: with the cyclic collector off, a closed connection is
freed by reference counting alone, so a busy server does not pile up closed connections
(sockets and buffers included) between collections."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

import trio_ws

from .conftest import RawClient, echo, tls_contexts

pytestmark = pytest.mark.timeout(300)


def live_connections() -> int:
    """WebSocket objects the interpreter still holds, garbage included."""
    return sum(1 for obj in gc.get_objects() if isinstance(obj, trio_ws.WebSocket))


@contextlib.contextmanager
def no_cyclic_collector() -> Iterator[io.StringIO]:
    """The cyclic collector off; trio_ws's log written out as text, as a deployed app's
    handler does, instead of kept as records (whose tracebacks hold the connection)."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("trio_ws")
    # pytest's capture keeps records: it is put on the root logger and, while the test
    # runs (so this is entered in the test, not in a fixture), on "trio_ws" too.
    kept = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    gc.collect()
    gc.disable()
    try:
        yield log
    finally:
        gc.enable()
        logger.handlers, logger.propagate = kept


async def settle(before: int) -> int:
    """The live count once the server's side of the last connection has finished."""
    with trio.move_on_after(5):
        while live_connections() > before:
            await trio.sleep(0.01)
    return live_connections()


async def round_trip_and_close(url: str, ssl_context: ssl.SSLContext | None = None) -> None:
    async with trio_ws.connect(url, ssl_context=ssl_context) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"


async def test_1000_connections_opened_and_closed_leave_none_alive() -> None:
    with no_cyclic_collector():
        before = live_connections()
        async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            for _ in range(1000):
                await round_trip_and_close(url)
            assert await settle(before) == before
        assert live_connections() == before


async def handler_raises(ws: trio_ws.WebSocket) -> None:
    await ws.recv()
    raise RuntimeError("the handler fails")


async def server_closes(ws: trio_ws.WebSocket) -> None:
    await ws.close(4000, "bye")


async def handler_waits(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


async def client_aborts(url: str) -> None:
    """The client resets TCP in the middle of the connection: the server sees 1006."""
    client = await RawClient.connect(int(url.rsplit(":", 1)[1].rstrip("/")))
    client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.stream.aclose()


async def client_sends_after_handler_failed(url: str) -> None:
    async with trio_ws.connect(url) as ws:
        await ws.send("x")
        await expect_close(ws, 1011)


async def client_sees_server_close(url: str) -> None:
    async with trio_ws.connect(url) as ws:
        await expect_close(ws, 4000)


async def expect_close(ws: trio_ws.WebSocket, code: int) -> None:
    """recv() raises ConnectionClosed with `code`. (Not `pytest.raises`: the exception
    info it keeps refers to this frame, which refers to the connection: a cycle of the
    test's own.)"""
    try:
        await ws.recv()
    except trio_ws.ConnectionClosed as closed:
        assert closed.code == code
    else:
        raise AssertionError("recv() returned a message")


async def client_cancelled(url: str) -> None:
    """The client's body is cancelled: the connection is dropped at once on its side."""
    with trio.move_on_after(0.01):
        async with trio_ws.connect(url) as ws:
            await ws.send("x")
            await trio.sleep_forever()


ENDINGS: dict[str, tuple[trio_ws.server.Handler, Callable[[str], Awaitable[None]]]] = {
    "handler raises": (handler_raises, client_sends_after_handler_failed),
    "server closes": (server_closes, client_sees_server_close),
    "client aborts TCP": (echo, client_aborts),
    "client cancelled": (handler_waits, client_cancelled),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_every_way_of_ending_leaves_none_alive(ending: str) -> None:
    handler, client = ENDINGS[ending]
    with no_cyclic_collector() as log:
        before = live_connections()
        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
            for _ in range(100):
                await client(f"ws://127.0.0.1:{server.port}/")
            assert await settle(before) == before
        assert live_connections() == before
    assert ("connection handler failed" in log.getvalue()) == (ending == "handler raises")


async def test_tls_and_compressed_connections_leave_none_alive() -> None:
    server_context, client_context = tls_contexts()
    with no_cyclic_collector():
        before = live_connections()
        async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
            for _ in range(100):
                await round_trip_and_close(f"wss://127.0.0.1:{server.port}/", client_context)
            assert await settle(before) == before
        assert live_connections() == before


async def test_a_cancelled_client_body_leaves_its_connection_closed() -> None:
    """Cancelled in the body, the connection is dropped and CLOSED at once: `wait_closed()`
    returns instead of waiting forever, and the keepalive lets go of it."""
    async with trio_ws.open_server(handler_waits, "127.0.0.1", 0) as server:
        with trio.move_on_after(0.05):
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await trio.sleep_forever()
        assert ws.state is trio_ws.State.CLOSED
        assert ws.close_code == 1006
        with trio.fail_after(1):
            await ws.wait_closed()
