"""Opening and closing at once, many times over: the close frame is never lost."""

from __future__ import annotations

import trio

import trio_ws
from trio_ws.frames import Frame, Opcode, serialize_frame

from .conftest import RawClient

CLIENTS = 8
ROUNDS = 500
CLOSE_1000 = serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe8"), mask=True)


async def quick_close_rounds(port: int, *, client_closes: bool) -> list[int]:
    """Each of CLIENTS workers runs ROUNDS connections; returns how many lacked a close frame."""
    missing = [0]

    async def worker() -> None:
        for _ in range(ROUNDS):
            raw = await RawClient.connect(port)
            if client_closes:
                await raw.stream.send_all(CLOSE_1000)
            await raw.read_to_eof()
            if Opcode.CLOSE not in [f.opcode for f in raw.frames()]:
                missing[0] += 1

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS):
                nursery.start_soon(worker)
    return missing


async def test_client_closing_at_once_always_gets_the_servers_close_frame() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        async for _ in ws:
            pass

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        assert await quick_close_rounds(server.port, client_closes=True) == [0]


async def test_handler_returning_at_once_always_delivers_its_close_frame() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        return

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        assert await quick_close_rounds(server.port, client_closes=False) == [0]
