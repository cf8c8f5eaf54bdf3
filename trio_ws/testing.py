"""Test a handler or a `Router` in memory: the real handshake and protocol, no socket.

    async with trio_ws.testing.connect_in_memory(router, "/chat/1") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"

The client and the server talk over `trio.testing.memory_stream_pair()`. The server runs
the same code as `serve`: `process_request` (the server's and the handler's own),
`process_response`, subprotocols, compression, the handler's error handling. A refused
handshake raises `InvalidHandshake` with the status, as over TCP. A configuration's `hub`
and `lifespan` are opened too. A plain HTTP request (a health check answered by
`process_request`) gets its `Response`:

    response = await trio_ws.testing.request_in_memory(config, "/healthz")
    assert response.status == 200
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Unpack

import h11
import trio
import trio.testing

from .client import connect_over
from .config import Handler, ServeOptions, ServerConfig, configured
from .connection import WebSocket
from .counters import register as register_stats
from .counters import unregister as unregister_stats
from .http import Headers, HeadersLike, Response
from .hub import Hub, open_hub
from .server import WebSocketServer, build_server
from .tasks import open_nursery_unwrapped

__all__ = ["InMemoryServer", "open_in_memory_server", "connect_in_memory", "request_in_memory"]

MAX_RESPONSE = 2**24  # bytes of an in-memory HTTP answer read at most


class InMemoryServer:
    """A server without a socket: each `connect(path)` gets a memory stream of its own."""

    def __init__(self, server: WebSocketServer, nursery: trio.Nursery) -> None:
        self.server = server
        """The server, for its `connections`."""
        self._nursery = nursery

    @asynccontextmanager
    async def connect(self, path: str = "/", **connect_options: Any) -> AsyncIterator[WebSocket]:
        """A client connection to `path`, with `connect()`'s options that are not about
        reaching the server (TLS, proxies, redirects)."""
        client_stream, server_stream = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self.server.serve_stream, server_stream)
        uri = "ws://in-memory" + (path if path.startswith("/") else "/" + path)
        async with connect_over(client_stream, uri, **connect_options) as ws:
            yield ws

    async def request(self, path: str = "/", *, method: str = "GET", headers: HeadersLike = ()) -> Response:
        """A plain HTTP request (no upgrade) to `path`: the server's whole `Response`."""
        client_stream, server_stream = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self.server.serve_stream, server_stream)
        client = h11.Connection(h11.CLIENT)
        sent = Headers(headers)
        if "Host" not in sent:
            sent["Host"] = "in-memory"
        await client_stream.send_all(
            client.send(h11.Request(method=method, target=path, headers=list(sent.raw_items()))) or b""
        )
        await client_stream.send_all(client.send(h11.EndOfMessage()) or b"")
        status, answer, body = 0, Headers(), bytearray()
        async with client_stream:
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(bytes(await client_stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    answer = Headers(
                        (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()
                    )
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_RESPONSE:
                        raise ValueError(f"the answer's body is over {MAX_RESPONSE} bytes")
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return Response(status, answer, bytes(body))


@asynccontextmanager
async def open_in_memory_server(
    handler: Handler | ServerConfig, **serve_options: Unpack[ServeOptions]
) -> AsyncIterator[InMemoryServer]:
    """A server for `handler` (or a `ServerConfig`) with `serve`'s keyword options, in
    memory; leaving the block waits for its handlers (cancel the block to stop them)."""
    config = configured(handler, serve_options)
    hub_context: AbstractAsyncContextManager[Hub | None] = nullcontext(None)
    if config.hub is not None:
        hub_context = open_hub(config.hub)
    async with hub_context as hub:
        server = build_server(config, [], hub)
        lifespan: AbstractAsyncContextManager[object] = nullcontext()
        if config.lifespan is not None:
            lifespan = config.lifespan(server, hub)
        register_stats(server)  # in `trio_ws.stats()` and `/metrics`, as a server on a socket is
        try:
            async with open_nursery_unwrapped() as timers:
                server.start_timers(timers)
                async with lifespan, open_nursery_unwrapped() as connections:
                    yield InMemoryServer(server, connections)
                timers.cancel_scope.cancel()  # every handler has ended
        finally:
            unregister_stats(server)


@asynccontextmanager
async def connect_in_memory(
    handler: Handler | ServerConfig,
    path: str = "/",
    *,
    server_options: ServeOptions | None = None,
    **connect_options: Any,
) -> AsyncIterator[WebSocket]:
    """One client connection to `handler` at `path`, in memory. `server_options` are
    `serve`'s keyword options; `connect_options` are `connect()`'s."""
    async with (
        open_in_memory_server(handler, **(server_options or {})) as server,
        server.connect(path, **connect_options) as ws,
    ):
        yield ws


async def request_in_memory(
    handler: Handler | ServerConfig,
    path: str = "/",
    *,
    method: str = "GET",
    headers: HeadersLike = (),
    server_options: ServeOptions | None = None,
) -> Response:
    """The `Response` to a plain HTTP request (no upgrade) to `path`, in memory: what
    `process_request` answers (a health check, a 401), or the handshake's refusal."""
    async with open_in_memory_server(handler, **(server_options or {})) as server:
        return await server.request(path, method=method, headers=headers)
