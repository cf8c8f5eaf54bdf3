"""RESP, the Redis protocol, over a Trio stream: commands out, replies in, with a size bound.

Replies are parsed by hiredis's sans-I/O `Reader` (the `redis` extra). What a connection
buffers for one reply is bounded: a reply that grows past `max_reply_size` before it is
complete raises `ReplyTooLarge` instead of growing memory without limit.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["command", "ErrorReply", "RespConnection", "RespReader", "ReplyTooLarge", "NO_REPLY"]

NO_REPLY = False
"""What `buffered_reply` returns while no whole reply has arrived (hiredis's marker)."""

_RECEIVE_SIZE = 65536


class ReplyTooLarge(ConnectionError):
    """A reply grew past the connection's bound; the connection is unusable after it."""


class ErrorReply(ConnectionError):
    """Redis answered a command with an error: it is reachable, the command failed."""


def command(*args: bytes | str) -> bytes:
    """A RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespReader:
    """Replies from RESP bytes (sans I/O): hiredis's `Reader`, with every way it can fail
    on bytes that are not RESP (a protocol error; a RESP3 map keyed by an aggregate, which
    makes it raise TypeError) turned into ConnectionError: the connection is unusable."""

    def __init__(self) -> None:
        import hiredis  # an optional dependency: the redis extra

        self._reader = hiredis.Reader()
        self._error_type = hiredis.ReplyError

    def feed(self, data: bytes | bytearray) -> None:
        self._reader.feed(data)  # type: ignore[arg-type]  # any buffer will do

    def __len__(self) -> int:
        """Bytes fed and not parsed yet."""
        return int(self._reader.len())

    def reply(self) -> Any:
        """The next whole reply, or `NO_REPLY`; an error reply comes as a ConnectionError
        instance (not raised); bytes that are not RESP raise ConnectionError."""
        try:
            reply = self._reader.gets()
        except Exception as exc:
            raise ConnectionError(f"Redis sent what is not RESP ({type(exc).__name__}: {exc})") from None
        if isinstance(reply, self._error_type):
            return ErrorReply(f"Redis answered with an error: {reply}")
        return reply


class RespConnection:
    """One RESP connection: send commands, read replies of at most `max_reply_size` bytes."""

    def __init__(self, stream: trio.abc.Stream, max_reply_size: int) -> None:
        self.stream = stream
        self.max_reply_size = max_reply_size
        self._reader = RespReader()
        self.last_received_at = trio.current_time()
        """`trio.current_time()` when data last arrived (or the connection was made)."""

    async def send(self, *args: bytes | str) -> None:
        await self.stream.send_all(command(*args))

    async def reply(self) -> Any:
        """The next reply; raises ConnectionError on EOF or an oversized reply, and
        `ErrorReply` for an error reply."""
        while (reply := self.buffered_reply()) is NO_REPLY:
            await self.receive()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def buffered_reply(self) -> Any:
        """The next reply already received, or `NO_REPLY`; an error reply comes as a
        ConnectionError instance (not raised); what is not RESP raises ConnectionError."""
        return self._reader.reply()

    async def receive(self) -> None:
        """Read what Redis sent next; raises ConnectionError on EOF or past `max_reply_size`."""
        data = await self.stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise ConnectionError("Redis closed the connection")
        self.last_received_at = trio.current_time()
        self._reader.feed(data)
        if len(self._reader) > self.max_reply_size:
            raise ReplyTooLarge(f"a reply of more than {self.max_reply_size} bytes")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
