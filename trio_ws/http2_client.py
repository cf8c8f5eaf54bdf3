"""The client's HTTP/2: WebSockets as RFC 8441 streams, every `connect()` to one origin
sharing one connection, which closes with the last of its streams."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable

import h2.errors
import trio

from .exceptions import InvalidHandshake
from .handshake import ClientHandshake
from .http import Response
from .http2_connection import Http2Connection, Http2Stream
from .http2_limits import Http2Limits
from .http2_messages import extended_connect_fields, response_from_fields
from .uri import WebSocketURI

__all__ = ["Http2Pool", "pool", "MAX_REFUSAL_BODY"]

MAX_REFUSAL_BODY = 64 * 1024
"""Bytes of a refusal's body kept for `InvalidHandshake.body`; the rest is dropped."""

logger = logging.getLogger("trio_ws.client")
_LIMITS = Http2Limits()
_CLOSE_TIMEOUT = 10.0  # seconds the final frames of a pooled connection may take to leave

Dial = Callable[[], Awaitable[trio.abc.Stream]]


class Http2Pool:
    """HTTP/2 connections by origin, for one trio run. Each runs in a system task of its
    own, since it outlives the `connect()` that opened it."""

    def __init__(self) -> None:
        self._connections: dict[Hashable, Http2Connection] = {}
        self._locks: dict[Hashable, trio.Lock] = {}

    async def open_stream(
        self, key: Hashable, dial: Dial, uri: WebSocketURI, handshake: ClientHandshake
    ) -> tuple[Http2Stream, Response] | trio.abc.Stream:
        """A WebSocket stream to `uri` and the server's validated answer, on the origin's
        connection (opened with `dial` if there is none to share). A server that does not
        speak HTTP/2, or not RFC 8441, gives back the stream `dial` opened if it can carry
        HTTP/1.1 (TLS whose ALPN chose http/1.1); `NotImplementedError` if it cannot.

        A stream the server refused without processing it (REFUSED_STREAM, or past the
        last stream of its GOAWAY: a server draining for a restart) is tried once more, on
        a new connection: RFC 9113 section 8.7 says it is safe to."""
        fields = extended_connect_fields(uri, handshake.request.headers)
        fresh = False
        while True:
            connection = await self._connection(key, dial, uri, fresh)
            if not isinstance(connection, Http2Connection):
                return connection
            h2_stream = connection.open_stream(fields)
            try:
                response = response_from_fields(await h2_stream.wait_for_headers())
                if not 200 <= response.status < 300:
                    response.body = await _body(h2_stream)
                accepted = handshake.http2_response(response)
                # `ws.request` says what went on the wire: an Extended CONNECT.
                request = handshake.request
                request.method, request.http_version, request.protocol = "CONNECT", "2", "websocket"
                for name in ("Upgrade", "Connection", "Sec-WebSocket-Key"):  # HTTP/1.1's alone
                    request.headers.pop(name, None)
                return h2_stream, accepted
            except trio.BrokenResourceError as exc:
                await h2_stream.abort()
                if fresh or h2_stream.reset_code != h2.errors.ErrorCodes.REFUSED_STREAM:
                    raise InvalidHandshake(f"the opening handshake failed: {exc}") from exc
                fresh = True
            except BaseException:
                await h2_stream.abort()
                raise

    async def _connection(
        self, key: Hashable, dial: Dial, uri: WebSocketURI, fresh: bool
    ) -> Http2Connection | trio.abc.Stream:
        """The origin's connection, or a new one (`fresh`: always a new one)."""
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:  # concurrent connects to one origin open one connection, not several
            connection = self._connections.get(key)
            if connection is not None and connection.may_open_stream and not fresh:
                return connection
            stream = await dial()
            if isinstance(stream, trio.SSLStream) and stream.selected_alpn_protocol() != "h2":
                return stream
            connection = Http2Connection(
                stream, client=True, limits=_LIMITS, logger=logger, close_timeout=_CLOSE_TIMEOUT
            )
            trio.lowlevel.spawn_system_task(_run, connection, name=f"trio_ws HTTP/2 connection to {uri.host}")
            try:
                await connection.settings_received.wait()
            except BaseException:  # timed out (open_timeout) or cancelled: not left running
                connection.go_away()
                raise
            if connection.closed or not connection.h2.remote_settings.enable_connect_protocol:
                connection.go_away()
                raise NotImplementedError(f"{uri.host}:{uri.port} does not take WebSockets over HTTP/2")
            self._connections[key] = connection
            return connection


async def _body(stream: Http2Stream) -> bytes:
    """A refusal's body, up to MAX_REFUSAL_BODY."""
    body = bytearray()
    while len(body) < MAX_REFUSAL_BODY and (data := await stream.receive_some()):
        body += data
    return bytes(body[:MAX_REFUSAL_BODY])


async def _run(connection: Http2Connection) -> None:
    """A pooled connection's life, in its system task: nothing it meets may escape."""
    try:
        await connection.serve(None)
    except Exception:
        logger.exception("HTTP/2 connection failed")


_POOL: trio.lowlevel.RunVar[Http2Pool] = trio.lowlevel.RunVar("trio_ws.http2_pool")


def pool() -> Http2Pool:
    """The current trio run's pool."""
    try:
        return _POOL.get()
    except LookupError:
        found = Http2Pool()
        _POOL.set(found)
        return found
