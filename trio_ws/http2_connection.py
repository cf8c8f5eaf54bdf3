"""`Http2Connection`: one HTTP/2 connection over a trio stream (h2 parses and frames), and
`Http2Stream`, the `Transport` of one RFC 8441 WebSocket (or one plain request) on it.

Who does what:

- **The reader** (`serve`'s own task) feeds the peer's bytes to the `FrameGuard`, then to
  h2, and hands each event to its stream. It stops reading while more than
  `output_buffer` bytes wait for the socket: a peer that does not read its PING and
  SETTINGS answers stops getting them.
- **The writer** is the only task that writes the socket. Every h2 call is followed by
  `_collect()`, which moves h2's output into one buffer and wakes the writer: frames
  leave in the order they were made, many streams' frames in one write. What a stream
  sends is framed by the writer too, when it runs (`send_nowait` only takes the bytes):
  a burst of small messages becomes one DATA frame. A stream's END_STREAM frames its
  pending bytes first; a reset drops them.
- **Who a client's or server's stream is**: a server's streams are opened by the peer,
  and each runs `on_stream` in a task of the connection's nursery; a client's are opened
  by `open_stream` and live in the caller's tasks.
- **Flow control is backpressure.** A stream sends only what its window and the
  connection's allow (`send_nowait`), else waits for a WINDOW_UPDATE. What a peer sends
  on a stream is acknowledged only as its WebSocket reads it, so a full inbox holds back
  that stream's WINDOW_UPDATE; the connection window is acknowledged on arrival, so a
  slow stream never stalls its neighbours.
- **Closing.** A stream ends with END_STREAM (the WebSocket's closing handshake), or
  RST_STREAM (an abort). `go_away()` sends GOAWAY and refuses new streams; once the last
  stream is released the connection says GOAWAY again, flushes, and ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio
from hyperframe.frame import GoAwayFrame

from .http2_guard import FrameGuard, Http2Abuse, RateLimit
from .http2_limits import Http2Limits
from .http2_messages import Header
from .sockets import receive_some, send_all, shut_down_writing
from .transport import Transport

__all__ = ["Http2Connection", "Http2Stream"]

LINGER = 2.0
"""Seconds at most that a connection we close reads on, until the peer closes too (see
`Http2Connection._linger`); close_timeout, if shorter, bounds it instead."""
_EAGER_READS = 4  # reads in a row that found data before one yields (as the socket transport)


class Http2Stream(Transport):
    """One stream of an `Http2Connection`, as a `Transport`: what a WebSocket over it
    reads, writes and closes."""

    __slots__ = (
        "_buffer",
        "_eager_reads",
        "_lot",
        "_pending",
        "_unacknowledged",
        "connection",
        "headers",
        "local_ended",
        "released",
        "remote_ended",
        "reset_code",
        "stream_id",
    )

    reads_cancel_safely = True  # a cancelled wait has taken nothing from the buffer
    closes_after_handshake = True

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        super().__init__(connection.stream)
        self.connection = connection
        self.stream_id = stream_id
        # True while its WebSocket is open; False once it is closed or aborted, and only
        # the stream's end is left (what the rapid reset count looks at).
        self.writes_through = True
        self.headers: list[Header] | None = None
        """The peer's header fields (its request, or its response), once they came."""
        self.remote_ended = False  # the peer's END_STREAM came
        self.local_ended = False  # ours went
        self.reset_code: int | None = None  # set once reset, by either side (or the connection lost)
        self.released = False  # no one uses it any more: what still comes is dropped
        self._buffer = bytearray()  # received, not yet read
        self._pending = bytearray()  # taken by send_nowait, not yet framed (see Http2Connection)
        self._unacknowledged = 0  # bytes read, not yet given back to the peer's window
        self._eager_reads = 0
        self._lot = trio.lowlevel.ParkingLot()  # the task reading, or waiting for the peer's end

    # ---- what the connection's reader calls --------------------------------------------

    def deliver(self, data: bytes) -> None:
        """The peer's DATA for this stream."""
        self._buffer += data
        if self._lot:  # an empty lot's unpark_all costs eight times the test
            self._lot.unpark_all()

    def wake(self) -> None:
        """Something changed (headers, END_STREAM, a reset): whoever waits looks again."""
        self._lot.unpark_all()

    @property
    def gone(self) -> bool:
        """Nothing more can be sent on it."""
        return self.reset_code is not None or self.local_ended or self.connection.closed

    def why_gone(self) -> str:
        """What ended the stream, for an error message."""
        if self.connection.lost_because is not None:
            return f"HTTP/2 connection lost: {self.connection.lost_because}"
        return f"HTTP/2 stream reset (error code {self.reset_code})"

    async def wait_for_headers(self) -> list[Header]:
        """The peer's header fields, once they come; BrokenResourceError if it resets first."""
        while self.headers is None:
            if self.reset_code is not None:
                raise trio.BrokenResourceError(self.why_gone())
            await self._lot.park()
        return self.headers

    # ---- Transport -----------------------------------------------------------------------

    async def receive_some(self) -> bytes | bytearray:
        if self._buffer:
            self._eager_reads += 1
            if self._eager_reads >= _EAGER_READS:  # a flooding peer must not starve the others
                self._eager_reads = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._eager_reads = 0
            while not self._buffer:
                if self.remote_ended:  # the peer's end came first: a reset after it loses nothing
                    return b""
                if self.reset_code is not None:
                    raise trio.BrokenResourceError(self.why_gone())
                await self._lot.park()
        data, self._buffer = self._buffer, bytearray()
        self.connection.consumed(self, len(data))
        return data

    def write_nowait(self, data: bytes | bytearray | memoryview) -> int:
        if not self.writes_through:
            return 0
        return self.connection.send_nowait(self, data)

    def stop_writing_through(self) -> None:
        self.writes_through = False  # called once the WebSocket's closing handshake is done

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of `data` as the windows allow, waiting for WINDOW_UPDATEs (and for
        the connection's output to drain) in between."""
        view = memoryview(data)
        while view:
            sent = self.connection.send_nowait(self, view)
            if sent:
                view = view[sent:]
            elif self.gone:
                raise trio.BrokenResourceError("the HTTP/2 stream is closed")
            else:
                await self.connection.wait_to_send()

    def nothing_to_read(self) -> bool:
        return not self._buffer

    async def half_close(self) -> bool:
        self.connection.end_stream(self)
        return True

    async def aclose(self) -> None:
        """A server's: END_STREAM, then wait for the peer's (the caller bounds the wait); a
        peer that never ends its side is reset. A client's, once the closing handshake is
        done: RST_STREAM with NO_ERROR. Everything has crossed by then, and some servers
        (hypercorn) forget a stream once they have ended it and fail their whole
        connection on a DATA frame for it, an END_STREAM included."""
        self.writes_through = False
        if self.connection.client:
            if not (self.local_ended and self.remote_ended):
                self.connection.reset(self, h2.errors.ErrorCodes.NO_ERROR)
            self.connection.release(self)
            return
        try:
            self.connection.end_stream(self)
            while not (self.remote_ended or self.reset_code is not None or self.connection.closed):
                await self._lot.park()
        finally:
            if not self.remote_ended:
                self.connection.reset(self, h2.errors.ErrorCodes.CANCEL)
            self.connection.release(self)

    async def abort(self) -> None:
        self.writes_through = False
        self.connection.reset(self, h2.errors.ErrorCodes.CANCEL)
        self.connection.release(self)


StreamHandler = Callable[[Http2Stream], Awaitable[None]]


class Http2Connection:
    """One HTTP/2 connection, server or client side, over `stream` (TLS or plain TCP)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        limits: Http2Limits,
        logger: logging.Logger,
        close_timeout: float,
        first_stream_timeout: float | None = None,
        initial_data: bytes = b"",
    ) -> None:
        self.stream = stream
        self.client = client
        self.limits = limits
        self.logger = logger
        self.close_timeout = close_timeout
        """Seconds the last frames (the final GOAWAY) may take to leave before the socket
        is closed regardless."""
        # Until its first stream, a connection is idle for at most `first_stream_timeout`
        # (a server's open_timeout: as long as an HTTP/1.1 client may take to send its
        # request), then `idle_timeout`.
        self._idle_after = _least(first_stream_timeout, limits.idle_timeout)
        self.streams: dict[int, Http2Stream] = {}
        """Streams in use: opened and not yet released (a reset one counts until released)."""
        self.closed = False
        """The connection is gone, or going: nothing more is sent."""
        self.going_away = False
        """GOAWAY was sent or received: no new stream."""
        self.settings_received = trio.Event()
        """Set when the peer's first SETTINGS came (a client reads Extended CONNECT there)."""
        self.lost_because: str | None = None
        """Why the connection ended, once it has: what a stream's error then says."""
        self.limit_passed: str | None = None
        """The `Http2Limits` field the peer went past, if that is how the connection ended."""
        self._guard = FrameGuard(limits, server=not client)
        self._early_resets = RateLimit(
            "max_resets_per_window",
            limits.max_resets_per_window,
            limits.rate_window,
            "streams reset mid-exchange or refused",
        )
        self._initial_data = initial_data
        config = h2.config.H2Configuration(client_side=client, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        settings: dict[h2.settings.SettingCodes, int] = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            h2.settings.SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
        }
        if client:
            settings[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        else:
            settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.h2.local_settings = h2.settings.Settings(client=client, initial_values=settings)
        # Settings given as initial values are never "changed", so h2 does not pass them to
        # its decoder: done here.
        self.h2.decoder.max_header_list_size = limits.max_header_list_size
        self.h2.decoder.max_allowed_table_size = limits.header_table_size
        self.h2.initiate_connection()
        if limits.connection_window > 65535:
            self.h2.increment_flow_control_window(limits.connection_window - 65535)
        self._unacknowledged = 0  # connection-level bytes received, not yet given back
        self._out = bytearray()  # frames for the writer
        self._pending: list[Http2Stream] = []  # streams with bytes taken, not yet framed
        self._pending_bytes = 0
        self._finishing = False  # the final GOAWAY is queued: the writer ends after it
        self._work = trio.lowlevel.ParkingLot()  # the writer, waiting for frames
        self._room = trio.lowlevel.ParkingLot()  # tasks waiting for a window or for room
        self._peer_left = False  # its end of stream came (or a reset): nothing to linger for
        self._failed = False  # ended by a connection error of the peer's
        self._reading = trio.CancelScope()
        self._idle_watch = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._idle_since = trio.current_time()
        self._collect()

    # ---- running ---------------------------------------------------------------------

    async def serve(self, on_stream: StreamHandler | None) -> None:
        """Run the connection until it ends: read, write, and run `on_stream(stream)` in a
        task of its own for each stream the peer opens (a server's requests). Returns once
        every stream's task has finished and the socket is closed."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                if self._idle_after is not None:
                    nursery.start_soon(self._close_when_idle, self._idle_watch)
                with self._reading:
                    await self._read_loop(on_stream)
                self._lose_all()
        finally:
            self._nursery = None
            self._lose_all()
            if self._failed and not self._peer_left:
                with trio.move_on_after(min(self.close_timeout, LINGER)):
                    await self._linger()
            await trio.aclose_forcefully(self.stream)

    async def _linger(self) -> None:
        """After a connection error: half-close, then read and drop what the peer still
        sends until it closes. A close with its data unread would be a RST, which can
        destroy our GOAWAY, and the reason it gives, before the peer reads it."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if isinstance(self.stream, trio.abc.HalfCloseableStream):
                await shut_down_writing(self.stream)
            while await receive_some(self.stream):
                pass

    async def _read_loop(self, on_stream: StreamHandler | None) -> None:
        data: bytes | bytearray = self._initial_data
        self._initial_data = b""
        while True:
            if data and not self._receive(data, on_stream):
                return
            # A peer that does not read what we answer (PING, SETTINGS acknowledgements)
            # is not read either, until it does.
            while len(self._out) + self._pending_bytes >= self.limits.output_buffer and not self.closed:
                await self._room.park()
            if self.closed:
                return
            try:
                data = await receive_some(self.stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._peer_left = True
                self.lost_because = self.lost_because or "the connection was reset"
                return
            if not data:
                self._peer_left = True
                self.lost_because = self.lost_because or "the peer closed the connection"
                return

    def _receive(self, data: bytes | bytearray, on_stream: StreamHandler | None) -> bool:
        """Feed the peer's bytes and act on the events; False once the connection ends."""
        try:
            cuts = self._guard.feed(data, trio.current_time())
            if not cuts:  # the usual read: all of it to h2 at once, uncopied
                events = self.h2.receive_data(data)
            else:
                events = []
                start = 0
                for end in [*cuts, len(data)]:
                    if end > start:
                        events += self.h2.receive_data(bytes(data[start:end]))
                    start = end
                    if end in cuts:
                        self._keep_open_after_goaway(events)
            for event in events:
                self._on_event(event, on_stream)
        except Http2Abuse as exc:
            self.limit_passed = exc.limit
            self.logger.warning("HTTP/2 peer went past a limit: %s; closing its connection", exc)
            self._fail(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, str(exc))
            return False
        except h2.exceptions.ProtocolError as exc:
            self.logger.info("HTTP/2 protocol error from the peer: %s", exc)
            code = getattr(exc, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            self._fail(code, str(exc))
            return False
        self._collect()
        return True

    def _keep_open_after_goaway(self, events: list[h2.events.Event]) -> None:
        """h2 treats a GOAWAY it receives as the end of the whole connection, and refuses
        every frame after it. RFC 9113 section 6.8 lets the streams it names carry on (a
        server's drain): so after a GOAWAY without an error, h2's connection state is set
        back to open. The GOAWAY itself still counts: no new stream is opened."""
        last = events[-1] if events else None
        if isinstance(last, h2.events.ConnectionTerminated) and not last.error_code:
            opened = (
                h2.connection.ConnectionState.CLIENT_OPEN
                if self.client
                else h2.connection.ConnectionState.SERVER_OPEN
            )
            self.h2.state_machine.state = opened

    def _on_event(self, event: h2.events.Event, on_stream: StreamHandler | None) -> None:
        kind = type(event)
        if kind is h2.events.DataReceived:
            assert isinstance(event, h2.events.DataReceived)
            self._on_data(event)
        elif kind is h2.events.RequestReceived or kind is h2.events.ResponseReceived:
            assert isinstance(event, (h2.events.RequestReceived, h2.events.ResponseReceived))
            self._on_headers(event.stream_id, list(event.headers or ()), on_stream)
        elif kind is h2.events.StreamEnded:
            assert isinstance(event, h2.events.StreamEnded)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.remote_ended = True
                stream.wake()
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            stream = self.streams.get(event.stream_id)
            if not self.client and (stream is None or (stream.writes_through and not stream.local_ended)):
                # Reset while its exchange was under way (or refused, and reset all the
                # same): the rapid reset attack is made of these, answered or not. A
                # WebSocket reset once its closing handshake is done (how a client of
                # ours closes) is not.
                self._early_resets.count(trio.current_time())
            if stream is not None:
                stream.reset_code = int(event.error_code or 0)
                stream.wake()
                self._room.unpark_all()
        elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
            self._room.unpark_all()  # more room to send, on one stream or on all
            if kind is h2.events.RemoteSettingsChanged:
                self.settings_received.set()
        elif kind is h2.events.ConnectionTerminated:
            assert isinstance(event, h2.events.ConnectionTerminated)
            self.going_away = True
            if event.error_code:
                self.logger.info("HTTP/2 peer closed the connection: error code %s", event.error_code)
                self.lost_because = self.lost_because or f"the peer's GOAWAY, error code {event.error_code}"
                self._lose_all()
            else:
                for stream in list(self.streams.values()):
                    # Streams it never processed were never seen: they are lost, not closed.
                    if event.last_stream_id is not None and stream.stream_id > event.last_stream_id:
                        stream.reset_code = int(h2.errors.ErrorCodes.REFUSED_STREAM)
                        stream.wake()
            self._finish_if_done()

    def _on_headers(self, stream_id: int, headers: list[Header], on_stream: StreamHandler | None) -> None:
        if self.client:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.headers = headers
                stream.wake()
            return
        if self.going_away or len(self.streams) >= self.limits.max_concurrent_streams or on_stream is None:
            # Streams whose handlers still run count, reset or not: a peer that opens and
            # resets streams in a loop cannot pile up handlers (CVE-2023-44487), and each
            # refusal counts as a reset before the answer. (A stream the peer reset in the
            # same read is closed already: nothing to refuse.)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            if not self.going_away:
                self._early_resets.count(trio.current_time())
            return
        stream = Http2Stream(self, stream_id)
        stream.headers = headers
        self.streams[stream_id] = stream
        self._idle_after = self.limits.idle_timeout  # it had a stream: the idle timeout from now on
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, on_stream, stream)

    async def _run_stream(self, on_stream: StreamHandler, stream: Http2Stream) -> None:
        """One stream's task: whatever happens to it stays with it (its neighbours, and
        the connection, carry on)."""
        try:
            await on_stream(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.logger.debug("HTTP/2 stream %d ended: %r", stream.stream_id, exc)
        except Exception:
            self.logger.exception("unexpected error on HTTP/2 stream %d", stream.stream_id)
        finally:
            if not stream.released:
                await stream.abort()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        size = event.flow_controlled_length or 0
        # The connection's window is given back as data arrives: what a stream holds is
        # bounded by its own window, and a slow stream must not stall the others.
        self._unacknowledged += size
        if self._unacknowledged >= self.limits.connection_window // 4:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # unless the connection is closed
                self.h2.increment_flow_control_window(self._unacknowledged)
            self._unacknowledged = 0
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.released:
            return  # nobody will read it (the stream is reset): only the connection's window matters
        if event.data:
            stream.deliver(event.data)
        elif size:
            self.consumed(stream, size)  # padding only

    # ---- what streams call ---------------------------------------------------------------

    def consumed(self, stream: Http2Stream, size: int) -> None:
        """`stream`'s reader took `size` bytes: the peer may send that much more on it
        (given back once half the window is used, so as not to send an update per frame)."""
        stream._unacknowledged += size
        if stream._unacknowledged * 2 >= self.limits.stream_window:
            if not stream.remote_ended and stream.reset_code is None and not self.closed:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.increment_flow_control_window(stream._unacknowledged, stream.stream_id)
                self._collect()
            stream._unacknowledged = 0

    def send_nowait(self, stream: Http2Stream, data: bytes | bytearray | memoryview) -> int:
        """Take as much of `data` as the windows and the output buffer allow now; the
        bytes taken (0 when none may go, or the stream is gone). They are framed when the
        writer runs, so that a burst of small sends on a stream becomes one DATA frame (as
        many as they take of the peer's frame size), not one frame each: the peer parses
        fewer frames, and so do we."""
        if stream.gone:
            return 0
        pending = self._pending_bytes
        try:
            window = min(
                self.h2.local_flow_control_window(stream.stream_id) - len(stream._pending),
                self.h2.outbound_flow_control_window - pending,
            )
        except h2.exceptions.ProtocolError:
            return 0
        allowed = min(len(data), self.limits.output_buffer - len(self._out) - pending, window)
        if allowed <= 0:
            return 0
        if not stream._pending:
            self._pending.append(stream)
        stream._pending += data if allowed == len(data) else memoryview(data)[:allowed]
        self._pending_bytes = pending + allowed
        if self._work:
            self._work.unpark_all()
        return allowed

    def _frame_pending(self, only: Http2Stream | None = None) -> None:
        """Frame what `send_nowait` took (every stream's, or `only` this one's) as DATA
        frames of at most the peer's frame size, in the order the streams sent."""
        for stream in [only] if only is not None else self._pending:
            data, stream._pending = stream._pending, bytearray()
            self._pending_bytes -= len(data)
            frame_size = self.h2.max_outbound_frame_size
            view = memoryview(data)
            try:
                for start in range(0, len(view), frame_size):
                    self.h2.send_data(stream.stream_id, view[start : start + frame_size].tobytes())
            except h2.exceptions.ProtocolError:
                pass  # the stream closed meanwhile: what went, went
        if only is None:
            self._pending.clear()
        elif only in self._pending:
            self._pending.remove(only)
        self._collect()

    async def wait_to_send(self) -> None:
        """Wait until a window opens, the output drains, or a stream changes state."""
        await self._room.park()

    def send_headers(self, stream: Http2Stream, headers: list[Header], *, end_stream: bool = False) -> None:
        """Send a header block on `stream` (a response); BrokenResourceError if the
        stream is gone (the peer reset it meanwhile)."""
        if stream.gone:
            raise trio.BrokenResourceError("the HTTP/2 stream is closed")
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:  # closed meanwhile, by the peer or the connection
            raise trio.BrokenResourceError("the HTTP/2 stream is closed") from exc
        if end_stream:
            stream.local_ended = True
        self._collect()

    def end_stream(self, stream: Http2Stream) -> None:
        """Our END_STREAM on `stream`, unless it went already or the stream is gone."""
        if stream.gone:
            return
        if stream._pending:
            self._frame_pending(stream)  # its data first
        stream.local_ended = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.end_stream(stream.stream_id)
        self._collect()

    def reset(self, stream: Http2Stream, code: int) -> None:
        """RST_STREAM on `stream`, unless it is closed already; what it had not framed yet
        is dropped (a reset discards it anyway)."""
        if stream._pending:
            self._pending_bytes -= len(stream._pending)
            stream._pending = bytearray()
            self._pending.remove(stream)
        if stream.reset_code is None and not self.closed:
            stream.reset_code = int(code)
            if not (stream.local_ended and stream.remote_ended):
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.reset_stream(stream.stream_id, code)
                self._collect()
        stream.wake()

    def release(self, stream: Http2Stream) -> None:
        """No one uses `stream` any more: it no longer counts against the limit."""
        if stream.released:
            return
        stream.released = True
        stream._buffer = bytearray()
        self.streams.pop(stream.stream_id, None)
        if not self.streams:
            self._idle_since = trio.current_time()
            if self.client:
                self.go_away()  # a client's connection closes with the last of its streams
        self._finish_if_done()

    def open_stream(self, headers: list[Header]) -> Http2Stream:
        """A client's new stream, its request headers sent."""
        if self.closed or self.going_away:
            raise trio.BrokenResourceError("the HTTP/2 connection is closing")
        stream_id = self.h2.get_next_available_stream_id()
        stream = Http2Stream(self, stream_id)
        self.streams[stream_id] = stream
        try:
            self.h2.send_headers(stream_id, headers)
        except BaseException:
            self.streams.pop(stream_id, None)
            raise
        self._collect()
        return stream

    @property
    def may_open_stream(self) -> bool:
        """Whether the peer allows one more stream of ours now (a client's question)."""
        return (
            not self.closed
            and not self.going_away
            and self.h2.open_outbound_streams < self.h2.remote_settings.max_concurrent_streams
        )

    # ---- closing ---------------------------------------------------------------------

    def go_away(self) -> None:
        """GOAWAY: the peer opens no new stream; the open ones carry on. The connection
        ends once the last of them is released."""
        if self.going_away or self.closed:
            self.going_away = True
            self._finish_if_done()
            return
        self.going_away = True
        self._collect()
        # Written as a frame of its own, not through h2: h2's GOAWAY would close the
        # connection to every open stream too.
        frame = GoAwayFrame(stream_id=0, last_stream_id=self.h2.highest_inbound_stream_id, error_code=0)
        self._out += frame.serialize()
        self._work.unpark_all()
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        """Going away with no stream left: the final GOAWAY, then the writer ends it all."""
        if self.going_away:
            self._idle_watch.cancel()
        if self.going_away and not self.streams and not self._finishing:
            self._finishing = True
            if not self.closed:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.close_connection()
                self._collect()
            self._work.unpark_all()

    def _fail(self, code: int, why: str) -> None:
        """A connection error: GOAWAY with `code`, and every stream lost."""
        self._failed = True
        self.lost_because = self.lost_because or why
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(error_code=code, additional_data=why.encode()[:256])
        self._collect()
        self.going_away = True
        self._lose_all()
        self._finishing = True
        self._work.unpark_all()

    def _lose_all(self) -> None:
        """The connection is gone: every stream fails, every waiter wakes."""
        if self.closed:
            return
        self.closed = True
        self.going_away = True
        self.settings_received.set()  # a client waiting for them learns that none will come
        self._idle_watch.cancel()
        for stream in self._pending:  # nothing more will be framed
            stream._pending = bytearray()
        self._pending.clear()
        self._pending_bytes = 0
        for stream in list(self.streams.values()):
            if stream.reset_code is None:
                stream.reset_code = int(h2.errors.ErrorCodes.CANCEL)
            stream.wake()
        self._room.unpark_all()
        self._work.unpark_all()

    async def _close_when_idle(self, scope: trio.CancelScope) -> None:
        """GOAWAY once no stream has been open for a while (see `_idle_after`); cancelled,
        through `scope`, once the connection goes away."""
        with scope:
            while not self.going_away and self._idle_after is not None:
                if self.streams:
                    await trio.sleep(self._idle_after)
                elif trio.current_time() >= self._idle_since + self._idle_after:
                    self.logger.debug("HTTP/2 connection idle for %ss: closing it", self._idle_after)
                    self.go_away()
                else:
                    await trio.sleep_until(self._idle_since + self._idle_after)

    # ---- writing ---------------------------------------------------------------------

    def _collect(self) -> None:
        """Move what h2 has framed to the writer's buffer, and wake the writer."""
        data = self.h2.data_to_send()
        if data:
            self._out += data
            if self._work:
                self._work.unpark_all()

    async def _write_loop(self) -> None:
        try:
            while True:
                if self._pending:
                    self._frame_pending()
                if self._out:
                    data, self._out = self._out, bytearray()
                    if self._finishing or self.closed:
                        # The last frames: a peer that does not read them is not waited for.
                        with trio.move_on_after(self.close_timeout):
                            await send_all(self.stream, data)
                    else:
                        await send_all(self.stream, data)
                    if self._room:
                        self._room.unpark_all()
                elif self._finishing or self.closed:
                    break
                else:
                    await self._work.park()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.lost_because = self.lost_because or "the connection broke while writing"
            self._lose_all()
        finally:
            # Nothing more will be written: reading on would only serve streams that can
            # no longer answer.
            self._lose_all()
            self._reading.cancel()


def _least(*seconds: float | None) -> float | None:
    """The shortest of the timeouts given (None: no limit)."""
    given = [value for value in seconds if value is not None]
    return min(given) if given else None
