"""Test a handler or a `Router` in memory: the real handshake and protocol, no socket.

    async with trio_ws.testing.connect_in_memory(router, "/chat/1") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"

The client and the server talk over `trio.testing.memory_stream_pair()`. The server runs
the same code as `serve`: `process_request` (the server's and the handler's own),
`process_response`, subprotocols, compression, the handler's error handling. A refused
handshake raises `InvalidHandshake` with the status, as over TCP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Unpack

import trio
import trio.testing

from .client import connect_over
from .config import Handler, ServeOptions, ServerConfig, configured
from .connection import WebSocket
from .server import WebSocketServer, build_server
from .tasks import open_nursery_unwrapped

__all__ = ["InMemoryServer", "open_in_memory_server", "connect_in_memory"]


class InMemoryServer:
    """A server without a socket: each `connect(path)` gets a memory stream of its own."""

    def __init__(self, server: WebSocketServer, nursery: trio.Nursery) -> None:
        #: The server, for its `connections`.
        self.server = server
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


@asynccontextmanager
async def open_in_memory_server(
    handler: Handler | ServerConfig, **serve_options: Unpack[ServeOptions]
) -> AsyncIterator[InMemoryServer]:
    """A server for `handler` (or a `ServerConfig`) with `serve`'s keyword options, in
    memory; leaving the block waits for its handlers (cancel the block to stop them)."""
    server = build_server(configured(handler, serve_options), [])
    async with open_nursery_unwrapped() as timers:
        timers.start_soon(server.keepalive.run)
        async with open_nursery_unwrapped() as connections:
            yield InMemoryServer(server, connections)
        timers.cancel_scope.cancel()  # every handler has ended


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
