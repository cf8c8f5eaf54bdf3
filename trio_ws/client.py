"""The WebSocket client: `connect()` opens a connection as an async context manager."""

from __future__ import annotations

import dataclasses
import functools
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import NoReturn, ParamSpec, Unpack

import trio

from .config import (
    CLIENT_OPTION_NAMES,
    DEFAULT_USER_AGENT,
    ClientConfig,
    ConnectOptions,
    check_names,
    client_configured,
)
from .connection import WebSocket, new_websocket, running
from .exceptions import InvalidHandshake, InvalidRedirect, InvalidURI
from .extensions.permessage_deflate import config_for
from .handshake import ClientHandshake
from .http import Headers, HeadersLike, Response
from .protocol import Role
from .proxy import open_tunnel, proxy_for
from .sockets import receive_some, send_all
from .transport import Transport, transport_for
from .uri import WebSocketURI, parse_uri

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
    uri: str, config: ClientConfig | None = None, **options: Unpack[ConnectOptions]
) -> AsyncIterator[WebSocket]:
    """Connect to a ws:// or wss:// URI; the block's end closes the connection (1000).

    The options are `ClientConfig`'s, given as keywords, or as a `ClientConfig` after the
    URI (keywords given too replace its own). A bad option fails before connecting.

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
    c = client_configured(config, options)  # a bad value fails here, before connecting
    if not first.secure and c.ssl_context is not None:
        raise ValueError("ssl_context is for wss:// URIs; this one is ws://")
    proxy_for(first, c.proxy)  # a bad proxy URL fails here, before connecting
    chain = [uri]
    credentials = True  # still on the first URI's origin: its credentials may be sent
    try:
        with trio.fail_after(float("inf") if c.open_timeout is None else c.open_timeout):
            while True:
                wsuri = parse_uri(chain[-1])
                if credentials and wsuri.user_info is None:
                    wsuri = dataclasses.replace(wsuri, user_info=first.user_info)
                handshake = _handshake(wsuri, c, credentials)
                try:
                    transport, response, initial = await _open(wsuri, handshake, c, proxy_for(wsuri, c.proxy))
                    break
                except InvalidHandshake as exc:
                    if exc.status not in REDIRECT_STATUSES:
                        raise
                    target = redirect_target(chain, exc, c.max_redirects)
                    credentials = credentials and same_origin(first, parse_uri(target))
                    chain.append(target)
    except trio.TooSlowError:
        raise TimeoutError(f"opening handshake with {uri} timed out after {c.open_timeout}s") from None
    ws = _client_websocket(transport, handshake, response, c, initial)
    async with running(ws):
        yield ws


def _handshake(wsuri: WebSocketURI, c: ClientConfig, credentials: bool = True) -> ClientHandshake:
    """The upgrade request for `wsuri`; without credential headers for another origin."""
    return ClientHandshake(
        wsuri,
        subprotocols=c.subprotocols,
        extra_headers=c.extra_headers if credentials else without_credentials(c.extra_headers),
        origin=c.origin,
        user_agent=c.user_agent_header,
        compression=config_for(c.compression),
    )


async def _open(
    wsuri: WebSocketURI, handshake: ClientHandshake, c: ClientConfig, proxy: str | None
) -> tuple[Transport, Response, bytes]:
    """One attempt: TCP (or a proxy's tunnel), TLS for wss://, the upgrade request and the
    101 (or an error). With `c.http2`, an Extended CONNECT on the origin's HTTP/2
    connection instead, when the server takes one. Returns the transport, the answer, and
    the bytes that came after it."""
    stream: trio.abc.Stream | None = None
    alpn = ["h2", "http/1.1"] if c.http2 else None
    if c.http2:
        from .http2_client import pool as http2_pool  # h2 is an extra

        key = (wsuri.secure, wsuri.host.lower(), wsuri.port, id(c.ssl_context), proxy)
        try:
            opened = await http2_pool().open_stream(
                key, functools.partial(_dial, wsuri, c.ssl_context, proxy, alpn), wsuri, handshake
            )
        except NotImplementedError:  # no RFC 8441 there: HTTP/1.1 on a connection of its own
            alpn = None
        else:
            if isinstance(opened, tuple):
                return opened[0], opened[1], b""
            stream = opened  # TLS, and ALPN chose HTTP/1.1: the upgrade goes on this connection
    try:
        if stream is None:
            stream = await _dial(wsuri, c.ssl_context, proxy, alpn)
        response = await _exchange(stream, handshake)
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    return transport_for(stream), response, handshake.trailing_data


async def _dial(
    wsuri: WebSocketURI, ssl_context: ssl.SSLContext | None, proxy: str | None, alpn: list[str] | None
) -> trio.abc.Stream:
    """TCP (or a proxy's tunnel) to the server, with TLS for wss:// (offering `alpn`, else
    http/1.1)."""
    stream: trio.abc.Stream | None = None
    try:
        if proxy is None:
            stream = await trio.open_tcp_stream(wsuri.host, wsuri.port)
        else:
            stream = await open_tunnel(proxy, wsuri.host, wsuri.port)
        if wsuri.secure:
            context = ssl_context or ssl.create_default_context()
            # Set on each use, just before the SSLStream reads it: one context may serve
            # connects with and without http2.
            context.set_alpn_protocols(alpn or ["http/1.1"])
            stream = trio.SSLStream(stream, context, server_hostname=wsuri.host)
            await _tls_handshake(stream, wsuri.host, wsuri.port)
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    return stream


async def _exchange(stream: trio.abc.Stream, handshake: ClientHandshake) -> Response:
    """Send the upgrade request and read the answer: the 101, or `InvalidHandshake`."""
    await send_all(stream, handshake.request_bytes())
    while (response := handshake.next_response()) is None:
        handshake.receive_data(await receive_some(stream))
    return response


def _client_websocket(
    transport: Transport, handshake: ClientHandshake, response: Response, c: ClientConfig, initial: bytes
) -> WebSocket:
    ws = new_websocket(
        transport,
        Role.CLIENT,
        c,
        request=handshake.request,
        response=response,
        deflate=handshake.deflate,
        initial_data=initial,
    )
    # Read now, while the socket is open: a client's own address (its port above all) is
    # often wanted after the close, in a log line, and a client opens few connections.
    ws.local_address  # noqa: B018
    return ws


REACHING_OPTIONS = frozenset({"ssl_context", "proxy", "max_redirects", "http2"})
"""The options of `connect` that are about reaching the server, which `connect_over` does not take."""


@asynccontextmanager
async def connect_over(
    stream: trio.abc.Stream,
    uri: str,
    config: ClientConfig | None = None,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[WebSocket]:
    """`connect()` on a stream already open to the server: the same handshake and
    protocol, without TCP, TLS, proxies or redirects (`trio_ws.testing` runs it in memory).
    Takes `connect`'s options but those about reaching the server (`REACHING_OPTIONS`)."""
    check_names(options, CLIENT_OPTION_NAMES - REACHING_OPTIONS, "connect_over()")
    c = client_configured(config, options)
    handshake = _handshake(parse_uri(uri), c)
    try:
        with trio.fail_after(float("inf") if c.open_timeout is None else c.open_timeout):
            response = await _exchange(stream, handshake)
    except trio.TooSlowError:
        raise TimeoutError(f"opening handshake with {uri} timed out after {c.open_timeout}s") from None
    ws = _client_websocket(transport_for(stream), handshake, response, c, handshake.trailing_data)
    async with running(ws):
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
