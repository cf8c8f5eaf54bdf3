"""The WebSocket client: `connect()` opens a connection as an async context manager."""

from __future__ import annotations

import dataclasses
import functools
import logging
import ssl
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, NoReturn, ParamSpec

import trio

from .connection import WebSocket
from .exceptions import InvalidHandshake, InvalidRedirect, InvalidURI
from .extensions.permessage_deflate import DeflateConfig, config_for
from .handshake import ClientHandshake
from .http import Headers, HeadersLike, Response
from .inbox import queue_marks
from .options import completed
from .protocol import Protocol, Role
from .proxy import USE_ENVIRONMENT, UseEnvironment, open_tunnel, proxy_for
from .uri import WebSocketURI, parse_uri
from .version import __version__

__all__ = [
    "connect",
    "connect_over",
    "Connecting",
    "DEFAULT_USER_AGENT",
    "REDIRECT_STATUSES",
    "CREDENTIAL_HEADERS",
]

P = ParamSpec("P")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")
_HTTP_TO_WS = {"http": "ws", "https": "wss"}

DEFAULT_USER_AGENT = f"Python/{sys.version_info[0]}.{sys.version_info[1]} trio_ws/{__version__}"


class Connecting(AbstractAsyncContextManager[WebSocket]):
    """What `connect()` returns: `async with` it. It is not an iterator: `async for ws in
    connect(uri)`, which reconnects in `websockets`, says to use `reconnect()` instead."""

    def __init__(self, opening: AbstractAsyncContextManager[WebSocket]) -> None:
        self._opening = opening

    async def __aenter__(self) -> WebSocket:
        return await self._opening.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._opening.__aexit__(kind, exc, tb)

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "connect() opens one connection: `async with trio_ws.connect(uri) as ws:`. To connect "
            "again after each drop (what `async for ws in websockets.connect(uri)` does), use "
            "`async with trio_ws.reconnect(uri) as connections: async for ws in connections:`"
        )


def _connecting(opener: Callable[P, AbstractAsyncContextManager[WebSocket]]) -> Callable[P, Connecting]:
    @functools.wraps(opener)
    def connect(*args: P.args, **kwargs: P.kwargs) -> Connecting:
        return Connecting(opener(*args, **kwargs))

    return connect


@_connecting
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
    max_redirects: int = 10,
    proxy: str | UseEnvironment | None = USE_ENVIRONMENT,
    logger: logging.Logger | None = None,
) -> AsyncIterator[WebSocket]:
    """Connect to a ws:// or wss:// URI; the block's end closes the connection (1000).

    Redirects (301, 302, 303, 307, 308) are followed up to `max_redirects`, never from
    wss:// to ws://; credentials (`Authorization`, `Cookie`, `Proxy-Authorization`, the
    URI's user info) are not sent to another origin. `InvalidRedirect` names the chain.

    `proxy` is an http://, https://, socks5://, socks5h://, socks4:// or socks4a:// URL
    (with `user:password@` if it needs them); by default it comes from the environment
    (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`), and `proxy=None` turns it off.
    A proxy that refuses raises `ProxyError`, naming it and its answer.

    An exception in the block closes with 1011 and comes out as itself. The TCP connect,
    TLS and HTTP upgrade together must finish within `open_timeout` seconds, or
    `TimeoutError` is raised. A server that refuses the upgrade raises `InvalidHandshake`
    carrying its status, headers and body.
    """
    first = parse_uri(uri)
    queue_marks(max_queue)  # a bad value fails here, before connecting
    if not first.secure and ssl_context is not None:
        raise ValueError("ssl_context is for wss:// URIs; this one is ws://")
    if max_redirects < 0:
        raise ValueError(f"max_redirects must be 0 or more, not {max_redirects}")
    proxy_for(first, proxy)  # a bad proxy URL fails here, before connecting
    chain = [uri]
    credentials = True  # still on the first URI's origin: its credentials may be sent
    try:
        with trio.fail_after(float("inf") if open_timeout is None else open_timeout):
            while True:
                wsuri = parse_uri(chain[-1])
                if credentials and wsuri.user_info is None:
                    wsuri = dataclasses.replace(wsuri, user_info=first.user_info)
                handshake = ClientHandshake(
                    wsuri,
                    subprotocols=subprotocols,
                    extra_headers=extra_headers if credentials else without_credentials(extra_headers),
                    origin=origin,
                    user_agent=user_agent_header,
                    compression=config_for(compression),
                )
                try:
                    stream, response = await _open(wsuri, handshake, ssl_context, proxy_for(wsuri, proxy))
                    break
                except InvalidHandshake as exc:
                    if exc.status not in REDIRECT_STATUSES:
                        raise
                    target = redirect_target(chain, exc, max_redirects)
                    credentials = credentials and same_origin(first, parse_uri(target))
                    chain.append(target)
    except trio.TooSlowError:
        raise TimeoutError(f"opening handshake with {uri} timed out after {open_timeout}s") from None
    ws = _client_websocket(
        stream,
        handshake,
        response,
        max_size=max_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
        max_queue_bytes=max_queue_bytes,
        write_limit=write_limit,
        logger=logger,
    )
    async with ws.running():
        yield ws


async def _open(
    wsuri: WebSocketURI, handshake: ClientHandshake, ssl_context: ssl.SSLContext | None, proxy: str | None
) -> tuple[trio.abc.Stream, Response]:
    """One attempt: TCP (or a proxy's tunnel), TLS for wss://, the upgrade request and the
    101 (or an error)."""
    stream: trio.abc.Stream | None = None
    try:
        if proxy is None:
            stream = await trio.open_tcp_stream(wsuri.host, wsuri.port)
        else:
            stream = await open_tunnel(proxy, wsuri.host, wsuri.port)
        if wsuri.secure:
            context = ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=wsuri.host)
            await _tls_handshake(stream, wsuri.host, wsuri.port)
        response = await _exchange(stream, handshake)
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    return stream, response


async def _exchange(stream: trio.abc.Stream, handshake: ClientHandshake) -> Response:
    """Send the upgrade request and read the answer: the 101, or `InvalidHandshake`."""
    await stream.send_all(handshake.request_bytes())
    while (response := handshake.next_response()) is None:
        handshake.receive_data(await stream.receive_some())
    return response


def _client_websocket(
    stream: trio.abc.Stream,
    handshake: ClientHandshake,
    response: Response,
    *,
    max_size: int | None,
    logger: logging.Logger | None,
    **connection_options: Any,
) -> WebSocket:
    return WebSocket(
        stream,
        Protocol(Role.CLIENT, max_size=max_size, deflate=handshake.deflate),
        request=handshake.request,
        response=response,
        initial_data=handshake.trailing_data,
        logger=logger or logging.getLogger("trio_ws.client"),
        **connection_options,
    )


#: The keyword options of `connect` that `connect_over` takes (the rest are about reaching
#: the server: TLS, proxies, redirects).
STREAM_OPTIONS = frozenset(
    {
        "subprotocols", "compression", "extra_headers", "origin", "user_agent_header", "open_timeout",
        "ping_interval", "ping_timeout", "close_timeout", "max_size", "max_queue", "max_queue_bytes",
        "write_limit", "logger",
    }
)  # fmt: skip


@asynccontextmanager
async def connect_over(stream: trio.abc.Stream, uri: str, **options: Any) -> AsyncIterator[WebSocket]:
    """`connect()` on a stream already open to the server: the same handshake and
    protocol, without TCP, TLS, proxies or redirects (`trio_ws.testing` runs it in memory).
    Takes `connect`'s keyword options that are not about reaching the server."""
    o = completed(connect, STREAM_OPTIONS, options, "connect_over()")
    queue_marks(o["max_queue"])
    handshake = ClientHandshake(
        parse_uri(uri),
        subprotocols=o["subprotocols"],
        extra_headers=o["extra_headers"],
        origin=o["origin"],
        user_agent=o["user_agent_header"],
        compression=config_for(o["compression"]),
    )
    timeout = o["open_timeout"]
    try:
        with trio.fail_after(float("inf") if timeout is None else timeout):
            response = await _exchange(stream, handshake)
    except trio.TooSlowError:
        raise TimeoutError(f"opening handshake with {uri} timed out after {timeout}s") from None
    connection = {name: o[name] for name in ("ping_interval", "ping_timeout", "close_timeout", "max_queue")}
    ws = _client_websocket(
        stream,
        handshake,
        response,
        max_size=o["max_size"],
        logger=o["logger"],
        max_queue_bytes=o["max_queue_bytes"],
        write_limit=o["write_limit"],
        **connection,
    )
    async with ws.running():
        yield ws


def redirect_target(chain: list[str], answer: InvalidHandshake, max_redirects: int) -> str:
    """Where a 3xx answer to the last URI of `chain` points, or `InvalidRedirect`.

    A relative Location is resolved against the URI requested; http(s):// stands for
    ws(s)://. A loop, more than `max_redirects`, a downgrade from wss:// to ws:// and a
    missing or non-WebSocket Location are refused.
    """
    location = answer.headers.get("Location")
    done = tuple(chain)
    if not location:
        raise InvalidRedirect(f"HTTP {answer.status} without a Location", done, status=answer.status)
    scheme, sep, rest = location.partition("://")
    if sep and scheme.lower() in _HTTP_TO_WS:
        location = _HTTP_TO_WS[scheme.lower()] + "://" + rest
    target = urllib.parse.urljoin(chain[-1], location)
    refused = (*done, target)
    try:
        parsed = parse_uri(target)
    except InvalidURI as exc:
        raise InvalidRedirect(f"a redirect to something else than a WebSocket URI ({exc})", refused) from None
    if parse_uri(chain[-1]).secure and not parsed.secure:
        raise InvalidRedirect("a redirect from wss:// to ws:// is refused (it would drop TLS)", refused)
    if target in chain:
        raise InvalidRedirect("a redirect loop", refused)
    if len(chain) > max_redirects:
        raise InvalidRedirect(f"more than {max_redirects} redirects", refused)
    return target


def same_origin(a: WebSocketURI, b: WebSocketURI) -> bool:
    """Same scheme, host and port: credentials meant for `a` may go to `b`."""
    return (a.secure, a.host.lower(), a.port) == (b.secure, b.host.lower(), b.port)


def without_credentials(headers: HeadersLike | None) -> Headers:
    """`headers` less the ones that carry credentials, for a redirect to another origin."""
    kept = Headers(headers or ())
    for name in CREDENTIAL_HEADERS:
        kept.pop(name, None)
    return kept


async def _tls_handshake(stream: trio.SSLStream[trio.abc.Stream], host: str, port: int) -> None:
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
