"""`ConnectionCore`: the machinery under one `WebSocket`, which is its public face.

Who touches what, and when (in the spirit of h11's state notes):

- **The protocol** (`Protocol`, sans-I/O) holds the connection's state, its output buffer,
  its parser, and the policy of who closes TCP first. Every call into it goes through one
  choke point, `with core.call() as protocol:`. On entry it checks, if asked, that the
  connection is open (else `ConnectionClosed`); on exit it reacts to what the call changed:
  output goes to the outbox, and once the protocol is CLOSED the lifecycle moves on and
  every waiter wakes.
- **The transport** (`Transport`) is the only owner of the stream and its socket.
- **The inbox** (`Inbox`) is filled by whoever reads the socket (`_parse`) and emptied by
  `recv()` / `recv_streaming()` in the user's task. The reader stops parsing while it is
  full and `recv()` wakes it below the low marks.
- **Who reads the socket**: the reader task, except while a `recv()` reads it itself
  (`receive`, `receiving`), so that a message wakes its handler directly. That is so from
  the start (where reads are safe to cancel), and again each time the reader gives a
  message to a waiting `recv()` with the inbox at its low marks: it then stands by until
  that task leaves `recv()` (with a message, cancelled, or closed), and takes the socket
  back unless a `recv()` is reading it again. A server's new connection starts no reader:
  the server's `ReaderStarts` task looks one pass later and starts one only if the handler
  is not in `recv()` by then (`ensure_reader`); an idle connection whose handler waits in
  `recv()` holds no reader task, and the `recv()` that leaves starts one
  (`_resume_reader`). So, from that look on, there is always a reader, or a `recv()`
  reading. Only one task ever waits on the socket: once the protocol is closed, TCP is
  closed at once when nothing is left to write or read (`_close_at_once`), which wakes a
  `recv()` waiting on it, or by the reader (one is started if there was none), which
  reads to the end only once no `recv()` does.
- **The outbox** (`Outbox`) is handed the protocol's output on the way out of the choke
  point, once it is `ready()`: written through at once by whichever task queued it, else
  held for a writer task that runs only while the kernel's send buffer is full. While held
  bytes cannot go, new output stays in the protocol's buffer until the writer takes it
  (`refill`), so it never overtakes them. A call made `more_soon` (a burst of
  `try_send_nowait`, answers to a batch just read) defers its output there instead, up
  to DEFER_LIMIT, and the run's flusher writes it once the task yields. `send()` waits
  while the two hold more than `write_limit` (`buffered`).
- **The lifecycle** (`Lifecycle`): OPEN while frames may flow (the protocol OPEN or
  CLOSING); CLOSING once the protocol is CLOSED and TCP is being closed the polite way;
  ABORTING when it is being dropped at once instead; CLOSED when TCP is closed. The reader
  task owns the TCP close: once the protocol is CLOSED it flushes, closes TCP first if the
  protocol says so (bounded by `close_timeout`), or waits for the peer to, and marks the
  connection CLOSED. `close()` only starts the handshake and waits, aborting at its deadline.
- **Tasks**: the handler (or the `async with connect()` body) and the reader run in the
  connection's nursery (`running()`), the reader standing by, or not there at all, while
  the handler reads. Over TLS (whose reads are not safe to cancel) the reader starts with
  the connection and always reads.
  The outbox's writer runs there only on demand. Keepalive pings come from the server's
  `KeepaliveTimers`, one task for every connection, through `keepalive(now)`; a client
  connection has timers of its own.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import trio

from .exceptions import CloseCode, ConnectionClosed
from .inbox import Inbox, Item
from .keepalive import KeepaliveTimers, TimerEntry
from .messages import Data, Fragment, is_bytes_like
from .options import ConnectionOptions
from .outbox import OUTPUT_PENDING, Outbox, Output
from .pings import PendingPing, Pings
from .protocol import Pong, Protocol, State
from .reader_starts import ReaderStarts
from .sockets import address, socket_of
from .transport import CLOSED_STREAM_ERRORS, Transport

__all__ = ["BURST_WINDOW", "DEFER_LIMIT", "ConnectionCore", "Lifecycle"]

DEFER_LIMIT = 2**14
"""Bytes of output a connection defers until its task yields (`Outbox.defer`) before
writing them anyway: 16 KiB is about 250 small messages in one system call."""

BURST_WINDOW = 0.01
"""Seconds within which a `try_send_nowait` that follows another is part of a burst, and
deferred so that the burst leaves in few writes; one after a quiet spell is written at
once, so that a message now and then pays no wait (as Nagle's algorithm decides)."""

_NEVER = float("-inf")  # one object for every connection's "no nowait send yet"
_UNREAD: Any = object()  # an address not yet asked of the socket


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


class ConnectionCore:
    """A connection's protocol, transport, queues, pings, lifecycle and background tasks."""

    # Slots, not a __dict__: an idle connection's attributes cost a third of the memory.
    __slots__ = (
        "_base_logger",
        "_close_deadline",
        "_close_timeout",
        "_closed_event",
        "_eof",
        "_handed_over",
        "_id",
        "_keepalive_ping",
        "_local_address",
        "_logger",
        "_more_soon",
        "_nowait_at",
        "_nursery",
        "_own_timers",
        "_ping_interval",
        "_ping_timeout",
        "_reading",
        "_remote_address",
        "_timer",
        "_timers",
        "_unread_at_close",
        "inbox",
        "latency",
        "lifecycle",
        "on_closed",
        "outbox",
        "pings",
        "protocol",
        "receiving",
        "sending_fragments",
        "streaming",
        "transport",
        "write_limit",
    )

    def __init__(
        self,
        transport: Transport,
        protocol: Protocol,
        options: ConnectionOptions,
        *,
        initial_data: bytes,
        remote_address: Any,
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.inbox = Inbox(options.max_queue, options.max_queue_bytes)
        self.outbox = Outbox(transport, refill=self._take_output, lost=self._write_lost)
        self.write_limit = options.write_limit
        """Bytes buffered past which `wait_for_room()` waits and `has_room` is False."""
        self.pings = Pings()
        self.lifecycle = Lifecycle.OPEN
        self.latency = 0.0  # round trip of the last keepalive ping answered
        self.on_closed: Callable[[], None] | None = None  # called once, when TCP is closed
        # A fragmented send in progress: the event its followers wait on, else None.
        self.sending_fragments: trio.Event | None = None
        # A `recv_streaming()` is reading: the reader asks the protocol for the frames of
        # fragmented messages one by one instead of assembled.
        self.streaming = False
        # A recv() reads the socket itself (see `receive`): the reader stands by meanwhile.
        self.receiving = False
        self._ping_interval = options.ping_interval
        self._ping_timeout = options.ping_timeout
        self._close_timeout = options.close_timeout
        self._close_deadline = float("inf")  # set by close(): the whole close fits in close_timeout
        self._closed_event: trio.Event | None = None  # made when somebody waits for CLOSED
        self._more_soon = False  # the call in progress expects more output before a yield
        self._nowait_at = _NEVER  # trio.current_time() of the last `in_burst()`
        # The reader's scope, cancelled when the protocol closes while it waits; None while
        # there is no reader (a recv() reads the socket itself, see `_reader`).
        self._reading: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None  # the connection's, while it takes tasks
        self._eof = False  # the reader (or a recv() reading itself) saw the end of the stream
        # Bytes came after the peer's close frame: TCP is half-closed and drained, never
        # closed whole, even if a later look finds the socket empty (more may be on the way).
        self._unread_at_close = False
        # recv() may read the socket itself (see `receive`): from the start where reads are
        # safe to cancel, and again each time the reader delivers to a waiting recv().
        self._handed_over = transport.reads_cancel_safely
        self._keepalive_ping: PendingPing | None = None  # the keepalive's last ping
        self._own_timers: trio.CancelScope | None = None  # keepalive timers run for this one alone
        self._timers: KeepaliveTimers | None = None  # where its keepalive is timed
        self._timer: TimerEntry | None = None
        self._base_logger = options.logger or logging.getLogger(f"trio_ws.{protocol.role.value}")
        self._remote_address = remote_address
        self._local_address: Any = _UNREAD  # asked of the socket on first use
        self._id: uuid.UUID | None = None  # made on first use, as is the logger
        self._logger: _ConnectionLogger | None = None
        if initial_data:  # frames that came with the handshake: parsed by the first reading
            with self.call() as proto:
                proto.feed_data(initial_data)

    # ---- identity and logs ------------------------------------------------------------

    @property
    def local_address(self) -> Any:
        """This side's address, asked of the socket on first use (None without one)."""
        if self._local_address is _UNREAD:
            self._local_address = address(socket_of(self.transport.stream), "getsockname")
        return self._local_address

    @property
    def id(self) -> uuid.UUID:
        """A unique id, made on first use."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The connection's logger, with its id and remote address on every record."""
        if self._logger is None:
            extra = {"websocket": str(self.id)[:8], "remote_address": self._remote_address}
            self._logger = _ConnectionLogger(self._base_logger, extra)
        return self._logger

    def debug(self, message: str, *args: object) -> None:
        """Log at DEBUG, without building the logger when nobody listens."""
        if self._base_logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(message, *args)

    # ---- the choke point --------------------------------------------------------------

    def call(self, *, require_open: bool = False, more_soon: bool = False) -> ConnectionCore:
        """The one way into the protocol: `with core.call() as protocol: protocol.send(...)`.

        With `require_open`, a connection that is not OPEN raises `ConnectionClosed` before
        the call. On the way out, whatever the call did: new output goes to the outbox, and
        once the protocol is CLOSED the lifecycle moves on and every waiter wakes.
        `more_soon`: more output is likely before this task yields (see `Outbox.defer`).
        Nothing here awaits, so no call into the protocol is ever cut by a cancellation.
        """
        if require_open and self.protocol.state is not State.OPEN:
            raise self.closed_exception()
        self._more_soon = more_soon
        return self

    def __enter__(self) -> Protocol:
        return self.protocol

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proto = self.protocol
        # While the outbox holds bytes that cannot go yet, new output waits in the protocol:
        # the writer takes it next (`refill`).
        # Output the task will add to before it yields is deferred to the flusher, up to
        # DEFER_LIMIT (and half of `write_limit`, so that deferring alone never refuses a
        # `try_send_nowait`); past that it is written now.
        outbox = self.outbox
        pending = proto.bytes_to_send
        if pending and outbox.ready():
            deferrable = self._more_soon and pending < DEFER_LIMIT and pending * 2 <= self.write_limit
            if not (deferrable and outbox.defer()):
                outbox.write(proto.data_to_send())
        if proto.state is State.CLOSED and self.lifecycle is Lifecycle.OPEN:
            self.lifecycle = Lifecycle.CLOSING
            self.inbox.close()
            self.outbox.wake_waiters()
            self.pings.wake_all()
            if self._close_at_once():
                if self._reading is not None:
                    self._reading.cancel()  # a reader waiting or standing by just ends
            elif self._reading is not None:
                self._reading.cancel()  # a reader waiting for data goes on to close TCP
            else:
                self._start_reader()  # none left (a recv() read the socket): one closes TCP

    def in_burst(self) -> bool:
        """For a `try_send_nowait`: whether it follows the one before within BURST_WINDOW."""
        now = trio.current_time()
        last, self._nowait_at = self._nowait_at, now
        return now - last < BURST_WINDOW

    def _take_output(self) -> Output | None:
        """What the protocol queued while the outbox's writer was busy: its next bytes."""
        with self.call() as proto:
            return proto.data_to_send() if proto.bytes_to_send else None

    # ---- flow control -----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet accepted by the kernel: the outbox's and the protocol's."""
        return self.outbox.held + self.protocol.bytes_to_send

    @property
    def has_room(self) -> bool:
        """Whether no more than `write_limit` bytes are waiting for the network."""
        return self.buffered <= self.write_limit

    async def wait_for_room(self) -> None:
        """Wait while more than `write_limit` bytes are buffered and the protocol is open."""
        while not self.has_room and self.protocol.state is State.OPEN:
            await self._wait_for_the_writer()

    async def wait_flushed(self) -> None:
        """Wait until every queued byte is written, or writing failed or stopped."""
        while self.buffered and self.outbox.state in OUTPUT_PENDING:
            await self.outbox.wait_drained()

    async def _wait_for_the_writer(self) -> None:
        if self.outbox.state not in OUTPUT_PENDING:
            # Output is handed over on every call while there is no writer, so only a failed
            # or stopped outbox leaves bytes in the protocol: wait for the close instead of
            # spinning (the protocol is CLOSED by then, or about to be).
            await self.wait_closed()
            return
        await self.outbox.wait_drained()

    def _write_lost(self) -> None:
        """The outbox found the connection gone while writing."""
        self._lost("TCP connection lost while sending")

    def _lost(self, why: str) -> None:
        """The TCP connection is gone: unless the protocol is closed already, it ends
        without a closing handshake (1006), and `why` goes to the debug log."""
        if self.protocol.state is not State.CLOSED:
            self.debug(why)
            with self.call() as proto:
                proto.receive_eof()

    def closed_exception(self) -> ConnectionClosed:
        """The exception for a call on a connection that is no longer open."""
        proto = self.protocol
        if proto.state is not State.CLOSED and proto.close_sent is not None:
            return ConnectionClosed.for_code(proto.close_sent.code, proto.close_sent.reason)
        return ConnectionClosed.for_code(proto.close_code, proto.close_reason)

    # ---- closing ----------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake unless it has begun, and wait until TCP is closed,
        aborting at `close_timeout`."""
        if self.protocol.state is State.OPEN:
            self._close_deadline = trio.current_time() + self._close_timeout
            with self.call() as proto:
                proto.send_close(code, reason)
            self._resume_reader()  # someone must read the peer's close frame
            with trio.move_on_at(self._close_deadline):
                await self.wait_closed()
            if self.lifecycle is Lifecycle.OPEN:
                self.logger.info("no close frame from the peer within %ss", self._close_timeout)
                self.abort_now()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until TCP is closed."""
        if self.lifecycle is Lifecycle.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    def abort_now(self) -> None:
        """Give up on the connection: the protocol stops, and TCP is dropped, not closed."""
        with self.call() as proto:
            proto.abort()
        if self.lifecycle is Lifecycle.CLOSING:
            self.lifecycle = Lifecycle.ABORTING

    def _set_closed(self) -> None:
        """TCP is closed: the last step of the lifecycle, and the last wake-up."""
        if self.lifecycle is Lifecycle.CLOSED:
            return
        self.lifecycle = Lifecycle.CLOSED
        if self._closed_event is not None:
            self._closed_event.set()
        if self.inbox.discarded:
            self.debug("dropped %d messages that arrived after our close frame", self.inbox.discarded)
        on_closed, self.on_closed = self.on_closed, None  # it may hold the WebSocket: let go
        if on_closed is not None:
            on_closed()
        if self._own_timers is not None:
            self._own_timers.cancel()
        if self._timers is not None and self._timer is not None:
            self._timers.discard(self._timer)
        self.inbox.close()
        self.outbox.stop()
        self.debug("connection closed: %s", self.closed_exception())

    # ---- background tasks -------------------------------------------------------------

    def running(
        self, nursery: trio.Nursery, keepalive: KeepaliveTimers | None, reader_starts: ReaderStarts | None
    ) -> ConnectionRun:
        """`async with core.running(nursery, keepalive, reader_starts) as scope:` runs the
        background tasks in `nursery` (the connection's) around the body, and closes on the
        way out. Keepalive pings join `keepalive` (a server's timers, shared by its
        connections), or timers of this connection's own. The reader is started by
        `reader_starts` (a server's), if it needs one, or else at once. Gives the nursery's
        cancel scope: cancelling it cancels the body and drops the connection (one scope
        per connection, not one more for the body).

        A normal exit closes with 1000, an exception with 1011, and a cancellation (or
        KeyboardInterrupt) drops the TCP connection at once.
        """
        return ConnectionRun(self, nursery, keepalive, reader_starts)

    def _start_tasks(
        self, nursery: trio.Nursery, keepalive: KeepaliveTimers | None, reader_starts: ReaderStarts | None
    ) -> None:
        """The background tasks start in `nursery`, the connection's (see `running`)."""
        self._nursery = nursery
        if reader_starts is not None and self.transport.reads_cancel_safely:
            # The handler's recv() may read the socket itself: a reader is started one
            # pass later only if the handler is elsewhere by then.
            reader_starts.add(self)
        else:
            # At once (a client's body, or a handler over TLS), and it ends at its first
            # step if a recv() reads the socket by then.
            self._start_reader(may_leave=True)
        self.outbox.start(nursery)
        if self._ping_interval is not None:
            if keepalive is None:  # timers of its own, in a task that ends with it
                keepalive = KeepaliveTimers()
                self._own_timers = trio.CancelScope()
                nursery.start_soon(self._run_own_timers, keepalive, self._own_timers)
            self._timers = keepalive
            self._timer = keepalive.add(self, trio.current_time() + self._ping_interval)

    async def _close_as_body_leaves(self, exc: BaseException | None) -> None:
        """The close as the body leaves, inside the nursery: 1000 after a normal exit or a
        `ConnectionClosed`, 1011 after any other exception; none after a cancellation or a
        KeyboardInterrupt (`_end_tasks` drops the connection then)."""
        if exc is None or isinstance(exc, ConnectionClosed):
            await self._close_on_exit(CloseCode.NORMAL_CLOSURE, "")
        elif isinstance(exc, Exception):
            await self._close_on_exit(CloseCode.INTERNAL_ERROR, "internal error")

    async def _end_tasks(self) -> None:
        """As the body leaves, after its close: no task starts any more (those still
        running end with the nursery), and a connection not closed yet is dropped."""
        self._nursery = None  # closed to new tasks now
        self.outbox.detach()
        if self.lifecycle is not Lifecycle.CLOSED:
            self.abort_now()
            try:
                await self.transport.abort()
            finally:
                # A cancelled body's scope is still cancelled here, so the abort raises
                # Cancelled once the stream is closed: the connection is closed all the
                # same, and must say so.
                self._set_closed()

    async def _close_on_exit(self, code: int, reason: str) -> None:
        """`close()` as the body leaves, unless TCP is closed already: then the nursery's
        exit is the checkpoint, and `close()` would only add a scheduler pass."""
        if self.lifecycle is not Lifecycle.CLOSED:
            await self.close(code, reason)

    async def _run_own_timers(self, timers: KeepaliveTimers, scope: trio.CancelScope) -> None:
        with scope:
            await timers.run()

    def _start_reader(self, *, may_leave: bool = False) -> None:
        """Start a reader task while the body runs (`_nursery` is None from the moment it
        leaves, so before the nursery can close). One that `may_leave` ends at its first
        step if a recv() reads the socket by then."""
        if self._nursery is not None:
            self._reading = trio.CancelScope()
            self._nursery.start_soon(self._reader, self._reading, may_leave)

    def ensure_reader(self) -> None:
        """Start the reader, unless someone reads the socket already (the reader, or a
        recv()), or the protocol is closed: then a reader was started or woken already if
        TCP needs one to close it, and a connection closed at once needs none."""
        if self._reading is None and not self.receiving and self.lifecycle is Lifecycle.OPEN:
            self._start_reader()

    def _resume_reader(self) -> None:
        """Someone must read the socket again: the reader, standing by or started anew,
        unless a recv() is reading it (it resumes the reader when it leaves)."""
        if self._reading is not None:
            self.inbox.wake_reader()
        else:
            self.ensure_reader()

    async def _reader(self, reading: trio.CancelScope, may_leave: bool) -> None:
        """Read and parse until the protocol is closed, then close the TCP connection; or,
        if it `may_leave`, end at once when a recv() reads the socket already."""
        if may_leave and self.receiving:
            # The body went straight to recv(), which reads the socket: no reader is needed
            # until it leaves recv(), which then starts one (`_resume_reader`).
            self._reading = None
            return
        try:
            with reading:  # cancelled when the protocol closes while this waits
                await self._read_until_closed()
        finally:
            self._lost("TCP connection lost without a close frame")
        await self._close_transport()

    async def _read_until_closed(self) -> None:
        """The reader's loop, until the protocol is closed (or the stream ended)."""
        proto = self.protocol
        transport = self.transport
        inbox = self.inbox
        data: bytes | bytearray = b""
        while True:
            delivered = self._parse(data)
            data = b""
            if proto.state is State.CLOSED:
                return
            if self._parsing_paused():
                proto.stats.inbox_pauses += 1
                await inbox.wait_for_room()
                continue
            if delivered and inbox.low and transport.reads_cancel_safely:
                # A recv() was waiting: it will likely be back for the next message
                # before anything arrives, and then reads the socket itself, one task
                # switch less per message. Stand by until it leaves recv() (below the low
                # marks, every message it takes wakes the reader).
                self._handed_over = True
                await inbox.wait_for_room()
            if self._handed_over:
                while self.receiving:  # a recv() reads: stand by until it leaves
                    await inbox.wait_for_room()
                self._handed_over = False  # it left: the reader reads again
                continue
            try:
                data = await transport.receive_some()
            except CLOSED_STREAM_ERRORS:
                return
            if not data:
                self._eof = True
                return

    def _close_at_once(self) -> bool:
        """Close TCP right away, without a task, when nothing stands in the way: a socket
        that can be closed at once, nothing left to write, this side closes first, and
        nothing unread (so the close is a FIN). A task waiting on the socket wakes with
        ClosedResourceError. False, having closed nothing, when the reader's polite way is
        needed."""
        transport = self.transport
        if not transport.closes_at_once or self.buffered or not self.protocol.closes_tcp_first:
            return False
        if not transport.nothing_to_read():
            self._unread_at_close = True
            return False
        transport.close_now()
        self.outbox.stop()
        self._set_closed()
        return True

    async def _close_transport(self) -> None:
        """Once the protocol is closed: flush, close TCP the polite way, then mark closed.
        One deadline bounds it all: past it, the close in progress is cut short and the
        stream closed forcefully (a cancelled `aclose` still closes)."""
        if self.lifecycle is Lifecycle.CLOSED:
            return  # closed at once already (`_close_at_once`)
        transport = self.transport
        transport.stop_writing_through()  # from here on only the writer writes
        if self._close_deadline == float("inf"):
            self._close_deadline = trio.current_time() + self._close_timeout
        closed = False
        with trio.move_on_at(self._close_deadline):
            if self.lifecycle is not Lifecycle.ABORTING:
                await self.wait_flushed()
                if not self.protocol.closes_tcp_first:
                    if not transport.closes_after_handshake:
                        await self._drain_to_eof()  # the peer closes first: wait for its FIN
                elif not self._unread_at_close and transport.nothing_to_read():
                    pass  # closed at once below: a FIN, since nothing is left unread
                elif await transport.half_close():
                    # Unread data would turn the close into a RST, which could destroy
                    # the close frame before the peer reads it: half-close, then read to
                    # EOF. A stream that cannot half-close (TLS) is closed at once.
                    await self._drain_to_eof()
            self.outbox.stop()
            closed = True  # from here the close itself runs (a cancelled one still closes)
            if self.lifecycle is Lifecycle.ABORTING:
                await transport.abort()
            else:
                await transport.aclose()
        if not closed:
            # The deadline came while the output would not drain (a peer that never
            # reads) or its FIN never came: the connection is dropped, not left open. A
            # plain socket is closed at once, so that a recv() it wakes finds it CLOSED.
            self.outbox.stop()
            if transport.closes_at_once:
                transport.close_now()
            else:
                await transport.abort()
        self._set_closed()

    async def _drain_to_eof(self) -> None:
        """Read and drop what the peer still sends, until it closes its side; first, wait
        until no recv() waits on the socket (what it reads, the closed protocol drops)."""
        while self.receiving and not self._eof:
            await self.inbox.wait_for_room()  # a recv() that leaves wakes the reader
        with contextlib.suppress(*CLOSED_STREAM_ERRORS, OSError):
            while not self._eof and await self.transport.receive_some():
                pass

    def _parsing_paused(self) -> bool:
        """Whether the reader must wait before parsing further: while the connection is
        open, a full inbox (`max_queue` messages or `max_queue_bytes`).

        The output buffer does not pause parsing: what the peer can make us write is
        bounded in the protocol (one pending pong, one close frame), and pausing on our
        own sends would starve the pongs and close frame of a slow but live peer.
        """
        return self.protocol.state is State.OPEN and self.inbox.full

    async def receive(self) -> Item | None:
        """The next item for `recv()`; None once the inbox is closed and empty.

        While the socket is handed over (from the start, where reads are safe to cancel;
        and after the reader delivered the last message to a `recv()` that was waiting,
        while it stands by), this task reads and parses the socket itself, so that a
        message wakes its handler directly instead of the reader first. Another task's
        `recv()` meanwhile waits on the inbox as usual. A cancelled wait takes nothing.
        """
        inbox = self.inbox
        while True:
            if self._handed_over and not self.receiving and self.lifecycle is Lifecycle.OPEN:
                break
            item = inbox.take_nowait()
            if item is not None or inbox.closed:
                return item
            await inbox.wait()
        # Read and parse the socket in this task until an item comes (inline, not in a
        # helper: one coroutine frame less held by every idle connection).
        self.receiving = True
        try:
            self._parse(b"")  # what a paused parse left in the protocol's buffer
            while True:
                item = inbox.take_nowait()
                if item is not None or inbox.closed:
                    return item
                # No cancel scope of its own: if the protocol closes meanwhile, the close of
                # TCP wakes this wait (ClosedResourceError), or the peer's last bytes do.
                try:
                    data = await self.transport.receive_some()
                except CLOSED_STREAM_ERRORS:
                    data = b""
                if not data:
                    self._eof = True
                    self._lost("TCP connection lost without a close frame")
                    continue
                self._parse(data)
        finally:
            self.receiving = False
            self._resume_reader()  # unless a recv() is back first

    def _parse(self, data: bytes | bytearray) -> bool:
        """Feed `data`, then turn buffered bytes into events, one at a time, until parsing
        must pause.

        Every message received before the peer's close frame is kept: backpressure stops
        the parsing, it never discards. Only once our own close frame is out (the handler
        chose to stop) are messages past `max_queue` dropped, so that the closing
        handshake is not stuck behind them. Returns whether a waiting `recv()` was given
        a message.
        """
        inbox = self.inbox
        got_message = False
        stream = self.streaming  # no other task runs during this loop
        with self.call() as proto:
            if data:
                proto.feed_data(data)
            # `_parsing_paused()`, written out: this runs once per message.
            while proto.state is not State.OPEN or not inbox.full:
                event = proto.next_event(stream=stream)
                if event is None:
                    break
                kind = type(event)
                if kind is str or kind is bytes or kind is Fragment:
                    inbox.put(event, closing=proto.state is State.CLOSING)  # type: ignore[arg-type]
                    got_message = True
                elif kind is Pong:
                    rtt = self.pings.answered(event.payload, trio.current_time())  # type: ignore[union-attr]
                    if rtt is not None:
                        proto.stats.ping_rtt.observe(rtt)
        return got_message and inbox.wake_getters()

    async def send_fragmented(self, fragments: Iterable[Data] | AsyncIterable[Data]) -> None:
        """Send one message a frame per item, after any fragmented send in progress; an
        interruption once a frame is out fails the connection (1011)."""
        while self.sending_fragments is not None:
            await self.sending_fragments.wait()
        done = self.sending_fragments = trio.Event()
        started = False
        try:
            previous: Data | None = None
            async for fragment in _any_aiter(fragments):
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)) and is_bytes_like(fragment):
                    fragment = memoryview(fragment)
                if not isinstance(fragment, (str, bytes, bytearray, memoryview)):
                    raise TypeError(f"cannot send a fragment of type {type(fragment).__name__}")
                if previous is not None:
                    await self.wait_for_room()
                    with self.call(require_open=True) as proto:
                        proto.send(previous, fin=False)
                    started = True
                previous = fragment
            if previous is not None:
                await self.wait_for_room()
                with self.call(require_open=True) as proto:
                    proto.send(previous, fin=True)
        except BaseException:
            if started and self.protocol.state is State.OPEN:
                self.logger.error("fragmented send interrupted; failing the connection")
                with self.call() as proto:
                    proto.fail(CloseCode.INTERNAL_ERROR, "incomplete fragmented message")
            raise
        finally:
            self.sending_fragments = None
            done.set()
        await trio.lowlevel.checkpoint()

    def keepalive(self, now: float) -> float | None:
        """The keepalive work due at `now`, for the `KeepaliveTimers` that run it: a ping
        every `ping_interval`, and failing the connection (1011) when a pong is more than
        `ping_timeout` late. Returns when it is next due, or None once the connection is
        closing. `latency` is the round trip of the last keepalive ping answered.
        """
        interval, timeout = self._ping_interval, self._ping_timeout
        if interval is None or self.protocol.state is not State.OPEN:
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
                self.protocol.stats.keepalive_failures += 1
                with self.call() as proto:
                    proto.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                return None
            self.pings.forget(pending.payload)  # answered, or unanswered with no timeout
        pending = self._keepalive_ping = self.pings.add(self.pings.new_payload(), now)
        with self.call() as proto:
            proto.send_ping(pending.payload)
        return now + (interval if timeout is None else min(interval, timeout))


async def _any_aiter(items: Iterable[Data] | AsyncIterable[Data]) -> AsyncIterator[Data]:
    """Iterate a sync or async iterable the same way."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class ConnectionRun:
    """What `ConnectionCore.running()` returns: an async context manager written out (one
    is entered per connection, and a generator-based one costs several times as much)."""

    __slots__ = ("_core", "_keepalive", "_nursery", "_reader_starts")

    def __init__(
        self,
        core: ConnectionCore,
        nursery: trio.Nursery,
        keepalive: KeepaliveTimers | None,
        reader_starts: ReaderStarts | None,
    ) -> None:
        self._core = core
        self._nursery = nursery
        self._keepalive = keepalive
        self._reader_starts = reader_starts

    async def __aenter__(self) -> trio.CancelScope:
        self._core._start_tasks(self._nursery, self._keepalive, self._reader_starts)
        return self._nursery.cancel_scope

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The body's exception (or the close's, in its place) goes on to the nursery, whose
        # tasks end after this: cancelled, or finished once the connection is closed.
        try:
            await self._core._close_as_body_leaves(exc)
        finally:
            await self._core._end_tasks()
