"""trio_ws's HTTP/2 client against servers that misbehave on purpose: silent, flooding,
speaking garbage, or answering with a header list past the limit. Each fails the connect
(or the WebSocket) with a clear error within its timeout, and leaves nothing running."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trio
from hyperframe.frame import PingFrame

import trio_ws

from .conftest import tls_contexts

Behaviour = Callable[[trio.SSLStream[trio.SocketStream], h2.connection.H2Connection | None], Awaitable[None]]


@asynccontextmanager
async def hostile_h2_server(
    behaviour: Behaviour, *, speak_h2: bool = True
) -> AsyncIterator[tuple[int, ssl.SSLContext, list[str]]]:
    """A TLS server whose ALPN picks h2; with `speak_h2` it reads the client's preface and
    request with h2 first, then hands over to `behaviour`. Yields its port, a client
    context that trusts it, and what happened to each connection."""
    server_context, client_context = tls_contexts()
    server_context.set_alpn_protocols(["h2"])
    seen: list[str] = []

    async def serve(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, server_context, server_side=True)
        try:
            await stream.do_handshake()
            conn = None
            if speak_h2:
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                conn.initiate_connection()
                conn.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
                await stream.send_all(conn.data_to_send())
                while not any(
                    isinstance(e, h2.events.RequestReceived)
                    for e in conn.receive_data(await stream.receive_some())
                ):
                    await stream.send_all(conn.data_to_send())
            await behaviour(stream, conn)
            # Then read until the client closes: how long that takes is what the test checks.
            while await stream.receive_some():
                pass
            seen.append("client closed")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            seen.append("client reset")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], client_context, seen
        nursery.cancel_scope.cancel()


async def silent(stream: Any, conn: Any) -> None:
    await trio.sleep_forever()


async def test_a_server_that_never_sends_settings_fails_the_connect_at_open_timeout() -> None:
    async def quiet(stream: Any, conn: Any) -> None:
        return  # TLS done, then nothing: no SETTINGS, ever

    async with hostile_h2_server(quiet, speak_h2=False) as (port, context, seen):
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await trio_ws.connect(
                f"wss://127.0.0.1:{port}/", ssl_context=context, http2=True, open_timeout=0.5
            ).__aenter__()
        assert trio.current_time() - start < 1.5
        with trio.fail_after(15):  # the half-open connection is not left behind
            while not seen:
                await trio.sleep(0.05)


async def test_a_ping_flood_from_the_server_ends_its_connection_not_the_client() -> None:
    async def answer_then_flood(stream: Any, conn: Any) -> None:
        conn.send_headers(1, [(b":status", b"200")])
        await stream.send_all(conn.data_to_send())
        ping = PingFrame(0, opaque_data=b"12345678").serialize()
        with trio.move_on_after(5):
            while True:
                await stream.send_all(ping * 100)

    async with hostile_h2_server(answer_then_flood) as (port, context, _seen):
        async with trio_ws.connect(f"wss://127.0.0.1:{port}/", ssl_context=context, http2=True) as ws:
            with pytest.raises(trio_ws.ConnectionClosedError):
                with trio.fail_after(5):
                    await ws.recv()
        assert ws.close_code == 1006


async def test_garbage_instead_of_http2_fails_the_connect_within_open_timeout() -> None:
    """Not HTTP/2 after ALPN chose it: the HTTP/2 connection fails, the client tries
    HTTP/1.1 on a new connection, and that fails too (the same garbage, with no end):
    all within open_timeout."""

    async def garbage(stream: Any, conn: Any) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\nthis is not HTTP/2" * 10)

    async with hostile_h2_server(garbage, speak_h2=False) as (port, context, _seen):
        start = trio.current_time()
        with pytest.raises((trio_ws.InvalidHandshake, TimeoutError)):
            async with trio_ws.connect(
                f"wss://127.0.0.1:{port}/", ssl_context=context, http2=True, open_timeout=1
            ):
                pass
        assert trio.current_time() - start < 2


async def test_response_headers_past_the_limit_fail_the_connect() -> None:
    async def huge_headers(stream: Any, conn: Any) -> None:
        fields = [(b":status", b"200")] + [(f"x-{i}".encode(), b"v" * 1000) for i in range(40)]
        conn.send_headers(1, fields)
        await stream.send_all(conn.data_to_send())

    async with hostile_h2_server(huge_headers) as (port, context, _seen):
        with trio.fail_after(5), pytest.raises(trio_ws.InvalidHandshake, match="header block of more than"):
            async with trio_ws.connect(f"wss://127.0.0.1:{port}/", ssl_context=context, http2=True):
                pass
