"""`Outbox`: a connection's output on its way to the socket.

The protocol's output buffer holds the frames; the outbox moves them to the network and
tells senders when there is room. Output is written through at once on a plain TCP socket
(one non-blocking `os.write`, no await, as asyncio's `transport.write` does); what the
kernel does not take goes to a writer task, started on demand and ended once the buffer is
flushed. A stream with no socket to write through (TLS) has a writer for its whole life.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .protocol import Protocol, State
from .transport import CLOSED_STREAM_ERRORS, Transport

__all__ = ["Outbox"]


def _nobody() -> None:
    """The lost-connection callback of an outbox whose stream is closing."""


class Outbox:
    """Write-through, the writer task, and flow control (`write_limit`) for one stream."""

    __slots__ = (
        "_backlog",
        "_drained",
        "_in_flight",
        "_lost",
        "_more",
        "_nursery",
        "_proto",
        "_stopped",
        "_transport",
        "_writer_running",
        "_writer_waits",
        "failed",
        "write_limit",
    )

    def __init__(
        self, transport: Transport, protocol: Protocol, write_limit: int, lost: Callable[[], None]
    ) -> None:
        self._transport = transport
        self._proto = protocol
        self.write_limit = write_limit
        """Bytes buffered past which `wait_for_room()` waits and `has_room` is False."""
        self._lost = lost  # called once a write finds the connection gone
        self._in_flight = 0  # bytes handed to send_all and not yet accepted
        # What a write through left unwritten: the writer sends it first, as it is (a copy
        # back into the protocol's buffer would cost a memcpy of up to a whole message).
        self._backlog: memoryview | None = None
        self.failed = False
        """A write found the connection gone: nothing more will be written."""
        self._stopped = False  # the stream is closing: the writer ends once flushed
        self._writer_waits = not transport.writes_through  # a writer task for the whole connection
        self._writer_running = False
        self._nursery: trio.Nursery | None = None  # where a writer may start
        self._more: trio.lowlevel.ParkingLot | None = None  # the writer waiting for output
        self._drained: trio.lowlevel.ParkingLot | None = None  # senders waiting for room

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet accepted by the kernel."""
        backlog = self._backlog
        return self._proto.bytes_to_send + self._in_flight + (0 if backlog is None else len(backlog))

    @property
    def has_room(self) -> bool:
        """Whether no more than `write_limit` bytes are waiting for the network."""
        return self.buffered <= self.write_limit

    def start(self, nursery: trio.Nursery) -> None:
        """Writers may run in `nursery` from now on; one starts now if it must always run."""
        self._nursery = nursery
        if self._writer_waits:
            self._writer_running = True
            nursery.start_soon(self._writer)

    def detach(self) -> None:
        """The nursery is closing: no writer starts any more, and the socket is not written
        through (the stream is about to be closed)."""
        self._nursery = None
        self._transport.stop_writing_through()

    def flush(self, *, soon: bool = False) -> None:
        """Output was queued: write it at once if no write is in flight, else leave it to
        the writer. Nothing awaits here, so no frame is ever half-written by a cancellation.

        `soon` leaves it to the writer even so, when more output is about to follow (a
        handler answering a batch of messages it received at once): the writer runs once the
        task yields and sends it all in one write, instead of a system call per message.
        """
        if (
            not self._transport.writes_through
            or self._in_flight
            or self.failed
            or (soon and self._nursery is not None)
        ):
            self._wake_writer()
            return
        if self._backlog is not None and not self._write_through(self._backlog):
            return  # the kernel is full: the new output waits behind the backlog
        self._write_through(self._proto.data_to_send())

    def _write_through(self, data: bytearray | memoryview) -> bool:
        """One non-blocking write of `data`; what the kernel leaves becomes the backlog,
        for the writer. Whether the kernel took it all."""
        sent = self._transport.write_nowait(data)
        if sent == len(data):
            self._backlog = None
            return True
        self._backlog = memoryview(data)[sent:]
        self._wake_writer()
        return False

    def stop_writing_through(self) -> None:
        """From now on only the writer writes, through the stream: the stream is closing."""
        self._transport.stop_writing_through()

    def stop(self) -> None:
        """The stream is being closed: the writer ends, and the outbox lets go of its
        connection's callback, so that a closed connection is freed by reference counting
        alone instead of waiting for the cyclic collector."""
        self._stopped = True
        self._lost = _nobody
        self._wake(self._more)

    def wake_senders(self) -> None:
        """Wake every `wait_for_room()` and `wait_flushed()`: the connection closed."""
        self._wake(self._drained)

    async def wait_for_room(self) -> None:
        """Wait while more than `write_limit` bytes are buffered and the protocol is open."""
        while not self.has_room and self._proto.state is State.OPEN:
            await self._park_until_drained()

    async def wait_flushed(self) -> None:
        """Wait until every queued byte is written, or writing failed."""
        while self.buffered and not self.failed:
            await self._park_until_drained()

    async def _park_until_drained(self) -> None:
        if self._drained is None:
            self._drained = trio.lowlevel.ParkingLot()
        await self._drained.park()

    @staticmethod
    def _wake(lot: trio.lowlevel.ParkingLot | None) -> None:
        if lot is not None:
            lot.unpark_all()

    def _wake_writer(self) -> None:
        """Wake the writer, or start one: on a plain TCP socket it runs only while the
        kernel's buffer is full, so an idle connection has none."""
        if self._writer_running:
            self._wake(self._more)
        elif self._nursery is not None and not self.failed and self.buffered:
            self._writer_running = True
            self._nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        """Flush the output buffer with `send_all`; then wait for more (a writer for the
        whole connection), or end (a plain TCP socket)."""
        transport = self._transport
        proto = self._proto
        try:
            while True:
                if self.buffered and not self.failed:
                    data: memoryview | bytearray
                    if self._backlog is not None:
                        data, self._backlog = self._backlog, None
                    else:
                        data = proto.data_to_send()
                    self._in_flight = len(data)
                    try:
                        await transport.send_all(data)
                    except CLOSED_STREAM_ERRORS:
                        self.failed = True
                        self._lost()
                    finally:
                        self._in_flight = 0
                    self._wake(self._drained)
                    continue
                if self._stopped or not self._writer_waits:
                    return
                self._wake(self._drained)
                if self._more is None:
                    self._more = trio.lowlevel.ParkingLot()
                await self._more.park()
        finally:
            self._writer_running = False
            self._wake(self._drained)
