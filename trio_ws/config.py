"""`ServerConfig`: a handler (or `Router`) and every server option in one frozen, typed value.

`serve`, `open_server`, `trio_ws.testing` and `python -m trio_ws serve` all build their
server from one, so a configuration runs the same wherever it is handed:

    config = trio_ws.ServerConfig(handler=router, process_request=check_token, max_connections=500)
    await trio_ws.serve(config, "0.0.0.0", 8765)        # or open_server(config, ...)
    # python -m trio_ws serve app:config --workers 4 --redis redis://...
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypedDict, Unpack

from .connection import WebSocket
from .extensions.permessage_deflate import DeflateConfig, config_for
from .handshake import SelectSubprotocol
from .http import HeadersLike, Request, Response
from .inbox import queue_marks
from .version import __version__

__all__ = [
    "ServerConfig",
    "ServeOptions",
    "Handler",
    "ProcessRequest",
    "ProcessResponse",
    "DEFAULT_SERVER_HEADER",
    "configured",
    "check_names",
    "is_handler",
    "describe",
    "EXPECTED_HANDLER",
]

Handler = Callable[[WebSocket], Awaitable[None]]
ProcessRequest = Callable[[Request], Response | Awaitable[Response | None] | None]
ProcessResponse = Callable[[Request, Response], Response | Awaitable[Response | None] | None]

DEFAULT_SERVER_HEADER = f"Python/{sys.version_info[0]}.{sys.version_info[1]} trio_ws/{__version__}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """What a server runs: the handler and every option of `serve`, checked when built.

    Pass it where a handler goes (`serve(config, host, port)`, `open_server`,
    `trio_ws.testing.open_in_memory_server`, or `python -m trio_ws serve module:config`);
    keyword options given there as well replace the configuration's (`config.replace()`).
    """

    handler: Handler
    """An `async def handler(ws)`, or a `Router`."""
    ssl_context: ssl.SSLContext | None = None
    """Serve `wss://` with this context."""
    subprotocols: Sequence[str] | None = None
    """Supported subprotocols, preferred first."""
    select_subprotocol: SelectSubprotocol | None = None
    """`f(offered) -> str | None`, replacing the preference order of `subprotocols`."""
    compression: str | DeflateConfig | None = "deflate"
    """`"deflate"`, a `DeflateConfig`, or None to decline permessage-deflate."""
    origins: Sequence[str | None] | None = None
    """Allowed `Origin` values (None in it allows requests without one); others get 403."""
    process_request: ProcessRequest | None = None
    """`f(request) -> Response | None`, plain or async: runs first, before the handler's own
    `process_request` (a Router's 404) and before `max_connections`."""
    process_response: ProcessResponse | None = None
    """`f(request, response) -> Response | None`: edits or replaces any answer."""
    server_header: str | None = DEFAULT_SERVER_HEADER
    """The `Server` header; None leaves it out."""
    extra_headers: HeadersLike | None = None
    """Headers added to the 101 response."""
    open_timeout: float | None = 10
    """Seconds for TLS plus the HTTP upgrade."""
    ping_interval: float | None = 20
    """Seconds between keepalive pings; None disables them."""
    ping_timeout: float | None = 20
    """Seconds to wait for a pong before closing with 1011."""
    close_timeout: float = 10
    """Seconds to wait for the peer in the closing handshake and the TCP close."""
    max_size: int | None = 2**20
    """Largest incoming message in bytes (1009 past it); None for no limit."""
    max_queue: int | tuple[int, int | None] | None = 16
    """Received messages waiting for `recv()` before reading pauses: high, or (high, low)."""
    max_queue_bytes: int | None = 2**22
    """The same bound in bytes."""
    write_limit: int = 2**16
    """Bytes waiting for the network before `send()` waits."""
    max_connections: int | None = None
    """Upgraded connections at once; past it an upgrade gets 503. None for no limit."""
    reuse_port: bool = False
    """Set `SO_REUSEPORT`, to share the port between processes."""
    backlog: int | None = None
    """The listen backlog; None for the system's maximum."""
    logger: logging.Logger | None = None
    """Where connection events go; None for the `trio_ws.server` logger."""

    def __post_init__(self) -> None:
        if not callable(self.handler):  # a sync function returning an awaitable is a handler too
            raise TypeError(f"handler is {describe(self.handler)}, not a handler: {EXPECTED_HANDLER}")
        queue_marks(self.max_queue)
        config_for(self.compression)
        for name in ("max_size", "max_queue_bytes", "max_connections", "backlog"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, not {value!r}")
        if self.write_limit < 0:
            raise ValueError(f"write_limit must be non-negative, not {self.write_limit!r}")

    def replace(self, **options: Unpack[ServeOptions]) -> ServerConfig:
        """A copy with `options` changed; an unknown option is a TypeError naming it."""
        check_names(options)
        return dataclasses.replace(self, **options)


class ServeOptions(TypedDict, total=False):
    """`ServerConfig`'s fields but the handler: the keyword options of `serve`,
    `open_server` and `ServerConfig.replace`, typed so that mypy rejects a misspelt or
    mistyped one."""

    ssl_context: ssl.SSLContext | None
    subprotocols: Sequence[str] | None
    select_subprotocol: SelectSubprotocol | None
    compression: str | DeflateConfig | None
    origins: Sequence[str | None] | None
    process_request: ProcessRequest | None
    process_response: ProcessResponse | None
    server_header: str | None
    extra_headers: HeadersLike | None
    open_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    max_size: int | None
    max_queue: int | tuple[int, int | None] | None
    max_queue_bytes: int | None
    write_limit: int
    max_connections: int | None
    reuse_port: bool
    backlog: int | None
    logger: logging.Logger | None


#: The names of the server options: every field of `ServerConfig` but the handler.
OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(ServerConfig)) - {"handler"}


def configured(handler: Handler | ServerConfig, options: ServeOptions) -> ServerConfig:
    """The configuration that `serve(handler, ..., **options)` runs."""
    if isinstance(handler, ServerConfig):
        return handler.replace(**options) if options else handler
    check_names(options)
    return ServerConfig(handler=handler, **options)


def check_names(options: ServeOptions) -> None:
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown server options: {', '.join(unknown)}")


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
