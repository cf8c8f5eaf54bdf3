"""Who closes TCP, and how (RFC 6455 section 7.1.1): after the closing handshake the server
closes the TCP connection first, with a FIN, never a RST that could destroy its close frame.

With nothing left unread, the server closes its socket at once (a FIN); with data still
unread in the kernel, a close would be a RST, so it half-closes and reads to EOF instead.
The raw client here sees which one it got: EOF (a FIN) or ECONNRESET.
"""

from __future__ import annotations

import trio

import trio_ws
from trio_ws.frames import Frame, Opcode, serialize_close, serialize_frame

from .conftest import RawClient

CLIENT_CLOSE = serialize_frame(Frame(Opcode.CLOSE, serialize_close(1000, "bye")), mask=True)


async def read_until_eof(raw: RawClient) -> str:
    """Read until the server closes: "FIN" for an orderly end of stream, "RST" for a reset."""
    while True:
        try:
            chunk = await raw.stream.receive_some()
        except trio.BrokenResourceError:
            return "RST"
        if not chunk:
            return "FIN"
        raw.received += chunk


async def test_a_server_initiated_close_ends_with_the_servers_fin() -> None:
    async def close_at_once(ws: trio_ws.WebSocket) -> None:
        await ws.close(4000, "done")

    async with trio_ws.open_server(close_at_once, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        with trio.fail_after(5):
            while not any(frame.opcode is Opcode.CLOSE for frame in raw.frames()):
                raw.received += await raw.stream.receive_some()
            await raw.stream.send_all(CLIENT_CLOSE)
            ending = await read_until_eof(raw)  # our side is still open: the server went first
        await raw.stream.aclose()
    assert ending == "FIN"
    assert [frame.opcode for frame in raw.frames()] == [Opcode.CLOSE]


async def test_a_client_initiated_close_ends_with_the_servers_fin() -> None:
    closed = trio.Event()

    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()
        closed.set()

    async with trio_ws.open_server(wait, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        await raw.stream.send_all(CLIENT_CLOSE)
        with trio.fail_after(5):
            ending = await read_until_eof(raw)
            await closed.wait()
        await raw.stream.aclose()
    assert ending == "FIN"
    (echo,) = raw.frames()
    assert echo.opcode is Opcode.CLOSE and echo.payload[:2] == b"\x03\xe8"


async def test_data_left_unread_after_the_close_frame_still_ends_with_a_fin() -> None:
    """The client sends its close frame and then 1 MiB more in the same burst: the server
    stops reading at the close frame, so the rest is unread in its kernel, and a plain close
    would reset the connection. It half-closes and reads to EOF: the client gets the close
    frame, whole, and a FIN."""

    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    junk = b"\x00" * 2**20
    async with trio_ws.open_server(wait, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.stream.send_all, CLIENT_CLOSE + junk)
            with trio.fail_after(5):
                ending = await read_until_eof(raw)
        await raw.stream.aclose()
    assert ending == "FIN"
    assert [frame.opcode for frame in raw.frames()] == [Opcode.CLOSE]
