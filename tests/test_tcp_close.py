"""Who closes TCP, and how (RFC 6455 section 7.1.1): after the closing handshake the server
closes the TCP connection first, with a FIN, never a RST that could destroy its close frame.

With nothing left unread, the server closes its socket at once (a FIN); with data still
unread in the kernel, a close would be a RST, so it half-closes and reads to EOF instead.
The raw client here sees which one it got: EOF (a FIN) or ECONNRESET.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

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


async def in_recv(ws: trio_ws.WebSocket) -> None:
    """A handler in recv(), which reads the socket itself: the close frame reaches it with
    no reader task, and the close of TCP is done at once or by a reader started then."""
    async for _ in ws:
        pass
    await ws.wait_closed()


@pytest.mark.parametrize("handler_in_recv", [False, True])
async def test_a_client_initiated_close_ends_with_the_servers_fin(handler_in_recv: bool) -> None:
    closed = trio.Event()

    async def wait(ws: trio_ws.WebSocket) -> None:
        await (in_recv(ws) if handler_in_recv else ws.wait_closed())
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


@pytest.mark.parametrize("handler_in_recv", [False, True])
async def test_data_left_unread_after_the_close_frame_still_ends_with_a_fin(handler_in_recv: bool) -> None:
    """The client sends its close frame and then 1 MiB more in the same burst: the server
    stops reading at the close frame, so the rest is unread in its kernel, and a plain close
    would reset the connection. It half-closes and reads to EOF: the client gets the close
    frame, whole, and a FIN."""

    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    junk = b"\x00" * 2**20
    async with trio_ws.open_server(in_recv if handler_in_recv else wait, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.stream.send_all, CLIENT_CLOSE + junk)
            with trio.fail_after(5):
                ending = await read_until_eof(raw)
        await raw.stream.aclose()
    assert ending == "FIN"
    assert [frame.opcode for frame in raw.frames()] == [Opcode.CLOSE]


async def test_a_peer_that_keeps_sending_after_its_close_frame_is_cut_at_close_timeout() -> None:
    """The client's close frame, then 64 KiB chunks without end and never a FIN: the
    server's drain to EOF would read forever, so `close_timeout` ends it, and the
    connection is gone within it (plus a margin for a loaded machine)."""
    closed_after: list[float] = []

    async def wait(ws: trio_ws.WebSocket) -> None:
        started = trio.current_time()
        await ws.wait_closed()
        closed_after.append(trio.current_time() - started)

    async with trio_ws.open_server(wait, "127.0.0.1", 0, close_timeout=0.5) as server:
        raw = await RawClient.connect(server.port)

        async def flood() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                # With the close frame: unread data when the server closes, so it drains.
                await raw.stream.send_all(CLIENT_CLOSE + b"\x00" * 2**18)
                while True:
                    await raw.stream.send_all(b"\x00" * 2**16)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.fail_after(5):
                while not closed_after or server.connections:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        await raw.stream.aclose()
    assert 0.4 < closed_after[0] < 2.0, closed_after


async def a_close_followed_by(
    after: bytes, client_closes: bool, handler_in_recv: bool
) -> tuple[str, list[Opcode]]:
    """A server; a raw client whose close frame is followed, in one burst, by `after`; how
    the connection ended for the client, and the frames it got."""

    async def wait(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    async def close_at_once(ws: trio_ws.WebSocket) -> None:
        await ws.close(4000, "done")

    handler = (in_recv if handler_in_recv else wait) if client_closes else close_at_once
    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        async with trio.open_nursery() as nursery:
            if client_closes:
                nursery.start_soon(raw.stream.send_all, CLIENT_CLOSE + after)
            else:
                while not any(frame.opcode is Opcode.CLOSE for frame in raw.frames()):
                    raw.received += await raw.stream.receive_some()
                nursery.start_soon(raw.stream.send_all, CLIENT_CLOSE + after)
            with trio.fail_after(5):
                ending = await read_until_eof(raw)
        await raw.stream.aclose()
    return ending, [frame.opcode for frame in raw.frames()]


@settings(max_examples=25)
@given(
    after=st.one_of(
        st.binary(max_size=3000),
        st.integers(1, 2_000_000).map(lambda size: bytes(size)),  # past several reads of 64 KiB
        st.binary(min_size=1, max_size=64).map(lambda frame: frame * 2000),
    ),
    client_closes=st.booleans(),
    handler_in_recv=st.booleans(),
)
def test_whatever_follows_the_close_frame_the_client_gets_the_close_frame_then_a_fin(
    after: bytes, client_closes: bool, handler_in_recv: bool
) -> None:
    """Any bytes after the client's close frame, from none to 2 MB, on either side's
    close: the server closes TCP first with a FIN, never a RST, and its close frame is the
    only frame the client gets."""
    ending, opcodes = trio.run(a_close_followed_by, after, client_closes, handler_in_recv)
    assert (ending, opcodes) == ("FIN", [Opcode.CLOSE])


@pytest.mark.parametrize("how", ["keepalive", "close"])
async def test_a_peer_that_never_reads_is_really_disconnected_at_close_timeout(how: str) -> None:
    """When the close frame cannot leave (the peer's window is shut), close_timeout drops the
    TCP connection: the socket is closed, not only marked closed while it stays open."""
    import os
    import socket

    handlers: list[trio_ws.WebSocket] = []

    async def flood(ws: trio_ws.WebSocket) -> None:
        handlers.append(ws)
        if how == "close":
            with trio.move_on_after(0.3):
                while True:
                    await ws.send(os.urandom(100_000))
            await ws.close()  # cannot be sent: the peer reads nothing
            return
        while True:  # until keepalive finds the peer dead (its ping cannot go either)
            await ws.send(os.urandom(100_000))

    async with trio_ws.open_server(
        flood, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2, close_timeout=0.3, compression=None
    ) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with trio.fail_after(5):
            while not handlers or handlers[0].state is not trio_ws.State.CLOSED:
                await trio.sleep(0.05)
        stream = handlers[0]._core.transport.stream
        assert isinstance(stream, trio.SocketStream)
        assert stream.socket.fileno() == -1, "marked closed, so the socket must be closed"
        # The peer sees the end: an EOF or a reset once it reads what was buffered.
        sock.setblocking(False)
        with trio.fail_after(5):
            while True:
                try:
                    if not sock.recv(1 << 20):
                        break
                except BlockingIOError:
                    await trio.sleep(0.01)
                except ConnectionResetError:
                    break
        sock.close()
