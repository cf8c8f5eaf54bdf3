"""Keepalive and opening-handshake timeouts, and that they spare healthy connections."""

from __future__ import annotations

import trio

import trio_ws
from trio_ws.frames import Opcode

from .conftest import RawClient, echo, ws_url

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.4


async def assert_healthy(server: trio_ws.WebSocketServer, seconds: float) -> trio_ws.WebSocket:
    """A well-behaved client keeps echoing for `seconds`, keepalive pings included."""
    async with trio_ws.connect(ws_url(server), ping_interval=None) as ws:
        with trio.move_on_after(seconds):
            n = 0
            while True:
                await ws.send(f"m{n}")
                assert await ws.recv() == f"m{n}"
                n += 1
                await trio.sleep(0.05)
        assert ws.state is trio_ws.State.OPEN
    assert ws.close_code == 1000
    return ws


async def test_peer_that_never_answers_pings_is_closed_after_interval_plus_timeout() -> None:
    async with (
        trio_ws.open_server(
            echo, "127.0.0.1", 0, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT
        ) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(assert_healthy, server, 2 * (PING_INTERVAL + PING_TIMEOUT))
        raw = await RawClient.connect(server.port)  # reads, but never sends a pong
        started = trio.current_time()
        with trio.fail_after(5):
            await raw.read_to_eof()
        elapsed = trio.current_time() - started
        frames = raw.frames()
        assert Opcode.PING in [f.opcode for f in frames]
        assert frames[-1].opcode is Opcode.CLOSE
        assert frames[-1].payload[:2] == (1011).to_bytes(2, "big")
        expected = PING_INTERVAL + PING_TIMEOUT
        assert expected - 0.05 <= elapsed <= expected + 0.5, elapsed


async def test_client_keepalive_measures_latency() -> None:
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server), ping_interval=0.05) as ws,
    ):
        await trio.sleep(0.3)
        assert 0 < ws.latency < 0.2


async def test_half_handshake_is_dropped_after_open_timeout() -> None:
    open_timeout = 0.5
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, open_timeout=open_timeout) as server,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(assert_healthy, server, 2 * open_timeout)
        raw = await RawClient.connect(server.port, handshake=False)
        await raw.stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web")
        started = trio.current_time()
        with trio.fail_after(5):
            assert await raw.read_to_eof() == b""
        elapsed = trio.current_time() - started
        assert open_timeout - 0.05 <= elapsed <= open_timeout + 0.5, elapsed


async def test_silent_tcp_connection_is_dropped_after_open_timeout() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, open_timeout=0.3) as server:
        raw = await RawClient.connect(server.port, handshake=False)
        with trio.fail_after(3):
            assert await raw.read_to_eof() == b""
        assert not server.connections


async def never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def test_client_open_timeout_raises_timeout_error() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, never_answer, 0)
        port = listeners[0].socket.getsockname()[1]
        started = trio.current_time()
        try:
            async with trio_ws.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3):
                raise AssertionError("the handshake cannot complete")
        except TimeoutError as exc:
            assert "timed out" in str(exc)
        assert trio.current_time() - started < 2
        nursery.cancel_scope.cancel()
