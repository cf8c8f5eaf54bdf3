"""`Pipeline`: one Redis connection with many commands in flight.

Commands are queued without waiting and written by one task, many per `send_all`; replies
are read by another and matched to the commands in the order they were sent (RESP answers
in order). So a process publishes without a round trip per publish. What is in flight is
bounded (`max_in_flight` commands): past it, `send` waits for replies to come back.

A command without an answer for `timeout` seconds, or a connection silent for
`health_check_interval` seconds (it is PINGed after half of that), ends `run` with
ConnectionError. The commands still unanswered then are handed back by `unanswered()`:
the owner decides which may be sent again on a new connection.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ..tasks import open_nursery_unwrapped
from .resp import NO_REPLY, RespConnection, command

__all__ = ["Pipeline", "Reply", "OnReply"]

_YIELD_EVERY = 64  # calls of wait_for_room between schedule points while there is room
_BATCH_BYTES = 65536  # a send waits for more commands until it has this many bytes (or none come)

OnReply = Callable[[Any], None]
"""Called with a command's reply (an exception instance for an error reply), or with a ConnectionError if
the connection was lost before the reply came."""


class Reply:
    """A reply to wait for: `await reply.wait()` returns it (or raises its error)."""

    __slots__ = ("_arrived", "_value")

    def __init__(self) -> None:
        self._arrived = trio.Event()
        self._value: Any = None

    def __call__(self, value: Any) -> None:
        self._value = value
        self._arrived.set()

    async def wait(self) -> Any:
        await self._arrived.wait()
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


class Pipeline:
    """Commands out in batches, replies in order; see the module docstring."""

    def __init__(
        self,
        connection: RespConnection,
        *,
        timeout: float,
        health_check_interval: float,
        max_in_flight: int = 4096,
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self.max_in_flight = max_in_flight
        self._outgoing = bytearray()  # written by the writer task as one send
        self._waiting: deque[tuple[bytes, OnReply | None, float]] = deque()  # sent, oldest first
        self._output_queued = trio.Event()
        self._room = trio.Event()  # set whenever fewer than max_in_flight are unanswered
        self._room.set()
        self._calls_since_yield = 0
        self._silence: trio.CancelScope | None = None  # the reader's wait for data
        self.closed = False

    def __len__(self) -> int:
        """Commands sent (or queued) and not answered yet."""
        return len(self._waiting)

    def send_nowait(self, args: tuple[bytes | str, ...], on_reply: OnReply | None = None) -> None:
        """Queue a command; `on_reply` gets its reply. Raises ConnectionError once closed."""
        self.send_encoded_nowait(command(*args), on_reply)

    def send_encoded_nowait(self, encoded: bytes, on_reply: OnReply | None = None) -> None:
        """Queue a command already in RESP form (see `send_nowait`)."""
        if self.closed:
            raise ConnectionError("the Redis connection is closed")
        self._outgoing += encoded
        now = trio.current_time()
        if not self._waiting and self._silence is not None:
            # The reader waits for the health check, not for an answer: this command's
            # answer is due sooner, and the reader must fail the connection then.
            self._silence.deadline = min(self._silence.deadline, now + self.timeout)
        self._waiting.append((encoded, on_reply, now))
        self._output_queued.set()
        if len(self._waiting) >= self.max_in_flight:
            self._room = trio.Event()

    async def wait_for_room(self) -> None:
        """Return once fewer than `max_in_flight` commands are unanswered.

        A cancellation point each time, but a schedule point only every `_YIELD_EVERY`
        calls while there is room: yielding costs more than queuing a publish, and a task
        that publishes in a loop still lets the others (the writer first) run often."""
        if not self._room.is_set():
            await self._room.wait()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        self._calls_since_yield += 1
        if self._calls_since_yield >= _YIELD_EVERY:
            self._calls_since_yield = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def answered(self) -> None:
        """Return once every command sent so far has its answer (or the connection ended)."""
        if self._waiting and not self.closed:
            reply = Reply()
            self.send_nowait(("PING",), reply)  # answered after every command before it
            with contextlib.suppress(ConnectionError):  # the connection ended: nothing to wait for
                await reply.wait()
        await trio.lowlevel.checkpoint()

    async def call(self, *args: bytes | str) -> Any:
        """Send a command and return its reply (an error reply raises ConnectionError)."""
        await self.wait_for_room()
        reply = Reply()
        self.send_nowait(args, reply)
        return await reply.wait()

    def unanswered(self) -> list[tuple[bytes, OnReply | None]]:
        """The commands with no reply yet (once `run` ended), oldest first; forgotten here."""
        waiting = [(encoded, on_reply) for encoded, on_reply, _ in self._waiting]
        self._waiting.clear()
        return waiting

    async def run(self) -> None:
        """Write and read until the connection fails (ConnectionError) or is cancelled."""
        try:
            async with open_nursery_unwrapped() as nursery:
                nursery.start_soon(self._write)
                await self._read()
        finally:
            self.closed = True
            self._room.set()

    async def _write(self) -> None:
        while True:
            await self._output_queued.wait()
            # A publisher checkpoints once per publish, which wakes this task each time:
            # let the publishers go on while they keep adding, so one send carries many.
            while len(self._outgoing) < _BATCH_BYTES:
                queued = len(self._outgoing)
                await trio.lowlevel.checkpoint()
                if len(self._outgoing) == queued:
                    break
            self._output_queued = trio.Event()
            outgoing, self._outgoing = self._outgoing, bytearray()
            await self.connection.stream.send_all(outgoing)

    async def _read(self) -> None:
        connection = self.connection
        pinged = False
        while True:
            self._answer_buffered()
            silent_until = connection.last_received_at + self.health_check_interval / (1 if pinged else 2)
            deadline = silent_until
            if self._waiting:  # an answer is owed: it must come within `timeout`
                deadline = min(deadline, self._answer_due())
            with trio.move_on_at(deadline) as self._silence:
                await connection.receive()
                pinged = False
                continue
            self._silence = None
            now = trio.current_time()
            if self._waiting and now >= self._answer_due():
                raise ConnectionError(f"no answer from Redis within {self.timeout:g} s")
            if now < silent_until:
                continue  # woken for a command sent meanwhile, whose answer is not due yet
            if pinged:
                raise ConnectionError(f"no answer to a PING within {self.health_check_interval / 2:g} s")
            self.send_nowait(("PING",))
            pinged = True

    def _answer_due(self) -> float:
        """When the oldest unanswered command's answer is late: `timeout` after it was
        sent, or after the latest data, whichever is later (a long reply is still coming)."""
        return max(self._waiting[0][2], self.connection.last_received_at) + self.timeout

    def _answer_buffered(self) -> None:
        """Hand each reply received so far to its command, oldest first."""
        waiting = self._waiting
        while (reply := self.connection.buffered_reply()) is not NO_REPLY:
            if not waiting:
                raise ConnectionError("Redis sent a reply to no command")
            _, on_reply, _ = waiting.popleft()
            if on_reply is not None:
                on_reply(reply)
        if len(waiting) < self.max_in_flight:
            self._room.set()
