"""What the Trio layer asks of a stream's socket: find it under TLS, and read its addresses
without failing on a socket that is already gone."""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["socket_of", "address", "peer_address"]


def socket_of(stream: trio.abc.Stream) -> Any:
    """The socket under a SocketStream, an SSLStream over one, or None (a memory stream)."""
    while not hasattr(stream, "socket"):
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return None
        stream = inner
    return getattr(stream, "socket", None)


def address(sock: Any, method: str) -> Any:
    """`sock.getpeername()` or `sock.getsockname()` (`method`), or None if there is none."""
    try:
        return getattr(sock, method)()
    except (AttributeError, OSError):
        return None


def peer_address(stream: trio.abc.Stream) -> Any:
    """The address of the other end of `stream`, or None."""
    return address(socket_of(stream), "getpeername")
