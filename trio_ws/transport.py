"""`Transport`: the only owner of a connection's stream and socket.

A connection reads, writes, half-closes and closes through its transport and never through
the stream: so one object decides when the socket's fd may be used directly and when it
may not (the fd of a closed socket can be reused by the next one). `transport_for` picks
the implementation once: `SocketTransport` for a plain TCP stream (reads and writes on the
non-blocking fd, as asyncio does), `StreamTransport` for any other trio stream (TLS, memory).
An RFC 8441 WebSocket runs on an `Http2Stream` (`http2_connection.py`), one stream of a
shared HTTP/2 connection.
"""

from __future__ import annotations

import os
from typing import ClassVar, cast

import trio

from .sockets import read_fd, read_ready, shut_down_writing

__all__ = ["Transport", "StreamTransport", "SocketTransport", "transport_for", "CLOSED_STREAM_ERRORS"]

CLOSED_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)
"""What a transport raises once the connection is gone."""

RECEIVE_SIZE = 2**16
"""Bytes asked of the kernel in one read."""
EAGER_READS = 4
"""Reads in a row that found data waiting before a read yields to other tasks (256 KiB)."""


class Transport:
    """What a connection asks of its stream; this base class works over any trio stream."""

    __slots__ = ("stream", "writes_through")

    closes_at_once: ClassVar[bool] = False
    """Whether `close_now` can close the stream without waiting (a plain socket; TLS has
    a close_notify to send)."""

    closes_after_handshake: ClassVar[bool] = False
    """Whether a client closes at once when the closing handshake is done, instead of
    waiting for the server to close first (RFC 6455 section 7.1.1). HTTP/2: the reason
    for the rule (TIME_WAIT on the server) does not apply to a stream."""

    reads_cancel_safely: ClassVar[bool] = False
    """Whether a `receive_some` cancelled mid-wait leaves the stream as it was, so that a
    `recv()` the user may cancel can read it itself. Not TLS: a read cancelled during a
    renegotiation breaks an `SSLStream`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        """The stream underneath, for its socket's addresses (not to be read or written)."""
        self.writes_through = False
        """Whether `write_nowait` may be called: a plain socket that is not closing. (An
        attribute, not a property: the outbox reads it for every message it sends.)"""

    async def receive_some(self) -> bytes | bytearray:
        """The next bytes from the peer; b"" at end of stream."""
        return await self.stream.receive_some(RECEIVE_SIZE)

    def write_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes at once, never waiting: the bytes taken (0 when it
        takes none, or the connection is gone: `send_all` finds out which)."""
        raise NotImplementedError("this transport does not write through")

    def stop_writing_through(self) -> None:
        """From now on `write_nowait` takes nothing: the connection is closing."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of `data`, waiting for room as needed."""
        await self.stream.send_all(data)

    def nothing_to_read(self) -> bool:
        """Whether the peer has sent nothing we have not read (what it did send is dropped:
        we are closing): closing now then sends a FIN, where unread data would make the
        kernel send a RST. False when it cannot tell."""
        return False

    async def half_close(self) -> bool:
        """Close our sending side (a FIN) and keep reading; False if this stream cannot
        (TLS), and the caller closes it whole instead."""
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            return False
        await shut_down_writing(self.stream)
        return True

    async def aclose(self) -> None:
        """Close the stream the polite way (TLS sends its close_notify)."""
        await self.stream.aclose()

    def close_now(self) -> None:
        """Close the stream at once, without waiting; only where `closes_at_once`."""
        raise NotImplementedError("this transport closes with aclose")

    async def abort(self) -> None:
        """Close the stream at once, and never raise; a cancelled close still closes."""
        await trio.aclose_forcefully(self.stream)


class StreamTransport(Transport):
    """Any trio stream: TLS, or a memory stream in tests."""

    __slots__ = ()


class SocketTransport(Transport):
    """A plain TCP stream, read and written through its non-blocking fd: one system call
    per read or write, and a wait only when the kernel has nothing (or no room)."""

    __slots__ = ("_eager_reads", "_fd", "_read_fd")

    reads_cancel_safely = True  # a cancelled wait_readable has read nothing
    closes_at_once = True

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self._fd = stream.socket.fileno()  # written through only while `writes_through`
        self._read_fd: int | None = self._fd  # None once closing: the stream reads what is left
        self.writes_through = True  # False once closing: only the writer task writes
        self._eager_reads = 0  # reads in a row that did not have to wait

    async def receive_some(self) -> bytes | bytearray:
        """One read of the fd, and one wait only if nothing was there.

        Only the connection's reader reads, and the reader closes the transport, so the fd
        stays valid while it is read.
        """
        fd = self._read_fd
        if fd is None:
            return await self.stream.receive_some(RECEIVE_SIZE)
        data = read_ready(fd, RECEIVE_SIZE)
        if data is None:
            self._eager_reads = 0
            await trio.lowlevel.wait_readable(fd)  # then read_fd's first read finds data
            return await read_fd(fd, RECEIVE_SIZE)
        # Data was ready without waiting: a peer that floods us would otherwise keep its
        # reader from ever yielding and starve every other connection.
        self._eager_reads += 1
        if self._eager_reads >= EAGER_READS:
            self._eager_reads = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    def nothing_to_read(self) -> bool:
        fd = self._read_fd
        if fd is None:
            return False
        try:
            # One read, dropped: it is the closing drain's first read, and when it finds
            # nothing (or the end of the stream) there is nothing a close could reset.
            return not read_ready(fd, RECEIVE_SIZE)
        except trio.BrokenResourceError:  # reset already: nothing a close could lose
            return True

    def write_nowait(self, data: bytes | bytearray | memoryview) -> int:
        if not self.writes_through:  # closing: the fd may be reused once closed
            return 0
        try:
            return os.write(self._fd, data)
        except OSError:  # would block, or the connection is gone: the writer task finds out
            return 0

    def stop_writing_through(self) -> None:
        self.writes_through = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """One write of the fd first (the writer's common case: the kernel has room again,
        and trio's `send_all` would cost more than the system call); the stream sends the
        rest, waiting for room. No checkpoint when the first write takes it all."""
        sent = self.write_nowait(data)
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])

    async def aclose(self) -> None:
        self._read_fd, self.writes_through = None, False  # the fd may be reused once closed
        await self.stream.aclose()

    def close_now(self) -> None:
        self._read_fd, self.writes_through = None, False
        # What the stream's aclose does, less its checkpoint (it wakes any task waiting on
        # the socket with ClosedResourceError, as aclose would).
        cast(trio.SocketStream, self.stream).socket.close()

    async def abort(self) -> None:
        self._read_fd, self.writes_through = None, False
        await trio.aclose_forcefully(self.stream)


def transport_for(stream: trio.abc.Stream) -> Transport:
    """The transport for `stream`: the raw-fd one for a plain TCP stream."""
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)
