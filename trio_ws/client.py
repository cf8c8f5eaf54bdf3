"""The WebSocket client: `connect()` opens a connection as an async context manager."""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from . import __version__
from .connection import WebSocket, queue_marks
from .extensions.permessage_deflate import DeflateConfig, config_for
from .handshake import ClientHandshake
from .http import HeadersLike
from .protocol import Protocol, Role
from .uri import parse_uri

__all__ = ["connect", "DEFAULT_USER_AGENT"]

DEFAULT_USER_AGENT = f"Python/{sys.version_info[0]}.{sys.version_info[1]} trio_ws/{__version__}"


@asynccontextmanager
async def connect(
    uri: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: str | DeflateConfig | None = "deflate",
    extra_headers: HeadersLike | None = None,
    origin: str | None = None,
    user_agent_header: str | None = DEFAULT_USER_AGENT,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float = 10,
    max_size: int | None = 2**20,
    max_queue: int | tuple[int, int | None] | None = 16,
    max_queue_bytes: int | None = 2**22,
    write_limit: int = 2**16,
    logger: logging.Logger | None = None,
) -> AsyncIterator[WebSocket]:
    """Connect to a ws:// or wss:// URI; the block's end closes the connection (1000).

    An exception in the block closes with 1011 and comes out as itself. The TCP connect,
    TLS and HTTP upgrade together must finish within `open_timeout` seconds, or
    `TimeoutError` is raised. A server that refuses the upgrade raises `InvalidHandshake`
    carrying its status, headers and body.
    """
    wsuri = parse_uri(uri)
    queue_marks(max_queue)  # a bad value fails here, before connecting
    if wsuri.secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    elif not wsuri.secure and ssl_context is not None:
        raise ValueError("ssl_context is for wss:// URIs; this one is ws://")
    handshake = ClientHandshake(
        wsuri,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        origin=origin,
        user_agent=user_agent_header,
        compression=config_for(compression),
    )
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(float("inf") if open_timeout is None else open_timeout):
            stream = await trio.open_tcp_stream(wsuri.host, wsuri.port)
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=wsuri.host)
                await _tls_handshake(stream, wsuri.host, wsuri.port)
            await stream.send_all(handshake.request_bytes())
            while (response := handshake.next_response()) is None:
                handshake.receive_data(await stream.receive_some())
    except trio.TooSlowError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise TimeoutError(f"opening handshake with {uri} timed out after {open_timeout}s") from None
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    ws = WebSocket(
        stream,
        Protocol(Role.CLIENT, max_size=max_size, deflate=handshake.deflate),
        request=handshake.request,
        response=response,
        initial_data=handshake.trailing_data,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
        max_queue_bytes=max_queue_bytes,
        write_limit=write_limit,
        logger=logger or logging.getLogger("trio_ws.client"),
    )
    async with ws._running():
        yield ws


async def _tls_handshake(stream: trio.SSLStream[trio.SocketStream], host: str, port: int) -> None:
    """Run the TLS handshake now, so that a failure says what failed instead of surfacing
    as a bare `BrokenResourceError` from the first write."""
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            error = ssl.SSLCertVerificationError(
                f"the TLS certificate of {host}:{port} failed to verify: "
                f"{cause.verify_message or cause.reason or cause}"
            )
            error.verify_code, error.verify_message = cause.verify_code, cause.verify_message
            raise error from cause
        if isinstance(cause, ssl.SSLError):
            raise ssl.SSLError(f"TLS handshake with {host}:{port} failed: {cause}") from cause
        raise
