"""`ServerConfig` and `ClientConfig`: every option of a server or a client in one frozen,
typed value, built on the shared `ConnectionOptions`.

`serve`, `open_server`, `trio_ws.testing` and `python -m trio_ws serve` all build their
server from a `ServerConfig`, so a configuration runs the same wherever it is handed:

    config = trio_ws.ServerConfig(handler=router, process_request=check_token, max_connections=500)
    await trio_ws.serve(config, "0.0.0.0", 8765)        # or open_server(config, ...)
    # python -m trio_ws serve app:config --workers 4 --redis redis://...

`connect` and `reconnect` take a `ClientConfig` the same way:
`trio_ws.connect(uri, trio_ws.ClientConfig(max_size=None), open_timeout=3)`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypedDict, Unpack

from .connection import WebSocket
from .extensions.permessage_deflate import DeflateConfig
from .forwarded import TrustedProxies
from .handshake import SelectSubprotocol
from .http import HeadersLike, Request, Response
from .http2_limits import Http2Limits
from .hub_config import HubConfig
from .options import PRODUCT, ConnectionOptions
from .proxy import USE_ENVIRONMENT, UseEnvironment, check_proxy_url

__all__ = [
    "ServerConfig",
    "ClientConfig",
    "ServeOptions",
    "ConnectOptions",
    "Handler",
    "ProcessRequest",
    "ProcessResponse",
    "Lifespan",
    "DEFAULT_SERVER_HEADER",
    "DEFAULT_USER_AGENT",
    "configured",
    "client_configured",
    "check_names",
    "is_handler",
    "is_plain_function",
    "describe",
    "EXPECTED_HANDLER",
]

Handler = Callable[[WebSocket], Awaitable[None]]
ProcessRequest = Callable[[Request], Response | Awaitable[Response | None] | None]
ProcessResponse = Callable[[Request, Response], Response | Awaitable[Response | None] | None]
Lifespan = Callable[[Any, Any], AbstractAsyncContextManager[object]]
"""`lifespan(server, hub)`: an async context manager around the life of a serving process. It is given the
`WebSocketServer` and the `Hub` (None without `hub=`)."""

DEFAULT_SERVER_HEADER = PRODUCT
DEFAULT_HTTP2_LIMITS = Http2Limits()
DEFAULT_USER_AGENT = PRODUCT


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig(ConnectionOptions):
    """What a server runs: the handler, every option of `serve`, checked when built. The
    options it shares with a client are `ConnectionOptions`'.

    Pass it where a handler goes (`serve(config, host, port)`, `open_server`,
    `trio_ws.testing.open_in_memory_server`, or `python -m trio_ws serve module:config`);
    keyword options given there as well replace the configuration's (`config.replace()`).
    """

    handler: Handler
    """An `async def handler(ws)`, or a `Router`."""
    select_subprotocol: SelectSubprotocol | None = None
    """`f(offered) -> str | None`, replacing the preference order of `subprotocols`."""
    origins: Sequence[str | None] | None = None
    """Allowed `Origin` values (None in it allows requests without one); others get 403."""
    process_request: ProcessRequest | None = None
    """`f(request) -> Response | None`, plain or async: runs first, before the handler's own
    `process_request` (a Router's 404) and before `max_connections`."""
    process_response: ProcessResponse | None = None
    """`f(request, response) -> Response | None`: edits or replaces any answer."""
    server_header: str | None = DEFAULT_SERVER_HEADER
    """The `Server` header; None leaves it out."""
    max_connections: int | None = None
    """Upgraded connections at once; past it an upgrade gets 503. None for no limit."""
    reuse_port: bool = False
    """Set `SO_REUSEPORT`, to share the port between processes."""
    backlog: int | None = None
    """The listen backlog; None for the system's maximum."""
    graceful_timeout: float | None = 10
    """Seconds a drain (`server.drain()`; SIGTERM under `python -m trio_ws serve`) lets
    handlers finish after accepting stops, before the rest are closed with 1001; None: no limit."""
    hub: HubConfig | None = None
    """A hub opened with the server, in every process that serves (`current_hub()` finds it);
    None: no hub."""
    lifespan: Lifespan | None = None
    """`lifespan(server, hub)`, an async context manager entered before the server accepts
    and left once it has drained: where an app starts the tasks and opens the resources that
    live as long as the process."""
    forwarded_allow_ips: Sequence[str] | str | None = None
    """Reverse proxies (addresses, networks such as "10.0.0.0/8", or "*") whose
    `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` headers are believed: the
    client they name becomes `ws.remote_address`. From any other peer they are ignored."""
    metrics: bool = False
    """Export Prometheus metrics (`pip install 'trio-ws[metrics]'`) at `/metrics`: on the
    server's own port, or on `metrics_port`. Under `serve --workers N` they are summed over
    every worker (see docs/observe.md)."""
    metrics_port: int | None = None
    """Serve `/metrics` on this port of its own (0: any free one, see `server.metrics_port`)
    instead of the server's port; needs `metrics=True`."""
    http2: bool = False
    """Serve WebSockets over HTTP/2 too (RFC 8441; `pip install 'trio-ws[http2]'`): with
    `ssl_context`, ALPN offers h2 beside http/1.1 on the same port (the context's ALPN
    protocols are set for it). See docs/http2.md."""
    http2_cleartext: bool = False
    """Also take cleartext HTTP/2 by prior knowledge (a client that starts with the HTTP/2
    preface, such as a proxy speaking h2c) on a plain listener; needs `http2=True`."""
    http2_limits: Http2Limits = DEFAULT_HTTP2_LIMITS
    """What one HTTP/2 connection may cost (streams, headers, windows, flood rates)."""

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError(f"handler is {describe(self.handler)}, not a handler: {EXPECTED_HANDLER}")
        if is_plain_function(self.handler):
            # A `def` where `async def` was meant: every connection would fail with 1011. (A
            # lambda returning a coroutine is still a handler.)
            name = self.handler.__qualname__
            raise TypeError(f"handler {name} is a plain function, not `async def`: {EXPECTED_HANDLER}")
        super().__post_init__()
        if self.graceful_timeout is not None and (
            not isinstance(self.graceful_timeout, (int, float)) or not self.graceful_timeout >= 0
        ):
            raise ValueError(
                f"graceful_timeout must be a non-negative number of seconds, not {self.graceful_timeout!r}"
            )
        if self.hub is not None and not isinstance(self.hub, HubConfig):
            raise TypeError(f"hub must be a trio_ws.HubConfig, not {describe(self.hub)}")
        if self.lifespan is not None and not callable(self.lifespan):
            expected = "f(server, hub) -> async context manager"
            raise TypeError(f"lifespan must be `{expected}`, not {describe(self.lifespan)}")
        if self.forwarded_allow_ips is not None:
            TrustedProxies(self.forwarded_allow_ips)  # a bad address fails here
        if not isinstance(self.metrics, bool):
            raise TypeError(f"metrics must be True or False, not {describe(self.metrics)}")
        if self.metrics_port is not None:
            if isinstance(self.metrics_port, bool) or not isinstance(self.metrics_port, int):
                raise TypeError(f"metrics_port must be an int, not {describe(self.metrics_port)}")
            if not 0 <= self.metrics_port <= 65535:
                raise ValueError(f"metrics_port must be a port number (0 to 65535), not {self.metrics_port}")
            if not self.metrics:
                raise ValueError("metrics_port needs metrics=True")
        for name in ("http2", "http2_cleartext"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, not {describe(getattr(self, name))}")
        if self.http2_cleartext and not self.http2:
            raise ValueError("http2_cleartext needs http2=True")
        if not isinstance(self.http2_limits, Http2Limits):
            raise TypeError(f"http2_limits must be a trio_ws.Http2Limits, not {describe(self.http2_limits)}")
        if self.http2:
            _needs_h2()
        if self.metrics:
            try:
                import prometheus_client  # noqa: F401 -- checked here, so a missing extra fails at once
            except ImportError:
                needs = "metrics=True needs prometheus-client: pip install 'trio-ws[metrics]'"
                raise ValueError(needs) from None

    def _counts(self) -> tuple[str, ...]:
        return (*super()._counts(), "max_connections", "backlog")

    def replace(self, **options: Unpack[ServeOptions]) -> ServerConfig:
        """A copy with `options` changed; an unknown option is a TypeError naming it."""
        check_names(options, SERVER_OPTION_NAMES, "server")
        return dataclasses.replace(self, **options)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientConfig(ConnectionOptions):
    """How a client connects: every option of `connect` (and `reconnect`), checked when
    built. The options it shares with a server are `ConnectionOptions`'."""

    origin: str | None = None
    """The `Origin` header to send, if any."""
    user_agent_header: str | None = DEFAULT_USER_AGENT
    """The `User-Agent` header; None leaves it out."""
    max_redirects: int = 10
    """Redirects (301, 302, 303, 307, 308) followed before `InvalidRedirect`."""
    proxy: str | UseEnvironment | None = USE_ENVIRONMENT
    """An http://, https://, socks5://, socks5h://, socks4:// or socks4a:// proxy URL; by
    default from the environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`...); None for none."""
    http2: bool = False
    """Open the WebSocket over HTTP/2 (RFC 8441; `pip install 'trio-ws[http2]'`) when the
    server takes it: ALPN for wss://, prior knowledge for ws://. Connections to one origin
    share one HTTP/2 connection; a server without it gets HTTP/1.1. See docs/http2.md."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.http2, bool):
            raise TypeError(f"http2 must be True or False, not {describe(self.http2)}")
        if self.http2:
            _needs_h2()
        if not isinstance(self.max_redirects, int) or self.max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more, not {self.max_redirects!r}")
        if isinstance(self.proxy, str):
            check_proxy_url(self.proxy)

    def replace(self, **options: Unpack[ConnectOptions]) -> ClientConfig:
        """A copy with `options` changed; an unknown option is a TypeError naming it."""
        check_names(options, CLIENT_OPTION_NAMES, "connect()")
        return dataclasses.replace(self, **options)


class _SharedOptions(TypedDict, total=False):
    """`ConnectionOptions`' fields, as keyword options."""

    ssl_context: ssl.SSLContext | None
    subprotocols: Sequence[str] | None
    compression: str | DeflateConfig | None
    extra_headers: HeadersLike | None
    open_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    max_size: int | None
    max_queue: int | tuple[int, int | None] | None
    max_queue_bytes: int | None
    write_limit: int
    logger: logging.Logger | None
    redact_logs: bool


class ServeOptions(_SharedOptions, total=False):
    """`ServerConfig`'s fields but the handler: the keyword options of `serve`,
    `open_server` and `ServerConfig.replace`, typed so that mypy rejects a misspelt or
    mistyped one."""

    select_subprotocol: SelectSubprotocol | None
    origins: Sequence[str | None] | None
    process_request: ProcessRequest | None
    process_response: ProcessResponse | None
    server_header: str | None
    max_connections: int | None
    reuse_port: bool
    backlog: int | None
    graceful_timeout: float | None
    hub: HubConfig | None
    lifespan: Lifespan | None
    forwarded_allow_ips: Sequence[str] | str | None
    metrics: bool
    metrics_port: int | None
    http2: bool
    http2_cleartext: bool
    http2_limits: Http2Limits


class ConnectOptions(_SharedOptions, total=False):
    """`ClientConfig`'s fields: the keyword options of `connect`, `reconnect` and
    `ClientConfig.replace`, typed so that mypy rejects a misspelt or mistyped one."""

    origin: str | None
    user_agent_header: str | None
    max_redirects: int
    proxy: str | UseEnvironment | None
    http2: bool


SERVER_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(ServerConfig)) - {"handler"}
"""The names of the server options: every field of `ServerConfig` but the handler."""
CLIENT_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(ClientConfig))
"""The names of the client options: every field of `ClientConfig`."""
DEFAULT_CLIENT = ClientConfig()


def _needs_h2() -> None:
    """Fail at once, where the option is given, when the http2 extra is missing."""
    try:
        import h2  # noqa: F401
    except ImportError:
        raise ValueError("http2=True needs h2: pip install 'trio-ws[http2]'") from None


def configured(handler: Handler | ServerConfig, options: ServeOptions) -> ServerConfig:
    """The configuration that `serve(handler, ..., **options)` runs."""
    if isinstance(handler, ServerConfig):
        return handler.replace(**options) if options else handler
    check_names(options, SERVER_OPTION_NAMES, "server")
    return ServerConfig(handler=handler, **options)


def client_configured(config: ClientConfig | None, options: ConnectOptions) -> ClientConfig:
    """The configuration that `connect(uri, config, **options)` connects with."""
    if config is not None and not isinstance(config, ClientConfig):
        raise TypeError(f"connect() takes a trio_ws.ClientConfig after the URI, not {describe(config)}")
    base = DEFAULT_CLIENT if config is None else config
    return base.replace(**options) if options else base


def check_names(options: Mapping[str, Any], names: frozenset[str], kind: str) -> None:
    """A TypeError naming every option of `options` outside `names`."""
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown {kind} options: {', '.join(unknown)}")


def is_plain_function(candidate: object) -> bool:
    """A named `def` function that is not `async def` (lambdas excepted)."""
    function = inspect.unwrap(candidate) if callable(candidate) else candidate
    return (
        inspect.isfunction(function)
        and not inspect.iscoroutinefunction(function)
        and function.__name__ != "<lambda>"
    )


def is_handler(candidate: object) -> bool:
    """An async function, a partial of one, or an object whose `__call__` is one (a Router)."""
    if isinstance(candidate, functools.partial):
        candidate = candidate.func
    return inspect.iscoroutinefunction(candidate) or inspect.iscoroutinefunction(
        getattr(candidate, "__call__", None)  # noqa: B004 -- the method itself is what is checked
    )


EXPECTED_HANDLER = "expected an `async def handler(ws)`, a trio_ws.Router or a trio_ws.ServerConfig"


def describe(value: object) -> str:
    """Its type and a short repr, for an error that says what was found."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
