"""`WebSocket`: one WebSocket connection, on the server or the client side.

`WebSocket` is the public face: receiving, sending, pings and closing. What runs under it
(the protocol, the transport, the queues, the lifecycle and the background tasks) is its
`ConnectionCore`; every call into the protocol goes through the core's choke point,
`with core.call() as protocol:`. `new_websocket` is the one factory that builds a
connection once its opening handshake is done (for `serve`, `connect` and
`trio_ws.testing`), and `running` runs one around a handler or an `async with` body.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import trio

from .assembler import FragmentJoiner
from .connection_core import ConnectionCore, Lifecycle
from .counters import CLIENT_CONNECTIONS, ConnectionStats
from .exceptions import CloseCode, ConnectionClosedOK, PayloadTooBig
from .extensions.permessage_deflate import PerMessageDeflate
from .http import Headers, Request, Response
from .inbox import Item
from .keepalive import KeepaliveTimers
from .messages import Data, Fragment, Message, is_bytes_like
from .options import ConnectionOptions
from .prepared import PreparedMessage
from .protocol import Protocol, Role, State
from .reader_starts import ReaderStarts
from .sockets import peer_address
from .tasks import open_nursery_unwrapped
from .transport import Transport

__all__ = ["WebSocket", "Message", "MessageStream", "Lifecycle", "new_websocket", "running", "running_in"]

_YIELD_EVERY = 16  # recv()/send() calls that may run without yielding to other tasks


def new_websocket(
    transport: Transport,
    role: Role,
    options: ConnectionOptions,
    *,
    request: Request,
    response: Response,
    deflate: PerMessageDeflate | None,
    initial_data: bytes = b"",
    on_closed: Callable[[WebSocket], None] | None = None,
    stats: ConnectionStats = CLIENT_CONNECTIONS,
) -> WebSocket:
    """The connection over `transport` once its opening handshake is done: the one place
    where a protocol, a transport and a `WebSocket` are put together from the options.
    `on_closed(ws)` is called once its TCP connection is closed; its messages are counted
    in `stats` (a server's, shared by its connections)."""
    protocol = Protocol(role, max_size=options.max_size, deflate=deflate, stats=stats)
    ws = WebSocket(
        transport, protocol, options, request=request, response=response, initial_data=initial_data
    )
    request.headers.pack()  # kept for the connection's life, and rarely read again
    response.headers.pack()
    if on_closed is not None:
        core = ws._core
        # It holds the WebSocket while it is open; the core lets go of it at close.
        core.on_closed = functools.partial(on_closed, ws)
    return ws


@asynccontextmanager
async def running(ws: WebSocket, keepalive: KeepaliveTimers | None = None) -> AsyncIterator[trio.CancelScope]:
    """`running_in` a nursery of the connection's own: `connect` runs one around the
    `async with` block. Its reader starts at once (and leaves if the block is in recv() by
    its first step)."""
    async with open_nursery_unwrapped() as nursery, running_in(ws, nursery, keepalive) as scope:
        yield scope


def running_in(
    ws: WebSocket,
    nursery: trio.Nursery,
    keepalive: KeepaliveTimers | None = None,
    reader_starts: ReaderStarts | None = None,
) -> AbstractAsyncContextManager[trio.CancelScope]:
    """Run the connection's background tasks in `nursery` (the connection's) around the
    body, and close it on the way out: `serve` does, around the handler. Its keepalive
    pings join `keepalive` (a server's timers, shared by its connections), or timers of its
    own. Its reader is started by `reader_starts` (a server's) if it needs one, else at
    once. Gives the nursery's cancel scope, which cancels the body and drops the connection.

    A normal exit closes with 1000, an exception with 1011, and a cancellation (or
    KeyboardInterrupt) drops the TCP connection at once.
    """
    return ws._core.running(nursery, keepalive, reader_starts)


class WebSocket:
    """An open WebSocket connection, on the server or the client side.

    Made by `serve` (passed to the handler) and by `connect`; not built by users.
    """

    __slots__ = (
        "__weakref__",
        "_assembly",
        "_core",
        "_fast_calls",
        "_half_streamed",
        "remote_address",
        "request",
        "response",
        "subprotocol",
    )

    def __init__(
        self,
        transport: Transport,
        protocol: Protocol,
        options: ConnectionOptions,
        *,
        request: Request,
        response: Response,
        initial_data: bytes = b"",
    ) -> None:
        self.request = request
        """The opening handshake's request: `path`, `query`, `headers`, `remote_address`."""
        self.response = response
        """The opening handshake's response (the 101 and its headers)."""
        self.subprotocol: str | None = response.headers.get("Sec-WebSocket-Protocol")
        """The subprotocol the handshake agreed on, or None."""
        self.remote_address: Any = request.remote_address or peer_address(transport.stream)
        """The peer's (host, port): behind a trusted proxy (`forwarded_allow_ips`), the client
        it names; None over a stream without a socket (in memory)."""
        self._core = ConnectionCore(
            transport,
            protocol,
            options,
            initial_data=initial_data,
            remote_address=self.remote_address,
        )
        self._assembly: FragmentJoiner | None = None  # recv() joining a streamed message
        self._half_streamed = False  # recv_streaming() gave part of a message, not its end
        self._fast_calls = 0  # recv()/send() calls since this connection last yielded

    # ---- attributes -------------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id, handy in logs."""
        return self._core.id

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The connection's logger: the `logger` it was given (`trio_ws` by default), with
        its id and remote address on every record."""
        return self._core.logger

    @property
    def local_address(self) -> Any:
        """This side's (host, port); None without a socket, or if first read once closed."""
        return self._core.local_address

    @property
    def latency(self) -> float:
        """Round-trip time of the last keepalive ping, in seconds (0 until one completes)."""
        return self._core.latency

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
        core = self._core
        if core.lifecycle is Lifecycle.CLOSED:
            return State.CLOSED
        state = core.protocol.state
        return State.CLOSING if state is State.CLOSED else state

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the code received, or sent on failure, or 1006."""
        proto = self._core.protocol
        return proto.close_code if proto.state is State.CLOSED else None

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with `close_code`."""
        proto = self._core.protocol
        return proto.close_reason if proto.state is State.CLOSED else None

    @property
    def closed_by(self) -> str | None:
        """Who sent the first close frame, once the connection is closed: "server" or
        "client"; None while it is open, or when TCP ended without any."""
        proto = self._core.protocol
        if proto.state is not State.CLOSED or (proto.close_sent is None and proto.close_rcvd is None):
            return None
        if proto.close_sent is not None and not proto.peer_closed_first:
            return proto.role.value
        return Role.CLIENT.value if proto.role is Role.SERVER else Role.SERVER.value

    @property
    def buffered_amount(self) -> int:
        """Bytes queued to send and not yet taken by the kernel (`bufferedAmount` in a
        browser); `send()` waits while it is over `write_limit`."""
        return self._core.buffered

    @property
    def bytes_received(self) -> int:
        """Bytes of frames received so far (after the handshake; compressed as they came)."""
        return self._core.protocol.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes of frames handed to the network so far (after the handshake)."""
        return self._core.protocol.bytes_sent

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
        message = self._core.inbox.take_nowait()
        if message is None:
            message = await self._core.receive()  # not through _take: a frame less held
            if message is None:
                raise self._core.closed_exception()
            self._fast_calls = 0
        if type(message) is Fragment:  # it arrived while a recv_streaming() was active
            self._assembly = FragmentJoiner(self._core.protocol.max_size)
            return await self._assemble(message)
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
        item = await self._core.receive()
        if item is None:
            raise self._core.closed_exception()
        return item

    async def _assemble(self, first: Fragment | None = None) -> Message:
        """Join the fragments of a streamed message for recv(), bounded by `max_size`.
        The parts taken so far are kept across a cancelled recv()."""
        joiner = self._assembly
        assert joiner is not None
        try:
            message = None if first is None else joiner.add(first)
            while message is None:
                part = await self._take()
                assert type(part) is Fragment  # the protocol streams a message to its end
                message = joiner.add(part)
        except PayloadTooBig as exc:
            self._assembly = None
            with self._core.call() as proto:
                proto.fail(exc.code, str(exc))
            raise self._core.closed_exception() from None
        self._assembly = None
        return message

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
            if is_bytes_like(message):
                message = memoryview(message)  # type: ignore[arg-type]  # array.array, numpy arrays
            elif isinstance(message, Mapping):
                raise TypeError("cannot send a mapping; serialize it first, e.g. with json.dumps")
            elif isinstance(message, (Iterable, AsyncIterable)):
                await self._core.send_fragmented(cast(Iterable[Data] | AsyncIterable[Data], message))
                return
            else:
                raise TypeError(f"cannot send {type(message).__name__}; send str or bytes-like")
        await self._wait_turn_and_room()
        # Messages still to read: a handler answering a batch; its answers leave together.
        self._queue_whole(message, more_soon=len(self._core.inbox) > 0)
        await self._maybe_yield()  # see recv()

    async def _wait_turn_and_room(self) -> None:
        """Wait until no fragmented send is in progress and the outbox has room, both at
        once: a fragmented send may start while this waits for room."""
        core = self._core
        while True:
            if core.sending_fragments is not None:
                await core.sending_fragments.wait()
            elif not core.has_room and core.protocol.state is State.OPEN:
                waited_from = trio.current_time()
                try:
                    await core.wait_for_room()
                finally:  # counted cancelled too: it waited all the same
                    core.protocol.stats.send_wait_seconds += trio.current_time() - waited_from
                self._fast_calls = 0
            else:
                return

    def try_send_nowait(self, message: PreparedMessage | Data) -> bool:
        """Queue a whole message if the connection can take it at once; never waits.

        Returns False, having queued nothing, when the connection is closing, in the middle
        of a fragmented send, or has more than `write_limit` bytes waiting for the network:
        `broadcast` and the hub use it so that a slow client never slows the others. Within
        `BURST_WINDOW` of the last, it leaves with the rest of the burst once the task yields.
        """
        core = self._core
        if not (core.protocol.can_send_frame and core.sending_fragments is None and core.has_room):
            core.protocol.stats.send_nowait_refusals += 1
            return False
        self._queue_whole(message, more_soon=core.in_burst())
        return True

    def _queue_whole(self, message: PreparedMessage | Data, *, more_soon: bool) -> None:
        """Queue a whole message, with its shared frame where this connection has one;
        ConnectionClosed unless the connection is open. With `more_soon` it leaves once
        the task yields, with what else is queued by then (see `Outbox.defer`)."""
        core = self._core
        with core.call(require_open=True, more_soon=more_soon) as proto:
            if type(message) is PreparedMessage:
                frame = message.frame_for(proto)
                if frame is None:
                    proto.send(message.message)
                else:
                    proto.send_serialized(frame, message.opcode, len(message.payload))
            else:
                proto.send(message)  # type: ignore[arg-type]

    async def ping(self, data: bytes | str | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        Without `data` a random payload is used. Wrap in `trio.move_on_after` for a
        timeout. Raises `ConnectionClosed` if the connection closes first.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        pings = self._core.pings
        if data is None:
            payload = pings.new_payload()
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in pings:
                raise ValueError("already waiting for a pong with this payload")
        with self._core.call(require_open=True) as proto:
            proto.send_ping(payload)
        waiter = pings.add(payload, trio.current_time(), trio.Event())
        assert waiter.answered is not None
        try:
            await waiter.answered.wait()
        finally:
            pings.forget(payload)
        if waiter.rtt is None:
            raise self._core.closed_exception()
        return waiter.rtt

    async def pong(self, data: bytes | str = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat); pings are answered for you."""
        await trio.lowlevel.checkpoint_if_cancelled()
        with self._core.call(require_open=True) as proto:
            proto.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        await trio.lowlevel.cancel_shielded_checkpoint()

    # ---- closing ----------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake and close the TCP connection.

        Returns once the connection is closed, at most about `close_timeout` later: a peer
        that does not answer in time is cut off (the close code is then 1006). Never
        raises `ConnectionClosed`.
        """
        await self._core.close(code, reason)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side."""
        await self._core.wait_closed()


class MessageStream:
    """What `ws.recv_streaming()` returns: the fragments of one message, as they arrive."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._done = False
        ws._core.streaming = True  # frames that arrive from now on are not assembled

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
        self._ws._core.streaming = False
