"""What the Trio layer asks of a stream's socket: find it under TLS, read its addresses
without failing on a socket that is already gone, and read or write a plain TCP stream
straight through its non-blocking socket."""

from __future__ import annotations

import os
import socket
from typing import Any

import trio

__all__ = [
    "socket_of",
    "address",
    "peer_address",
    "read_ready",
    "read_fd",
    "receive_some",
    "send_all",
    "shut_down_writing",
]


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


def read_ready(fd: int, max_bytes: int) -> bytes | None:
    """One `os.read` of the non-blocking socket `fd`: what was there (b"" at end of
    stream), or None when nothing was yet. A reset or closed socket is a
    `trio.BrokenResourceError`. Returning None, rather than waiting in an `except`
    block, keeps an idle wait from holding an exception and its traceback."""
    try:
        return os.read(fd, max_bytes)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc


async def read_fd(fd: int, max_bytes: int) -> bytes:
    """The next bytes from the non-blocking socket `fd`, waiting only while there are none:
    one scheduler round per wait, where trio's `receive_some` takes two and a context
    manager. Only the socket's owner may call it: the fd must not be closed meanwhile."""
    while (data := read_ready(fd, max_bytes)) is None:
        await trio.lowlevel.wait_readable(fd)
    return data


async def receive_some(stream: trio.abc.Stream, max_bytes: int = 2**16) -> bytes | bytearray:
    """`stream.receive_some()`; on a plain TCP stream, `read_fd` of its socket."""
    if type(stream) is not trio.SocketStream:
        return await stream.receive_some(max_bytes)
    await trio.lowlevel.checkpoint_if_cancelled()
    return await read_fd(stream.socket.fileno(), max_bytes)


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
