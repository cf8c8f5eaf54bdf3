"""`WebSocket`: one WebSocket connection over one `trio.abc.Stream`.

Who touches what, and when (in the spirit of h11's state notes):

- **The protocol** (`Protocol`, sans-I/O) holds the connection's state, its output buffer,
  its parser, and the policy of who closes TCP first. Every call into it is followed by
  `_sync()`, the one choke point that reacts to what the call changed: output goes to the
  outbox, and once the protocol is CLOSED the lifecycle moves on and every waiter wakes.
  A call that needs an open connection gets the protocol from `_open_protocol()`, which
  raises `ConnectionClosed` otherwise.
- **The inbox** (`Inbox`) is filled by the reader task (`_parse`) and emptied by `recv()` /
  `recv_streaming()` in the user's task. The reader stops parsing while it is full and
  `recv()` wakes it below the low marks.
- **The outbox** (`Outbox`) takes the protocol's output to the socket: written through at
  once by whichever task queued it, and flushed by a writer task only while the kernel's
  send buffer is full. `send()` waits while it holds more than `write_limit`.
- **The lifecycle** (`Lifecycle`): OPEN while frames may flow (the protocol OPEN or
  CLOSING); CLOSING once the protocol is CLOSED and TCP is being closed the polite way;
  ABORTING when it is being dropped at once instead; CLOSED when TCP is closed. The reader
  task owns the TCP close: once the protocol is CLOSED it flushes, closes TCP first if the
  protocol says so (bounded by `close_timeout`), or waits for the peer to, and marks the
  connection CLOSED. `close()` only starts the handshake and waits, aborting at its deadline.
- **Tasks**: the handler (or the `async with connect()` body) and the reader run in the
  connection's nursery (`running()`). The outbox's writer runs there only on demand.
  Keepalive pings come from the server's `KeepaliveTimers`, one task for every connection,
  through `keepalive(now)`; a client connection has timers of its own.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from .exceptions import CloseCode, ConnectionClosed, ConnectionClosedOK
from .http import Headers, Request, Response
from .inbox import Inbox, Item
from .keepalive import KeepaliveTimers, TimerEntry
from .outbox import CLOSED_STREAM_ERRORS, Outbox
from .pings import PendingPing, Pings
from .prepared import PreparedMessage
from .protocol import Data, Fragment, Pong, Protocol, State
from .sockets import address, read_fd, read_ready, shut_down_writing, socket_of
from .tasks import open_nursery_unwrapped

__all__ = ["WebSocket", "Message", "MessageStream", "Lifecycle"]

Message = str | bytes
"""What `recv()` returns: `str` for a text message, `bytes` for a binary one."""
"""A whole message: `str` for a text message, `bytes` for a binary one."""

_RECEIVE_SIZE = 2**16
_YIELD_EVERY = 16  # recv()/send() calls that may run without yielding to other tasks
_EAGER_READS = 4  # reads in a row that found data waiting before the reader yields (256 KiB)


class Lifecycle(enum.Enum):
    """Where a connection is in its life, past the protocol's own state."""

    OPEN = "open"  #: frames may flow (the protocol is OPEN or CLOSING)
    CLOSING = "closing"  #: the protocol is CLOSED; TCP is being closed the polite way
    ABORTING = "aborting"  #: TCP is being dropped at once
    CLOSED = "closed"  #: TCP is closed


class _ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Puts the connection id and remote address on every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra['websocket']} {extra['remote_address']}] {msg}", kwargs


class WebSocket:
    """An open WebSocket connection, on the server or the client side.

    Made by `serve` (passed to the handler) and by `connect`; not built by users.
    """

    # Slots, not a __dict__: an idle connection's attributes cost a third of the memory.
    __slots__ = (
        "__weakref__",
        "_assembly",
        "_base_logger",
        "_close_deadline",
        "_close_timeout",
        "_closed_event",
        "_eager_reads",
        "_eof",
        "_fast_calls",
        "_half_streamed",
        "_id",
        "_inbox",
        "_initial_data",
        "_keepalive_ping",
        "_lifecycle",
        "_logger",
        "_on_closed",
        "_outbox",
        "_own_timers",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_proto",
        "_read_fd",
        "_reading",
        "_sending_fragments",
        "_stream",
        "_timer",
        "_timers",
        "latency",
        "local_address",
        "remote_address",
        "request",
        "response",
        "subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: Protocol,
        *,
        request: Request,
        response: Response,
        initial_data: bytes = b"",
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float = 10,
        max_queue: int | tuple[int, int | None] | None = 16,
        max_queue_bytes: int | None = 2**22,
        write_limit: int = 2**16,
        logger: logging.Logger | None = None,
        on_closed: Callable[[WebSocket], None] | None = None,
    ) -> None:
        self._stream = stream
        self._proto = protocol
        self.request = request
        """The opening handshake's request: `path`, `query`, `headers`, `remote_address`."""
        self.response = response
        """The opening handshake's response (the 101 and its headers)."""
        self.subprotocol: str | None = response.headers.get("Sec-WebSocket-Protocol")
        """The subprotocol the handshake agreed on, or None."""
        self.latency = 0.0
        """Round-trip time of the last keepalive ping, in seconds (0 until one completes)."""
        self._initial_data = initial_data
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._close_deadline = float("inf")  # set by close(): the whole close fits in close_timeout
        self._on_closed = on_closed
        sock = socket_of(stream)
        # The server's request already has it: one system call less per connection.
        self.remote_address: Any = request.remote_address or address(sock, "getpeername")
        """The peer's (host, port): behind a trusted proxy (`forwarded_allow_ips`), the client
        it names; None over a stream without a socket (in memory)."""
        self.local_address: Any = address(sock, "getsockname")
        """This side's (host, port), or None over a stream without a socket."""
        self._base_logger = logger or logging.getLogger("trio_ws")
        self._id: uuid.UUID | None = None  # made on first use, as is the logger
        self._logger: _ConnectionLogger | None = None

        self._lifecycle = Lifecycle.OPEN
        self._closed_event: trio.Event | None = None  # made when somebody waits for CLOSED
        self._inbox = Inbox(max_queue, max_queue_bytes)
        self._outbox = Outbox(stream, protocol, write_limit, self._write_lost)
        self._pings = Pings()
        self._assembly: list[Fragment] | None = None  # recv() joining a streamed message
        self._half_streamed = False  # recv_streaming() gave part of a message, not its end
        # A fragmented send in progress: the event its followers wait on, else None.
        self._sending_fragments: trio.Event | None = None
        self._fast_calls = 0  # recv()/send() calls since this connection last yielded
        # The reader: a plain TCP socket is read directly (None for TLS, and once closing).
        self._read_fd: int | None = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._reading = trio.CancelScope()  # cancelled when the protocol closes while it waits
        self._eager_reads = 0  # reads in a row that did not have to wait
        self._eof = False  # the reader saw the end of the stream
        self._keepalive_ping: PendingPing | None = None  # the keepalive's last ping
        self._own_timers: trio.CancelScope | None = None  # keepalive timers run for this one alone
        self._timers: KeepaliveTimers | None = None  # where its keepalive is timed
        self._timer: TimerEntry | None = None

    # ---- attributes -------------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id, handy in logs."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The connection's logger: the `logger` it was given (`trio_ws` by default), with
        its id and remote address on every record."""
        if self._logger is None:
            extra = {"websocket": str(self.id)[:8], "remote_address": self.remote_address}
            self._logger = _ConnectionLogger(self._base_logger, extra)
        return self._logger

    def _debug(self, message: str, *args: object) -> None:
        """Log at DEBUG, without building the logger when nobody listens."""
        if self._base_logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(message, *args)

    @property
    def path(self) -> str:
        """The request target, query string included."""
        return self.request.path

    @property
    def request_headers(self) -> Headers:
        """Headers of the opening handshake request."""
        return self.request.headers

    @property
    def response_headers(self) -> Headers:
        """Headers of the opening handshake response."""
        return self.response.headers

    @property
    def state(self) -> State:
        """OPEN, CLOSING while the close handshake or TCP close runs, then CLOSED."""
        if self._lifecycle is Lifecycle.CLOSED:
            return State.CLOSED
        state = self._proto.state
        return State.CLOSING if state is State.CLOSED else state

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the code received, or sent on failure, or 1006."""
        return self._proto.close_code if self._proto.state is State.CLOSED else None

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with `close_code`."""
        return self._proto.close_reason if self._proto.state is State.CLOSED else None

    @property
    def buffered_amount(self) -> int:
        """Bytes queued to send and not yet taken by the kernel (`bufferedAmount` in a
        browser); `send()` waits while it is over `write_limit`."""
        return self._outbox.buffered

    @property
    def bytes_received(self) -> int:
        """Bytes of frames received so far (after the handshake; compressed as they came)."""
        return self._proto.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes of frames handed to the network so far (after the handshake)."""
        return self._proto.bytes_sent

    def __repr__(self) -> str:
        return f"<WebSocket {self.id} {self.remote_address} {self.state.name}>"

    # ---- the choke point --------------------------------------------------------------

    def _open_protocol(self) -> Protocol:
        """The protocol, for a call that needs the connection open; else ConnectionClosed."""
        proto = self._proto
        if proto.state is not State.OPEN:
            raise self._closed_exception()
        return proto

    def _sync(self, *, more_soon: bool = False) -> None:
        """After every protocol call: hand new output to the outbox, and once the protocol
        is CLOSED, move the lifecycle on and wake every waiter (recv, send, ping, reader).
        `more_soon`: more output is likely before this task yields (see `Outbox.flush`)."""
        proto = self._proto
        if proto.bytes_to_send:
            self._outbox.flush(soon=more_soon)
        if proto.state is State.CLOSED and self._lifecycle is Lifecycle.OPEN:
            self._lifecycle = Lifecycle.CLOSING
            self._reading.cancel()  # a reader waiting for data goes on to close the TCP connection
            self._inbox.close()
            self._outbox.wake_senders()
            self._pings.wake_all()

    def _write_lost(self) -> None:
        """The outbox found the connection gone while writing."""
        if self._proto.state is not State.CLOSED:
            self._debug("TCP connection lost while sending")
            self._proto.receive_eof()
            self._sync()

    # ---- receiving --------------------------------------------------------------------

    async def recv(self) -> Message:
        """The next message: `str` for text, `bytes` for binary.

        Raises `ConnectionClosedOK` or `ConnectionClosedError` once the connection is
        closed and every message received before that has been returned. Safe to cancel:
        a cancelled `recv()` takes no message from the queue.

        A message already queued is returned without yielding to other tasks, except once
        every few calls (cancellation is always checked): a handler works through what one
        read delivered and its replies leave in one write, while no connection keeps the
        others waiting for long.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._half_streamed:
            raise RuntimeError("recv() in the middle of a message: read the rest with recv_streaming()")
        if self._assembly is not None:
            return await self._assemble()
        message = self._inbox.take_nowait()
        if message is None:
            message = await self._take()
            self._fast_calls = 0
        if type(message) is Fragment:  # it arrived while a recv_streaming() was active
            self._assembly = [message]
            return await self._assemble()
        await self._maybe_yield()
        return message  # type: ignore[return-value]

    def recv_streaming(self) -> MessageStream:
        """The next message as it arrives, fragment by fragment:
        `async for fragment in ws.recv_streaming():` (each `str` for text, `bytes` for binary).

        A large message need not be held whole: each fragment is bounded by `max_size` on
        its own, and the message is not. Safe to cancel: a cancelled step takes no fragment,
        and a new `recv_streaming()` goes on where the last one stopped. A message that
        arrived in one frame, or before streaming began, comes as one fragment.
        """
        return MessageStream(self)

    async def _take(self) -> Item:
        """The next item of the inbox, once there is one; raises once closed and empty."""
        item = await self._inbox.take()
        if item is None:
            raise self._closed_exception()
        return item

    async def _assemble(self) -> Message:
        """Join the fragments of a streamed message for recv(), bounded by `max_size`.
        The parts taken so far are kept across a cancelled recv()."""
        parts = self._assembly
        assert parts is not None
        limit = self._proto.max_size
        size = sum(len(part) for part in parts)
        while not parts[-1].fin:
            part = await self._take()
            assert type(part) is Fragment  # the protocol streams a message to its end
            parts.append(part)
            size += len(part)
            if limit is not None and size > limit:
                self._assembly = None
                self._proto.fail(CloseCode.MESSAGE_TOO_BIG, f"message over the size limit of {limit} bytes")
                self._sync()
                raise self._closed_exception()
        self._assembly = None
        data = [part.data for part in parts]
        return "".join(data) if isinstance(data[0], str) else b"".join(data)  # type: ignore[arg-type]

    async def _maybe_yield(self) -> None:
        """Yield to the scheduler once every `_YIELD_EVERY` calls that did not wait."""
        self._fast_calls += 1
        if self._fast_calls >= _YIELD_EVERY:
            self._fast_calls = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Message:
        """Messages until the connection closes normally; an abnormal close raises."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # ---- sending ----------------------------------------------------------------------

    async def send(
        self,
        message: Data | PreparedMessage | Iterable[Data] | AsyncIterable[Data],
    ) -> None:
        """Send a message: `str` as text, bytes-like as binary.

        An iterable or async iterable of str (or of bytes-like) is sent as one fragmented
        message, a frame per item. A `PreparedMessage` is sent with the frame it shares
        with the other connections it goes to. Waits while more than `write_limit` bytes are waiting
        for the network. Safe to cancel: a cancelled send of a single message sends
        nothing; a fragmented send interrupted midway fails the connection with 1011,
        because the message can no longer be completed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if (
            not isinstance(message, (str, bytes, bytearray, memoryview))
            and type(message) is not PreparedMessage
        ):
            if _is_bytes_like(message):
                message = memoryview(message)  # type: ignore[arg-type]  # array.array, numpy arrays
            elif isinstance(message, Mapping):
                raise TypeError("cannot send a mapping; serialize it first, e.g. with json.dumps")
            elif isinstance(message, (Iterable, AsyncIterable)):
                await self._send_fragmented(cast(Iterable[Data] | AsyncIterable[Data], message))
                return
            else:
                raise TypeError(f"cannot send {type(message).__name__}; send str or bytes-like")
        await self._wait_turn_and_room()
        self._queue_whole(self._open_protocol(), message)
        await self._maybe_yield()  # see recv()

    async def _wait_turn_and_room(self) -> None:
        """Wait until no fragmented send is in progress and the outbox has room, both at
        once: a fragmented send may start while this waits for room."""
        while True:
            if self._sending_fragments is not None:
                await self._sending_fragments.wait()
            elif not self._outbox.has_room and self._proto.state is State.OPEN:
                await self._outbox.wait_for_room()
                self._fast_calls = 0
            else:
                return

    async def _send_fragmented(self, fragments: Iterable[Data] | AsyncIterable[Data]) -> None:
        while self._sending_fragments is not None:
            await self._sending_fragments.wait()
        done = self._sending_fragments = trio.Event()
        started = False
        try:
            previous: Data | None = None
            async for fragment in _aiter(fragments):
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)) and _is_bytes_like(fragment):
                    fragment = memoryview(fragment)
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)):
                    raise TypeError(f"cannot send a fragment of type {type(fragment).__name__}")
                if previous is not None:
                    await self._outbox.wait_for_room()
                    self._open_protocol().send(previous, fin=False)
                    self._sync()
                    started = True
                previous = fragment
            if previous is not None:
                await self._outbox.wait_for_room()
                self._open_protocol().send(previous, fin=True)
                self._sync()
        except BaseException:
            if started and self._proto.state is State.OPEN:
                self.logger.error("fragmented send interrupted; failing the connection")
                self._proto.fail(CloseCode.INTERNAL_ERROR, "incomplete fragmented message")
                self._sync()
            raise
        finally:
            self._sending_fragments = None
            done.set()
        await trio.lowlevel.checkpoint()

    def try_send_nowait(self, message: PreparedMessage | Data) -> bool:
        """Queue a whole message if the connection can take it at once; never waits.

        Returns False, having queued nothing, when the connection is closing, in the middle
        of a fragmented send, or has more than `write_limit` bytes waiting for the network:
        `broadcast` and the hub use it so that a slow client never slows the others.
        """
        proto = self._proto
        if not (proto.can_send_frame and self._sending_fragments is None and self._outbox.has_room):
            return False
        self._queue_whole(proto, message)
        return True

    def _queue_whole(self, proto: Protocol, message: PreparedMessage | Data) -> None:
        """Queue a whole message, with its shared frame where this connection has one."""
        if type(message) is PreparedMessage:
            frame = message.frame_for(proto)
            if frame is None:
                proto.send(message.message)
            else:
                proto.send_serialized(frame)
        else:
            proto.send(message)  # type: ignore[arg-type]
        # With received messages still queued, the handler is likely working through a
        # batch and answering each: its answers leave together once it yields.
        self._sync(more_soon=len(self._inbox) > 0)

    async def ping(self, data: bytes | str | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Without `data` a random payload is used. Wrap in `trio.move_on_after` for a
        timeout. Raises `ConnectionClosed` if the connection closes first.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if data is None:
            payload = self._pings.new_payload()
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise ValueError("already waiting for a pong with this payload")
        self._open_protocol().send_ping(payload)
        self._sync()
        waiter = self._pings.add(payload, trio.current_time(), trio.Event())
        assert waiter.answered is not None
        try:
            await waiter.answered.wait()
        finally:
            self._pings.forget(payload)
        if waiter.rtt is None:
            raise self._closed_exception()
        return waiter.rtt

    async def pong(self, data: bytes | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat); pings are answered for you."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._open_protocol().send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._sync()
        await trio.lowlevel.cancel_shielded_checkpoint()

    # ---- closing ----------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and close the TCP connection.

        Returns once the connection is closed, at most about `close_timeout` later: a peer
        that does not answer in time is cut off (the close code is then 1006). Never
        raises `ConnectionClosed`.
        """
        if self._proto.state is State.OPEN:
            self._close_deadline = trio.current_time() + self._close_timeout
            self._proto.send_close(code, reason)
            self._sync()
            self._inbox.wake_reader()  # the reader must see the peer's close frame
            with trio.move_on_at(self._close_deadline):
                await self.wait_closed()
            if self._lifecycle is Lifecycle.OPEN:
                self.logger.info("no close frame from the peer within %ss", self._close_timeout)
                self._abort_now()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side."""
        if self._lifecycle is Lifecycle.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    def _closed_exception(self) -> ConnectionClosed:
        proto = self._proto
        if proto.state is not State.CLOSED and proto.close_sent is not None:
            return ConnectionClosed.for_code(proto.close_sent.code, proto.close_sent.reason)
        return ConnectionClosed.for_code(proto.close_code, proto.close_reason)

    def _abort_now(self) -> None:
        """Give up on the connection: the protocol stops, and TCP is dropped, not closed."""
        self._proto.abort()
        self._sync()
        if self._lifecycle is Lifecycle.CLOSING:
            self._lifecycle = Lifecycle.ABORTING

    def _set_closed(self) -> None:
        """TCP is closed: the last step of the lifecycle, and the last wake-up."""
        if self._lifecycle is Lifecycle.CLOSED:
            return
        self._lifecycle = Lifecycle.CLOSED
        if self._closed_event is not None:
            self._closed_event.set()
        if self._inbox.discarded:
            self._debug("dropped %d messages that arrived after our close frame", self._inbox.discarded)
        if self._on_closed is not None:
            self._on_closed(self)
        if self._own_timers is not None:
            self._own_timers.cancel()
        if self._timers is not None and self._timer is not None:
            self._timers.discard(self._timer)
        self._inbox.close()
        self._outbox.wake_senders()
        self._outbox.stop()
        self._debug("connection closed: %s", self._closed_exception())

    # ---- background tasks -------------------------------------------------------------

    @asynccontextmanager
    async def running(self, keepalive: KeepaliveTimers | None = None) -> AsyncIterator[None]:
        """Run the connection's background tasks around the body, and close it on the way
        out: `serve` and `connect` do, around the handler or the `async with` block. Its
        keepalive pings join `keepalive` (a server's timers, shared by its connections), or
        timers of its own.

        A normal exit closes with 1000, an exception with 1011, and a cancellation (or
        KeyboardInterrupt) drops the TCP connection at once.
        """
        try:
            async with open_nursery_unwrapped() as nursery:
                nursery.start_soon(self._reader)
                self._outbox.start(nursery)
                if self._ping_interval is not None:
                    if keepalive is None:  # timers of its own, in a task that ends with it
                        keepalive = KeepaliveTimers()
                        self._own_timers = trio.CancelScope()
                        nursery.start_soon(self._run_own_timers, keepalive, self._own_timers)
                    self._timers = keepalive
                    self._timer = keepalive.add(self, trio.current_time() + self._ping_interval)
                try:
                    yield
                except ConnectionClosed:
                    await self.close()
                    raise
                except Exception:
                    await self.close(CloseCode.INTERNAL_ERROR, "internal error")
                    raise
                else:
                    await self.close()
        finally:
            self._outbox.detach()  # the nursery is closed to new tasks now
            if self._lifecycle is not Lifecycle.CLOSED:
                self._read_fd = None
                self._abort_now()
                try:
                    await trio.aclose_forcefully(self._stream)
                finally:
                    # A cancelled body's scope is still cancelled here, so aclose_forcefully
                    # raises Cancelled once the stream is closed: the connection is closed all
                    # the same, and must say so.
                    self._set_closed()

    async def _run_own_timers(self, timers: KeepaliveTimers, scope: trio.CancelScope) -> None:
        with scope:
            await timers.run()

    async def _reader(self) -> None:
        """Read and parse until the protocol is closed, then close the TCP connection."""
        proto = self._proto
        try:
            proto.feed_data(self._initial_data)
            with self._reading:  # cancelled when the protocol closes while this waits
                while True:
                    self._parse()
                    if proto.state is State.CLOSED:
                        break
                    if self._parsing_paused():
                        await self._inbox.wait_for_room()
                        continue
                    try:
                        data = await self._read()
                    except CLOSED_STREAM_ERRORS:
                        break
                    if not data:
                        self._eof = True
                        break
                    proto.feed_data(data)
        finally:
            if proto.state is not State.CLOSED:
                self._debug("TCP connection lost without a close frame")
                proto.receive_eof()
                self._sync()
        await self._close_transport()

    async def _close_transport(self) -> None:
        """Once the protocol is closed: flush, close TCP the polite way, then mark closed.
        One deadline bounds it all: past it, the close in progress is cut short and the
        stream closed forcefully (a cancelled `aclose` still closes)."""
        stream = self._stream
        self._outbox.stop_writing_through()  # from here on only the writer writes
        if self._close_deadline == float("inf"):
            self._close_deadline = trio.current_time() + self._close_timeout
        with trio.move_on_at(self._close_deadline):
            if self._lifecycle is not Lifecycle.ABORTING:
                await self._outbox.wait_flushed()
                # Half-closing, then reading to EOF, avoids a RST that could destroy the
                # close frame before the peer reads it. A stream that cannot half-close
                # (TLS) is closed at once.
                if not self._proto.closes_tcp_first:
                    await self._drain_to_eof()
                elif isinstance(stream, trio.abc.HalfCloseableStream):
                    await shut_down_writing(stream)
                    await self._drain_to_eof()
            self._outbox.stop()
            self._read_fd = None  # this task closes the stream: its fd may be reused after
            if self._lifecycle is Lifecycle.ABORTING:
                await trio.aclose_forcefully(stream)
            else:
                await stream.aclose()
        self._set_closed()

    async def _drain_to_eof(self) -> None:
        """Read and drop what the peer still sends, until it closes its side."""
        with contextlib.suppress(*CLOSED_STREAM_ERRORS, OSError):
            while not self._eof and await self._read():
                pass

    async def _read(self) -> bytes | bytearray:
        """The next bytes from the peer; b"" at end of stream.

        On a plain TCP socket, read its non-blocking fd directly (`read_ready`, `read_fd`).
        Only the reader reads, and the reader closes the stream, so the fd stays valid
        while it is read; `_read_fd` is None for TLS.
        """
        fd = self._read_fd
        if fd is None:  # TLS, or closing: the stream drains the rest
            return await self._stream.receive_some(_RECEIVE_SIZE)
        data = read_ready(fd, _RECEIVE_SIZE)
        if data is None:
            self._eager_reads = 0
            return await read_fd(fd, _RECEIVE_SIZE)
        # Data was ready without waiting: a peer that floods us would otherwise keep this
        # loop from ever yielding and starve every other connection.
        self._eager_reads += 1
        if self._eager_reads >= _EAGER_READS:
            self._eager_reads = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    def _parsing_paused(self) -> bool:
        """Whether the reader must wait before parsing further: while the connection is
        open, a full inbox (`max_queue` messages or `max_queue_bytes`).

        The output buffer does not pause parsing: what the peer can make us write is
        bounded in the protocol (one pending pong, one close frame), and pausing on our
        own sends would starve the pongs and close frame of a slow but live peer.
        """
        return self._proto.state is State.OPEN and self._inbox.full

    def _parse(self) -> None:
        """Turn buffered bytes into events, one at a time, until parsing must pause.

        Every message received before the peer's close frame is kept: backpressure stops
        the parsing, it never discards. Only once our own close frame is out (the handler
        chose to stop) are messages past `max_queue` dropped, so that the closing
        handshake is not stuck behind them.
        """
        proto = self._proto
        inbox = self._inbox
        got_message = False
        while not self._parsing_paused():
            event = proto.next_event()
            if event is None:
                break
            kind = type(event)
            if kind is str or kind is bytes or kind is Fragment:
                inbox.put(event, closing=proto.state is State.CLOSING)  # type: ignore[arg-type]
                got_message = True
            elif kind is Pong:
                self._pings.answered(event.payload, trio.current_time())  # type: ignore[union-attr]
        if got_message:
            inbox.wake_getters()
        self._sync()

    def keepalive(self, now: float) -> float | None:
        """The keepalive work due at `now`, for the `KeepaliveTimers` that run it: a ping
        every `ping_interval`, and failing the connection (1011) when a pong is more than
        `ping_timeout` late. Returns when it is next due, or None once the connection is
        closing. `latency` is the round trip of the last keepalive ping answered.
        """
        interval, timeout = self._ping_interval, self._ping_timeout
        if interval is None or self._proto.state is not State.OPEN:
            return None
        pending = self._keepalive_ping
        if pending is not None:
            if pending.rtt is not None:
                self.latency = pending.rtt
                if now < pending.sent_at + interval:
                    return pending.sent_at + interval
            elif timeout is not None:
                if now < pending.sent_at + timeout:
                    return pending.sent_at + timeout
                self.logger.info("no pong within %ss; closing the connection", timeout)
                self._proto.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                self._sync()
                return None
            self._pings.forget(pending.payload)  # answered, or unanswered with no timeout
        pending = self._keepalive_ping = self._pings.add(self._pings.new_payload(), now)
        self._proto.send_ping(pending.payload)
        self._sync()
        return now + (interval if timeout is None else min(interval, timeout))


class MessageStream:
    """What `ws.recv_streaming()` returns: the fragments of one message, as they arrive."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._done = False
        ws._proto.streaming = True  # frames that arrive from now on are not assembled

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> Message:
        if self._done:
            raise StopAsyncIteration
        ws = self._ws
        await trio.lowlevel.checkpoint_if_cancelled()
        if ws._assembly is not None:
            raise RuntimeError("recv_streaming() while a recv() is joining a message")
        item = await ws._take()
        if type(item) is Fragment:
            ws._half_streamed = not item.fin
            if item.fin:
                self._finish()
            return item.data
        self._finish()
        return item  # type: ignore[return-value]

    def _finish(self) -> None:
        self._done = True
        self._ws._proto.streaming = False


def _is_bytes_like(obj: object) -> bool:
    """Whether `obj` supports the buffer protocol (array.array, numpy arrays, ...)."""
    try:
        memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


async def _aiter(items: Iterable[Data] | AsyncIterable[Data]) -> AsyncIterator[Data]:
    """Iterate a sync or async iterable the same way."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
