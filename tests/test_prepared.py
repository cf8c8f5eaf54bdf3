"""`PreparedMessage` and `WebSocket.try_send_nowait`: the public seam that `broadcast` and
the hub use, framed once per group of connections that frame alike, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.lowlevel

import trio_ws
from trio_ws.protocol import Protocol

from .conftest import RawClient, ws_url


@asynccontextmanager
async def server_with_clients(
    count: int, **client_options: object
) -> AsyncIterator[tuple[trio_ws.WebSocketServer, list[trio_ws.WebSocket]]]:
    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    async with trio_ws.open_server(wait, "127.0.0.1", 0) as server, AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(trio_ws.connect(ws_url(server), **client_options))  # type: ignore[arg-type]
            for _ in range(count)
        ]
        with trio.fail_after(10):
            while len(server.connections) < count:
                await trio.sleep(0.01)
        yield server, clients


async def test_a_prepared_message_is_framed_once_for_all_plain_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = []
    shared_frame = Protocol.shared_frame

    def counting(self: Protocol, opcode: object, payload: bytes) -> bytes:
        built.append(self.framing_key)
        return shared_frame(self, opcode, payload)  # type: ignore[arg-type]

    monkeypatch.setattr(Protocol, "shared_frame", counting)
    async with server_with_clients(10, compression=None) as (server, clients):
        prepared = trio_ws.PreparedMessage("to everyone")
        assert all(ws.try_send_nowait(prepared) for ws in server.connections)
        with trio.fail_after(10):
            assert [await ws.recv() for ws in clients] == ["to everyone"] * 10
    assert built == ["plain"]


async def test_send_takes_a_prepared_message_on_both_sides() -> None:
    async with server_with_clients(2) as (server, clients):
        prepared = trio_ws.PreparedMessage(b"\x00binary\xff")
        for ws in server.connections:  # compressed with context takeover: each its own frame
            await ws.send(prepared)
        for client in clients:  # a client masks its frames: it frames the message itself
            await client.send(prepared)
        with trio.fail_after(10):
            assert [await ws.recv() for ws in clients] == [b"\x00binary\xff"] * 2


async def test_try_send_nowait_refuses_past_write_limit_and_after_close() -> None:
    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    # The peer never reads, so it never answers the close either: close_timeout ends it.
    async with trio_ws.open_server(
        wait, "127.0.0.1", 0, write_limit=2**16, compression=None, close_timeout=0.5
    ) as server:
        raw = await RawClient.connect(server.port)  # never reads: its window fills
        with trio.fail_after(10):
            while not server.connections:
                await trio.sleep(0.01)
        (ws,) = server.connections
        chunk = trio_ws.PreparedMessage(b"x" * 2**16)
        accepted = 0
        with trio.fail_after(20):
            while ws.try_send_nowait(chunk):
                accepted += 1
                await trio.lowlevel.checkpoint()  # let the writer push what the kernel takes
        assert accepted >= 2  # the kernel took some; then the buffer stayed over write_limit
        await ws.close()
        assert not ws.try_send_nowait("after close")
        await raw.stream.aclose()


async def test_a_prepared_message_keeps_its_bytes_when_the_buffer_changes() -> None:
    buffer = bytearray(b"before")
    prepared = trio_ws.PreparedMessage(buffer)
    buffer[:] = b"AFTER!"
    async with server_with_clients(1, compression=None) as (server, (client,)):
        (ws,) = server.connections
        assert ws.try_send_nowait(prepared)
        with trio.fail_after(10):
            assert await client.recv() == b"before"


def test_what_cannot_be_prepared_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot send dict"):
        trio_ws.PreparedMessage({"a": 1})  # type: ignore[arg-type]
