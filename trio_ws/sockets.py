"""What the Trio layer asks of a stream's socket: find it under TLS, read its addresses
without failing on a socket that is already gone, and read or write a plain TCP stream
straight through its non-blocking socket."""

from __future__ import annotations

import os
import socket
from typing import Any

import trio

__all__ = ["socket_of", "address", "peer_address", "receive_some", "send_all", "shut_down_writing"]


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


async def receive_some(stream: trio.abc.Stream, max_bytes: int = 2**16) -> bytes | bytearray:
    """`stream.receive_some()`; on a plain TCP stream, one `os.read` of its non-blocking
    socket, waiting only when nothing is there yet (trio's own path costs a second
    scheduler round and a context manager per call). Only its owner may call it: the fd
    must not be closed meanwhile."""
    if type(stream) is not trio.SocketStream:
        return await stream.receive_some(max_bytes)
    fd = stream.socket.fileno()
    await trio.lowlevel.checkpoint_if_cancelled()
    while True:
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:
            pass  # wait outside the handler: the wait holds no exception
        except OSError as exc:  # reset by the peer, or closed
            raise trio.BrokenResourceError(str(exc)) from exc
        await trio.lowlevel.wait_readable(fd)


async def send_all(stream: trio.abc.Stream, data: bytes | bytearray) -> None:
    """`stream.send_all(data)`; on a plain TCP stream, one `os.write` first, and trio's
    path only for what the kernel did not take (a handshake's answer always fits)."""
    if type(stream) is trio.SocketStream:
        try:
            sent = os.write(stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if sent == len(data):
            return
        data = data[sent:]
    await stream.send_all(data)


async def shut_down_writing(stream: trio.abc.HalfCloseableStream) -> None:
    """`stream.send_eof()`, without its scheduler round on a plain TCP stream; a stream
    that is already gone is left as it is."""
    try:
        if type(stream) is trio.SocketStream:
            stream.socket.shutdown(socket.SHUT_WR)
        else:
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
        pass
