"""`ConnectionOptions`: what every connection takes, on the server or the client side, each
option defined, defaulted, checked and documented once. `ServerConfig` and `ClientConfig`
extend it with what only one side has."""

from __future__ import annotations

import dataclasses
import logging
import ssl
import sys
from collections.abc import Sequence

from .extensions.permessage_deflate import DeflateConfig, config_for
from .http import HeadersLike
from .inbox import queue_marks
from .version import __version__

__all__ = ["ConnectionOptions", "PRODUCT"]

PRODUCT = f"Python/{sys.version_info[0]}.{sys.version_info[1]} trio_ws/{__version__}"
"""How trio_ws names itself: the default `Server` header of a server and `User-Agent` header of a client."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConnectionOptions:
    """The options of a connection on either side, checked when built: the fields that
    `ServerConfig` (and `serve`) and `ClientConfig` (and `connect`) share."""

    ssl_context: ssl.SSLContext | None = None
    """TLS: what a server serves `wss://` with, or what a client checks the server with
    (None: the system's certificate authorities, for a `wss://` URI)."""
    subprotocols: Sequence[str] | None = None
    """Subprotocols, preferred first: the ones a server supports, or a client offers."""
    compression: str | DeflateConfig | None = "deflate"
    """`"deflate"`, a `DeflateConfig`, or None to decline (server) or not offer (client)
    permessage-deflate."""
    extra_headers: HeadersLike | None = None
    """Headers added to the server's 101 response, or to the client's upgrade request."""
    open_timeout: float | None = 10
    """Seconds for the opening: TCP connect (client), TLS and the HTTP upgrade."""
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
    logger: logging.Logger | None = None
    """Where connection events go; None for the `trio_ws.server` or `trio_ws.client` logger."""
    redact_logs: bool = True
    """Log query values and passwords of URIs as *** (a token in `?token=` stays out of logs);
    False shows them, for debugging."""

    def __post_init__(self) -> None:
        queue_marks(self.max_queue)
        config_for(self.compression)
        for name in self._counts():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, not {value!r}")
        if not isinstance(self.write_limit, int) or self.write_limit < 0:
            raise ValueError(f"write_limit must be non-negative, not {self.write_limit!r}")
        for name in ("open_timeout", "ping_interval", "ping_timeout", "close_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a non-negative number of seconds, not {value!r}")

    def _counts(self) -> tuple[str, ...]:
        """The fields that are a count or None; a subclass adds its own."""
        return ("max_size", "max_queue_bytes")
