"""`WebSocket`: one WebSocket connection over one `trio.abc.Stream`.

Who touches what, and when (in the spirit of h11's state notes):

- **The protocol** (`Protocol`, sans-I/O) holds the connection's state, its output buffer
  and its parser. Every call into it is followed by `_after_protocol()`, the one place that
  reacts to what the call changed: output to write, and, once the protocol is CLOSED,
  every waiter woken and the reader's wait cancelled.
- **The inbox** (`_messages`, `_queued_bytes`, the queue marks) is filled by the reader
  task (`_parse`) and emptied by `recv()` / `recv_streaming()` in the user's task. The
  reader stops parsing at a high mark and `recv()` wakes it below the low marks.
- **The outbox** is the protocol's output buffer plus `_in_flight`. Any task that queues
  output writes it through at once when nothing is in flight (`_output_ready`: one
  non-blocking `os.write`, no await); what the kernel does not take is flushed by the
  writer task. `send()` waits while more than `write_limit` is buffered.
- **The lifecycle**: OPEN, then CLOSING once a close frame went either way, then CLOSED
  when the protocol is done (close frames exchanged, a failure, or the TCP connection lost),
  and finally `_closed` once the TCP connection is closed. The reader task owns the last
  step: once the protocol is CLOSED it flushes, closes TCP the polite way (the server, and
  a side that failed the connection, close first; bounded by `close_timeout`) and sets
  `_closed`. `close()` only starts the handshake and waits for `_closed`, aborting at its
  deadline.
- **Tasks**: the handler (or the `async with connect()` body) and the reader run in the
  connection's nursery (`running()`). The writer runs there only while the kernel's send
  buffer is full (for TLS, which has no socket to write through, for the whole connection).
  Keepalive pings come from the server's `KeepaliveTimers`, one task for every connection,
  through `keepalive(now)`; a client connection has timers of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from .exceptions import CloseCode, ConnectionClosed, ConnectionClosedOK
from .http import Headers, Request, Response
from .keepalive import KeepaliveTimers, TimerEntry
from .prepared import PreparedMessage
from .protocol import Data, Fragment, Pong, Protocol, Role, State
from .sockets import address, socket_of
from .tasks import open_nursery_unwrapped

__all__ = ["WebSocket", "Message", "MessageStream"]

#: What `recv()` returns: `str` for a text message, `bytes` for a binary one.
Message = str | bytes
"""A whole message: `str` for a text message, `bytes` for a binary one."""

_RECEIVE_SIZE = 2**16
_YIELD_EVERY = 16  # recv()/send() calls that may run without yielding to other tasks
_EAGER_READS = 4  # reads in a row that found data waiting before the reader yields (256 KiB)
_CLOSED_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


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
        "_abort",
        "_assembly",
        "_close_deadline",
        "_close_timeout",
        "_closed",
        "_discarded",
        "_drain_lot",
        "_eager_reads",
        "_eof",
        "_fast_calls",
        "_fd",
        "_fragment_lot",
        "_fragmenting",
        "_half_streamed",
        "_in_flight",
        "_initial_data",
        "_keepalive_ping",
        "_message_lot",
        "_messages",
        "_nursery",
        "_on_closed",
        "_own_timers",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_proto",
        "_protocol_closed",
        "_queue_high",
        "_queue_high_bytes",
        "_queue_low",
        "_queue_low_bytes",
        "_queued_bytes",
        "_read_lot",
        "_reading",
        "_stream",
        "_timer",
        "_timers",
        "_write_failed",
        "_write_limit",
        "_write_lot",
        "_writer_running",
        "_writer_stop",
        "_writer_waits",
        "id",
        "latency",
        "local_address",
        "logger",
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
        #: A unique id, handy in logs.
        self.id = uuid.uuid4()
        self.request = request
        self.response = response
        self.subprotocol: str | None = response.headers.get("Sec-WebSocket-Protocol")
        #: Round-trip time of the last keepalive ping, in seconds (0 until one completes).
        self.latency = 0.0
        self._initial_data = initial_data
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        # The inbox's high- and low-water marks (max_queue, max_queue_bytes): parsing stops
        # at a high mark and resumes once recv() took the queue below both low marks.
        self._queue_high, self._queue_low = queue_marks(max_queue)
        self._queue_high_bytes = sys.maxsize if max_queue_bytes is None else max_queue_bytes
        self._queue_low_bytes = self._queue_high_bytes // 4
        self._queued_bytes = 0  # len() of the queued messages: bytes, or characters of text
        self._discarded = 0  # messages dropped past max_queue after our close frame
        self._write_limit = write_limit
        self._on_closed = on_closed
        sock = socket_of(stream)
        # The server's request already has it: one system call less per connection.
        self.remote_address: Any = request.remote_address or address(sock, "getpeername")
        self.local_address: Any = address(sock, "getsockname")
        self.logger = _ConnectionLogger(
            logger or logging.getLogger("trio_ws"),
            {"websocket": str(self.id)[:8], "remote_address": self.remote_address},
        )

        self._messages: deque[Message | Fragment] = deque()
        self._assembly: list[Fragment] | None = None  # recv() joining a streamed message
        self._half_streamed = False  # recv_streaming() gave part of a message, not its end
        self._message_lot = trio.lowlevel.ParkingLot()  # recv() waiting for a message
        self._read_lot = trio.lowlevel.ParkingLot()  # reader waiting for room in the inbox
        self._write_lot = trio.lowlevel.ParkingLot()  # writer waiting for output
        self._drain_lot = trio.lowlevel.ParkingLot()  # send() waiting for buffer room
        self._fragment_lot = trio.lowlevel.ParkingLot()  # send() waiting for a fragmented send
        self._fragmenting = False
        self._fast_calls = 0  # recv()/send() calls since this connection last yielded
        self._eager_reads = 0  # reads in a row that did not have to wait
        self._in_flight = 0  # bytes handed to send_all and not yet accepted
        # A plain TCP stream's non-blocking socket, written directly while the writer is idle
        # (None for TLS, and from the moment the stream starts closing: its fd may be reused).
        self._fd: int | None = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._write_failed = False
        self._writer_stop = False
        self._writer_waits = self._fd is None  # a writer task for the whole connection
        self._writer_running = False
        self._nursery: trio.Nursery | None = None  # the connection's, while running()
        self._pings: dict[bytes, _Ping] = {}  # by payload, in the order sent
        self._keepalive_ping: _Ping | None = None  # the keepalive's last ping
        self._own_timers: trio.CancelScope | None = None  # keepalive timers run for this one alone
        self._timers: KeepaliveTimers | None = None  # where its keepalive is timed
        self._timer: TimerEntry | None = None
        self._protocol_closed = False  # the protocol reached CLOSED, and waiters were woken
        self._reading = trio.CancelScope()  # the reader's, until the protocol is closed
        self._eof = False  # the reader saw the end of the stream
        self._closed = trio.Event()
        self._abort = False
        self._close_deadline = float("inf")  # set by close(): the whole close fits in close_timeout

    # ---- attributes -------------------------------------------------------------------

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
        if self._closed.is_set():
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

    def __repr__(self) -> str:
        return f"<WebSocket {self.id} {self.remote_address} {self.state.name}>"

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
        messages = self._messages
        if not messages:
            while not messages:
                if self._proto.state is State.CLOSED:
                    raise self._closed_exception()
                await self._message_lot.park()
            self._fast_calls = 0
        message = messages.popleft()
        self._queued_bytes -= len(message)
        if len(messages) <= self._queue_low and self._queued_bytes <= self._queue_low_bytes:
            self._read_lot.unpark_all()
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

    async def _take(self) -> Message | Fragment:
        """The next item of the inbox, once there is one; raises once closed and empty."""
        messages = self._messages
        while not messages:
            if self._proto.state is State.CLOSED:
                raise self._closed_exception()
            await self._message_lot.park()
        item = messages.popleft()
        self._queued_bytes -= len(item)
        if len(messages) <= self._queue_low and self._queued_bytes <= self._queue_low_bytes:
            self._read_lot.unpark_all()
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
                self._after_protocol()
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
        while self._fragmenting:
            await self._fragment_lot.park()
        await self._wait_for_buffer_room()
        if self._proto.state is not State.OPEN:
            raise self._closed_exception()
        self._queue_whole(message)
        await self._maybe_yield()  # see recv()

    async def _send_fragmented(self, fragments: Iterable[Data] | AsyncIterable[Data]) -> None:
        while self._fragmenting:
            await self._fragment_lot.park()
        self._fragmenting = True
        started = False
        try:
            previous: Data | None = None
            async for fragment in _aiter(fragments):
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)) and _is_bytes_like(fragment):
                    fragment = memoryview(fragment)
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)):
                    raise TypeError(f"cannot send a fragment of type {type(fragment).__name__}")
                if previous is not None:
                    await self._wait_for_buffer_room()
                    self._queue(previous, False)
                    started = True
                previous = fragment
            if previous is not None:
                await self._wait_for_buffer_room()
                self._queue(previous, True)
        except BaseException:
            if started and self._proto.state is State.OPEN:
                self.logger.error("fragmented send interrupted; failing the connection")
                self._proto.fail(CloseCode.INTERNAL_ERROR, "incomplete fragmented message")
                self._after_protocol()
            raise
        finally:
            self._fragmenting = False
            self._fragment_lot.unpark_all()
        await trio.lowlevel.checkpoint()

    async def _wait_for_buffer_room(self) -> None:
        while (
            self._proto.bytes_to_send + self._in_flight > self._write_limit
            and self._proto.state is State.OPEN
        ):
            await self._drain_lot.park()
            self._fast_calls = 0

    def _queue(self, data: Data, fin: bool) -> None:
        if self._proto.state is not State.OPEN:
            raise self._closed_exception()
        self._proto.send(data, fin=fin)
        self._output_ready()

    def try_send_nowait(self, message: PreparedMessage | Data) -> bool:
        """Queue a whole message if the connection can take it at once; never waits.

        Returns False, having queued nothing, when the connection is closing, in the middle
        of a fragmented send, or has more than `write_limit` bytes waiting for the network:
        `broadcast` and the hub use it so that a slow client never slows the others.
        """
        if not (
            self._proto.can_send_frame
            and not self._fragmenting
            and self._proto.bytes_to_send + self._in_flight <= self._write_limit
        ):
            return False
        self._queue_whole(message)
        return True

    def _queue_whole(self, message: PreparedMessage | Data) -> None:
        """Queue a whole message, with its shared frame where this connection has one."""
        if isinstance(message, PreparedMessage):
            frame = message.frame_for(self._proto)
            if frame is None:
                self._proto.send(message.message)
            else:
                self._proto.send_serialized(frame)
        else:
            self._proto.send(message)
        self._output_ready()

    async def ping(self, data: bytes | str | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Without `data` a random payload is used. Wrap in `trio.move_on_after` for a
        timeout. Raises `ConnectionClosed` if the connection closes first.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if data is None:
            payload = self._new_ping_payload()
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise ValueError("already waiting for a pong with this payload")
        if self._proto.state is not State.OPEN:
            raise self._closed_exception()
        self._proto.send_ping(payload)
        self._output_ready()
        waiter = self._pings[payload] = _Ping(payload, trio.current_time(), trio.Event())
        assert waiter.answered is not None
        try:
            await waiter.answered.wait()
        finally:
            self._pings.pop(payload, None)
        if waiter.rtt is None:
            raise self._closed_exception()
        return waiter.rtt

    def _new_ping_payload(self) -> bytes:
        payload = os.urandom(4)
        while payload in self._pings:
            payload = os.urandom(4)
        return payload

    async def pong(self, data: bytes | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat); pings are answered for you."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._proto.state is not State.OPEN:
            raise self._closed_exception()
        self._proto.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._output_ready()
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
            self._after_protocol()
            self._read_lot.unpark_all()  # the reader must see the peer's close frame
            with trio.move_on_at(self._close_deadline):
                await self._closed.wait()
            if not self._protocol_closed:
                self.logger.info("no close frame from the peer within %ss", self._close_timeout)
                self._abort_now()
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side."""
        await self._closed.wait()

    def _closed_exception(self) -> ConnectionClosed:
        proto = self._proto
        if proto.state is not State.CLOSED and proto.close_sent is not None:
            return ConnectionClosed.for_code(proto.close_sent.code, proto.close_sent.reason)
        return ConnectionClosed.for_code(proto.close_code, proto.close_reason)

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
                self._nursery = nursery
                nursery.start_soon(self._reader)
                if self._writer_waits:  # no socket to write through: a writer for its lifetime
                    self._writer_running = True
                    nursery.start_soon(self._writer)
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
            self._nursery = None  # closed to new tasks now
            if not self._closed.is_set():
                self._fd = None
                self._abort_now()
                await trio.aclose_forcefully(self._stream)
                self._set_closed()

    async def _run_own_timers(self, timers: KeepaliveTimers, scope: trio.CancelScope) -> None:
        with scope:
            await timers.run()

    def _abort_now(self) -> None:
        self._abort = True
        self._proto.receive_eof()
        self._after_protocol()

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
                        await self._read_lot.park()
                        continue
                    try:
                        data = await self._read()
                    except _CLOSED_STREAM_ERRORS:
                        break
                    if not data:
                        self._eof = True
                        break
                    proto.feed_data(data)
        finally:
            if proto.state is not State.CLOSED:
                self.logger.debug("TCP connection lost without a close frame")
                proto.receive_eof()
                self._after_protocol()
        await self._close_transport()

    async def _close_transport(self) -> None:
        """Once the protocol is closed: flush, close TCP the polite way, then mark closed."""
        stream = self._stream
        self._fd = None  # from here on only the writer and this task touch the stream
        if self._close_deadline == float("inf"):
            self._close_deadline = trio.current_time() + self._close_timeout
        if not self._abort:
            with trio.move_on_at(self._close_deadline):
                await self._wait_flushed()
                # The server closes TCP first (RFC 6455 7.1.1), and so does a side that
                # failed the connection. Half-closing, then reading to EOF, avoids a RST
                # that could destroy the close frame before the peer reads it. A stream
                # that cannot half-close (TLS) is closed at once.
                closes_first = self._proto.role is Role.SERVER or self._proto.failure is not None
                if not closes_first:
                    await self._drain_to_eof()
                elif isinstance(stream, trio.abc.HalfCloseableStream):
                    with contextlib.suppress(*_CLOSED_STREAM_ERRORS, trio.BusyResourceError, OSError):
                        await stream.send_eof()
                    await self._drain_to_eof()
        self._writer_stop = True
        self._write_lot.unpark_all()
        if self._abort:
            await trio.aclose_forcefully(stream)
        else:
            with trio.move_on_at(self._close_deadline):
                await stream.aclose()  # a cancelled aclose still closes, forcefully
        self._set_closed()

    async def _drain_to_eof(self) -> None:
        """Read and drop what the peer still sends, until it closes its side."""
        with contextlib.suppress(*_CLOSED_STREAM_ERRORS, OSError):
            while not self._eof and await self._stream.receive_some(_RECEIVE_SIZE):
                pass

    async def _read(self) -> bytes | bytearray:
        """The next bytes from the peer; b"" at end of stream.

        On a plain TCP socket, wait for readability and read the non-blocking fd directly:
        one scheduler round per read instead of the two of `receive_some` (and at least one
        per four reads, see below). `_fd` is checked right before each read (no await in
        between): once the closer cleared it, reads go through the stream, which raises
        once it is closed (the fd may be reused by then).
        """
        waited = False
        while True:
            fd = self._fd
            if fd is None:  # TLS, or closing: the stream drains the rest
                return await self._stream.receive_some(_RECEIVE_SIZE)
            try:
                data = os.read(fd, _RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                waited = True
                continue
            except OSError as exc:  # reset by the peer, typically
                raise trio.BrokenResourceError(str(exc)) from exc
            if waited:
                self._eager_reads = 0
            else:
                # Data was ready without waiting: a peer that floods us would otherwise
                # keep this loop from ever yielding and starve every other connection.
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
        return self._proto.state is State.OPEN and (
            len(self._messages) >= self._queue_high or self._queued_bytes >= self._queue_high_bytes
        )

    def _parse(self) -> None:
        """Turn buffered bytes into events, one at a time, until parsing must pause.

        Every message received before the peer's close frame is kept: backpressure stops
        the parsing, it never discards. Only once our own close frame is out (the handler
        chose to stop) are messages past `max_queue` dropped, so that the closing
        handshake is not stuck behind them.
        """
        proto = self._proto
        messages = self._messages
        got_message = False
        while not self._parsing_paused():
            event = proto.next_event()
            if event is None:
                break
            kind = type(event)
            if kind is str or kind is bytes or kind is Fragment:
                if proto.state is State.CLOSING and len(messages) >= self._queue_high:
                    self._discarded += 1
                    continue
                messages.append(event)  # type: ignore[arg-type]
                self._queued_bytes += len(event)  # type: ignore[arg-type]
                got_message = True
            elif kind is Pong:
                self._pong_received(event.payload)  # type: ignore[union-attr]
        if got_message:
            self._message_lot.unpark_all()
        self._after_protocol()

    def _pong_received(self, payload: bytes) -> None:
        """A pong acknowledges its ping and every ping sent before it (RFC 6455 5.5.3)."""
        if payload not in self._pings:
            return
        now = trio.current_time()
        for key, waiter in list(self._pings.items()):
            waiter.rtt = now - waiter.sent_at
            if waiter.answered is not None:
                waiter.answered.set()
            del self._pings[key]
            if key == payload:
                break

    def _after_protocol(self) -> None:
        """Wake whoever a protocol call may concern: the writer, and all on a close."""
        if self._proto.bytes_to_send:
            self._output_ready()
        if self._proto.state is State.CLOSED and not self._protocol_closed:
            self._protocol_closed = True
            self._reading.cancel()  # a reader waiting for data goes on to close the TCP connection
            self._message_lot.unpark_all()
            self._drain_lot.unpark_all()
            self._read_lot.unpark_all()
            for waiter in self._pings.values():
                if waiter.answered is not None:
                    waiter.answered.set()

    def _output_ready(self) -> None:
        """Bytes were queued: write them at once if the writer is idle, else wake it.

        A direct non-blocking write saves the hand-off to the writer task (as asyncio's
        transport.write does); whatever the kernel does not take goes first in line for
        the writer. Nothing awaits here, so no frame is ever half-written by a cancellation.
        """
        if self._fd is None or self._in_flight or self._write_failed:
            self._wake_writer()
            return
        data = self._proto.data_to_send()
        try:
            sent = os.write(self._fd, data)
        except OSError:  # would block, or the connection is gone: the writer finds out
            sent = 0
        if sent < len(data):
            self._proto.unsend(memoryview(data)[sent:])
            self._wake_writer()

    def _wake_writer(self) -> None:
        """Wake the writer task, or start one: on a plain TCP socket it runs only while
        the kernel's buffer is full, so an idle connection has none."""
        if self._writer_running:
            self._write_lot.unpark_all()
        elif self._nursery is not None and not self._write_failed and self._proto.bytes_to_send:
            self._writer_running = True
            self._nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        """Flush the output buffer with `send_all`; then wait for more (TLS and other
        streams with no socket to write through), or end (a plain TCP socket)."""
        stream = self._stream
        proto = self._proto
        try:
            while True:
                if proto.bytes_to_send and not self._write_failed:
                    data = proto.data_to_send()
                    self._in_flight = len(data)
                    try:
                        await stream.send_all(data)
                    except _CLOSED_STREAM_ERRORS:
                        self._write_failed = True
                        if proto.state is not State.CLOSED:
                            self.logger.debug("TCP connection lost while sending")
                            proto.receive_eof()
                            self._after_protocol()
                    finally:
                        self._in_flight = 0
                    self._drain_lot.unpark_all()
                    continue
                if self._writer_stop or not self._writer_waits:
                    return
                self._drain_lot.unpark_all()
                await self._write_lot.park()
        finally:
            self._writer_running = False
            self._drain_lot.unpark_all()

    async def _wait_flushed(self) -> None:
        while (self._proto.bytes_to_send or self._in_flight) and not self._write_failed:
            await self._drain_lot.park()

    def _set_closed(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._discarded:
            self.logger.debug("dropped %d messages that arrived after our close frame", self._discarded)
        if self._on_closed is not None:
            self._on_closed(self)
        if self._own_timers is not None:
            self._own_timers.cancel()
        if self._timers is not None and self._timer is not None:
            self._timers.discard(self._timer)
        self._message_lot.unpark_all()
        self._drain_lot.unpark_all()
        self._read_lot.unpark_all()
        self._write_lot.unpark_all()
        self.logger.debug("connection closed: %s", self._closed_exception())

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
                self._after_protocol()
                return None
            self._pings.pop(pending.payload, None)  # answered, or unanswered with no timeout
        pending = self._keepalive_ping = _Ping(self._new_ping_payload(), now)
        self._pings[pending.payload] = pending
        self._proto.send_ping(pending.payload)
        self._output_ready()
        return now + (interval if timeout is None else min(interval, timeout))


class _Ping:
    """A ping waiting for its pong: when it left, its round trip once answered, and the
    event a `ping()` call waits on (none for the keepalive's own pings)."""

    __slots__ = ("answered", "payload", "rtt", "sent_at")

    def __init__(self, payload: bytes, sent_at: float, answered: trio.Event | None = None) -> None:
        self.payload = payload
        self.sent_at = sent_at
        self.rtt: float | None = None
        self.answered = answered


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


def queue_marks(max_queue: int | tuple[int, int | None] | None) -> tuple[int, int]:
    """The (high, low) water marks for `max_queue`, as `websockets` reads it: an int is
    the high mark with a quarter of it as the low one; None means no limit."""
    if max_queue is None:
        return sys.maxsize, sys.maxsize
    high, low = (max_queue, None) if isinstance(max_queue, int) else max_queue
    low = high // 4 if low is None else low
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"max_queue needs 1 <= high and 0 <= low <= high, not {max_queue!r}")
    return high, low


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
