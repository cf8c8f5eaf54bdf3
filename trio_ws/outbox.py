"""`Outbox`: a connection's output on its way to the socket.

The outbox is handed bytes (`write`) and knows nothing of the protocol. On a plain TCP
socket it writes them through at once (one non-blocking `os.write`, no await, as asyncio's
`transport.write` does). What the kernel does not take is held, and a writer task, started
on demand, sends it with `send_all`; once it is sent the writer asks for what was queued
meanwhile (`refill`) and ends when there is none, so an idle connection has no writer. A
stream with no socket to write through (TLS) starts a writer for each burst of output.

A producer that knows more output will follow before its task yields (`broadcast`, the hub,
a handler answering a batch) defers it instead (`defer`): the output waits where it was
made, and the `Flusher`, one task per trio run woken once per scheduler pass, writes each
deferred outbox once the task yields. A burst of messages to one connection then costs one
system call instead of one per message, as uWebSockets' corking does.

Output that arrives while a writer holds bytes stays with whoever produced it (the
protocol's buffer) until the writer asks for it: new bytes never overtake held ones, and
what a peer can make us queue without reading stays bounded where it is produced (one
pending pong, in the protocol).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import trio

from .transport import CLOSED_STREAM_ERRORS, Transport

__all__ = ["OUTPUT_PENDING", "Flusher", "Outbox", "Output", "WriterState"]

_logger = logging.getLogger("trio_ws")

Output = bytearray | memoryview


def _nobody() -> None:
    """The lost-connection callback of an outbox whose connection is closed."""


def _nothing() -> Output | None:
    """The refill of an outbox whose connection is closed."""
    return None


class WriterState(enum.Enum):
    """Who may write, in one value (the outbox's whole state)."""

    IDLE = "idle"  #: no writer: the next `write` goes straight to the socket
    DEFERRED = "deferred"  #: output waits with its producer until the flusher runs (or a `write`)
    HELD = "held"  #: a writer is due to send what is held; writes go through after it, if they can
    SENDING = "sending"  #: the writer is in `send_all`: new output waits with its producer
    FAILED = "failed"  #: a write found the connection gone: nothing more is written
    STOPPED = "stopped"  #: the connection is closed: nothing more is written


OUTPUT_PENDING = frozenset({WriterState.DEFERRED, WriterState.HELD, WriterState.SENDING})
"""The states in which output is on its way: a writer task exists, or the flusher is due,
and `wait_drained()` returns once it has written."""


class Outbox:
    """Write-through and the writer task on demand, for one connection's stream."""

    __slots__ = ("_drained", "_held", "_lost", "_nursery", "_refill", "_transport", "state")

    def __init__(
        self, transport: Transport, *, refill: Callable[[], Output | None], lost: Callable[[], None]
    ) -> None:
        self._transport = transport
        self._refill = refill  # the output queued since the last write, or None
        self._lost = lost  # called once a write finds the connection gone
        self.state = WriterState.IDLE
        """IDLE, DEFERRED, HELD, SENDING, FAILED or STOPPED: see `WriterState`."""
        # Bytes the writer must send before anything else: what the kernel did not take.
        # Only while HELD or SENDING.
        self._held: Output | None = None
        self._nursery: trio.Nursery | None = None  # where a writer may start
        self._drained: trio.lowlevel.ParkingLot | None = None  # tasks waiting for the writer

    @property
    def held(self) -> int:
        """Bytes handed over and not yet accepted by the kernel."""
        return 0 if self._held is None else len(self._held)

    def start(self, nursery: trio.Nursery) -> None:
        """Writers may run in `nursery` from now on (one starts if output is held already)."""
        self._nursery = nursery
        if self.state is WriterState.HELD:
            nursery.start_soon(self._writer)

    def detach(self) -> None:
        """The nursery is closing: no writer starts any more, and the socket is not written
        through (the stream is about to be closed)."""
        self._nursery = None
        self._transport.stop_writing_through()
        if self.state is WriterState.DEFERRED:  # nobody will write it: the stream is closing
            self._become(WriterState.IDLE)

    def ready(self) -> bool:
        """Whether new output may be handed to `write` now without overtaking held bytes:
        nothing is held, or what is held went through at once (the kernel had room again
        before the writer ran). Deferred output waits with its producer, so `write` may take
        it early. False while the writer sends, or once writing has ended."""
        state = self.state
        if state is WriterState.IDLE or state is WriterState.DEFERRED:
            return True
        if state is not WriterState.HELD:
            return False
        held = self._held
        if held is None:
            return True
        if not self._transport.writes_through:
            return False
        sent = self._transport.write_nowait(held)
        if sent < len(held):
            self._held = memoryview(held)[sent:]
            return False
        self._held = None
        return True

    def defer(self) -> bool:
        """Once `ready()`, leave the output where its producer holds it, because more is
        about to follow before this task yields: the flusher takes it all once the task
        yields, in one write instead of a system call per message. False when it must be
        written now: no writer could start, or a writer is due already (what it holds went
        through at once), and output left for it would wait unbounded behind its refill."""
        state = self.state
        if state is WriterState.DEFERRED:
            return True  # it joins what waits
        if state is not WriterState.IDLE or self._nursery is None:
            return False
        try:
            due = flusher()
        except RuntimeError:  # the run is ending: no task can start to flush it
            return False
        self.state = WriterState.DEFERRED
        due.add(self)
        return True

    def flush(self) -> None:
        """The flusher's turn: write the deferred output now (and wake its waiters)."""
        if self.state is not WriterState.DEFERRED:
            return  # written early, taken by a writer, or stopped meanwhile
        self.state = WriterState.IDLE
        data = self._refill()
        if data is not None:
            self.write(data)
        self.wake_waiters()

    def write(self, data: Output) -> None:
        """Send `data`, once `ready()`: written through at once when the kernel takes it,
        else held for a writer. Nothing awaits here, so no frame is ever half-written by a
        cancellation."""
        state = self.state
        if state is WriterState.DEFERRED:
            state = self.state = WriterState.IDLE  # written early: the flusher skips it
        elif self._held is not None or (state is not WriterState.IDLE and state is not WriterState.HELD):
            raise RuntimeError(f"output handed to an outbox that is not ready ({self.state.name})")
        if self._transport.writes_through:
            sent = self._transport.write_nowait(data)
            if sent == len(data):
                return
            data = memoryview(data)[sent:]  # the rest as it is: no copy of up to a whole message
        self._held = data
        if state is WriterState.IDLE:
            self.state = WriterState.HELD
            if self._nursery is not None:
                self._nursery.start_soon(self._writer)

    def stop(self) -> None:
        """The connection is closed: nothing more is written, held bytes are dropped, and the
        callbacks are let go, so that a closed connection is freed by reference counting
        alone instead of waiting for the cyclic collector."""
        self._become(WriterState.STOPPED)
        self._refill = _nothing
        self._lost = _nobody

    async def wait_drained(self) -> None:
        """Wait until the writer has sent what it holds (at once if there is no writer)."""
        if self.state not in OUTPUT_PENDING:
            await trio.lowlevel.checkpoint()
            return
        if self._drained is None:
            self._drained = trio.lowlevel.ParkingLot()
        await self._drained.park()

    def wake_waiters(self) -> None:
        """Wake every `wait_drained()`: the connection closed, or the writer made room."""
        if self._drained is not None:
            self._drained.unpark_all()

    def _become(self, state: WriterState) -> None:
        """Leave the writer's states for `state`, dropping what is held; wake the waiters."""
        self.state = state
        self._held = None
        self.wake_waiters()

    async def _writer(self) -> None:
        """Send what is held, then what was queued meanwhile, until there is none."""
        transport = self._transport
        try:
            while self.state is WriterState.HELD:
                data = self._held
                if data is None:
                    data = self._held = self._refill()
                    if data is None:
                        break
                self.state = WriterState.SENDING
                try:
                    await transport.send_all(data)
                except CLOSED_STREAM_ERRORS:
                    self._become(WriterState.FAILED)
                    self._lost()
                    return
                if self.state is not WriterState.SENDING:
                    return  # stopped meanwhile
                self.state = WriterState.HELD
                self._held = None
                self.wake_waiters()  # room for senders between two sends
        finally:
            # Done, or cancelled with the connection's nursery: what is held is dropped.
            if self.state in OUTPUT_PENDING:
                self._become(WriterState.IDLE)


class Flusher:
    """Writes deferred outboxes once the task that deferred them yields: one task per trio
    run, parked until the first deferral of a scheduler pass wakes it, so that a burst of
    messages costs each connection one write however many connections it goes to."""

    __slots__ = ("_due", "_lot")

    def __init__(self) -> None:
        self._due: list[Outbox] = []  # deferred since the last pass, in order
        self._lot = trio.lowlevel.ParkingLot()  # where the flusher's task waits

    def add(self, outbox: Outbox) -> None:
        """Write `outbox` on the flusher's next pass (the first addition wakes it)."""
        if not self._due:
            self._lot.unpark()
        self._due.append(outbox)

    async def run(self) -> None:
        """Flush what was deferred, pass after pass, until the run ends."""
        while True:
            if not self._due:  # checked before parking: nothing added meanwhile is missed
                await self._lot.park()
            # One pass more before writing: every task that was runnable alongside this one
            # (a publisher yielding between messages, say) adds its next message first.
            await trio.lowlevel.cancel_shielded_checkpoint()
            due, self._due = self._due, []
            for outbox in due:
                try:
                    outbox.flush()
                except Exception:  # a bug here must not end every connection of the run
                    _logger.exception("writing deferred output failed")


_FLUSHER: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("trio_ws_flusher")


def flusher() -> Flusher:
    """This trio run's flusher, started as a system task on first use."""
    try:
        return _FLUSHER.get()
    except LookupError:
        new = Flusher()
        trio.lowlevel.spawn_system_task(new.run, name="trio_ws flusher")
        _FLUSHER.set(new)
        return new
