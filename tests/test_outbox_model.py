"""A model of the outbox over a real socket pair with tiny buffers, in both of its modes
(written through on a plain socket; a writer for each burst on a stream without a socket to
write through, as TLS is): arbitrary sequences of writes, batched writes, peer reads and
scheduler turns, with its invariants checked after every step.

The model plays the connection core: output made while the outbox is not `ready()` waits
in a `pending` buffer (the protocol's), which the outbox's writer takes through `refill`;
so does output deferred until the task yields, which the run's flusher writes.
"""

from __future__ import annotations

import contextlib
import logging
import socket

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_ws.outbox import OUTPUT_PENDING, Outbox, Output, WriterState
from trio_ws.transport import SocketTransport, StreamTransport, Transport

from .strategies import examples

Step = tuple[str, int]

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 40_000)),
        st.tuples(st.just("write_soon"), st.integers(1, 3_000)),
        st.tuples(st.just("peer_reads"), st.integers(1, 50_000)),
        st.tuples(st.just("turn"), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=30,
)


class Model:
    """The outbox, the bytes the core has made, and what the peer has read."""

    def __init__(self, transport: Transport, peer: socket.socket) -> None:
        self.pending = bytearray()  # output made while the outbox was busy: the protocol's buffer
        self.made = bytearray()  # every byte made, in order
        self.read = bytearray()  # what the peer has read
        self.peer = peer
        self.outbox = Outbox(transport, refill=self.refill, lost=self.lost)
        self.counter = 0
        self.turns_since_made = 0  # checkpoints of this task since it last made output

    def refill(self) -> Output | None:
        if not self.pending:
            return None
        out, self.pending = self.pending, bytearray()
        return out

    def lost(self) -> None:
        raise AssertionError("the connection was not lost")

    def make(self, size: int, *, soon: bool) -> None:
        """What the choke point does: hand the output over if ready, else leave it pending."""
        data = bytearray((self.counter + i) % 251 for i in range(size))
        self.counter += size
        self.turns_since_made = 0
        self.made += data
        self.pending += data
        if self.outbox.ready() and not (soon and self.outbox.defer()):
            out, self.pending = self.pending, bytearray()
            self.outbox.write(out)

    def peer_reads(self, limit: int) -> None:
        with contextlib.suppress(BlockingIOError):
            self.read += self.peer.recv(limit)

    def check(self) -> None:
        outbox = self.outbox
        assert self.read == self.made[: len(self.read)], "the peer read bytes out of order"
        assert outbox.state is WriterState.IDLE or outbox.state in OUTPUT_PENDING
        if outbox.state is WriterState.IDLE:
            assert outbox.held == 0, "an idle outbox holds bytes"
            assert not self.pending, "output waits although the outbox is idle"
        # What waits for the writer has not reached the peer. (Held bytes count whole until
        # the writer's `send_all` returns, as `buffered_amount` does.)
        assert len(self.pending) <= len(self.made) - len(self.read)
        assert outbox.held <= len(self.made) - len(self.pending)
        # A writer that is due with nothing held has no reason to keep output waiting: it
        # would grow unbounded behind the writer's refill (deferring must not join it).
        if self.pending and outbox.held == 0 and outbox.state is not WriterState.SENDING:
            assert outbox.state is WriterState.DEFERRED, "output waits behind a writer that holds nothing"
        # Deferred output waits two scheduler passes at most: the flusher wakes in the pass
        # after the deferral and writes in the one after that.
        if self.turns_since_made >= 3:
            assert outbox.state is not WriterState.DEFERRED, "deferred output was never written"


def squeezed_pair() -> tuple[trio.socket.SocketType, socket.socket]:
    """A connected pair with 4 KiB buffers: ours for trio, the peer's plain and non-blocking."""
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.setblocking(False)
    return trio.socket.from_stdlib_socket(a), b


async def run_model(steps: list[Step], *, writes_through: bool) -> None:
    ours, b = squeezed_pair()
    stream = trio.SocketStream(ours)
    transport: Transport = SocketTransport(stream) if writes_through else StreamTransport(stream)
    model = Model(transport, b)
    async with trio.open_nursery() as nursery:
        model.outbox.start(nursery)
        for kind, amount in steps:
            if kind == "write":
                model.make(amount, soon=False)
            elif kind == "write_soon":
                model.make(amount, soon=True)
            elif kind == "peer_reads":
                model.peer_reads(amount)
            else:
                for _ in range(amount):
                    await trio.lowlevel.checkpoint()
                    model.turns_since_made += 1
            model.check()
        # The peer reads everything: the writer ends, and every byte arrived once, in order.
        with trio.fail_after(10):
            while len(model.read) < len(model.made) or model.outbox.state is not WriterState.IDLE:
                model.peer_reads(1 << 20)
                model.check()
                await trio.lowlevel.checkpoint()
        assert model.read == model.made
        model.outbox.stop()
        assert model.outbox.state is WriterState.STOPPED and model.outbox.held == 0
    await stream.aclose()
    b.close()


@settings(max_examples=examples(60), deadline=None)
@given(steps=STEPS, writes_through=st.booleans())
def test_the_outbox_model_keeps_order_and_loses_nothing(steps: list[Step], writes_through: bool) -> None:
    trio.run(lambda: run_model(steps, writes_through=writes_through))


def test_the_model_reaches_partial_writes_and_refills() -> None:
    """The sequence the model exists for: a write the kernel takes in part, output made while
    the writer holds the rest, then the peer reading: the held bytes go first."""

    async def main() -> None:
        await run_model(
            [
                ("write", 40_000),
                ("write", 10),
                ("write_soon", 5),
                ("turn", 2),
                ("peer_reads", 50_000),
                ("turn", 3),
            ],
            writes_through=True,
        )

    trio.run(main)


def test_the_model_reaches_deferring_once_held_bytes_went_through() -> None:
    """Held bytes the kernel takes when the next output comes (before the writer runs):
    output deferred then must wait for the flusher, not join the due writer's refill."""

    async def main() -> None:
        await run_model(
            [("write", 12_000), ("peer_reads", 50_000), ("write_soon", 5), ("write_soon", 7), ("turn", 3)],
            writes_through=True,
        )

    trio.run(main)


def test_a_write_handed_to_a_busy_outbox_is_refused() -> None:
    """New output may not overtake held bytes: the outbox is not ready while the kernel
    cannot take them, and handing it over then is a bug."""

    async def main() -> None:
        a, b = squeezed_pair()
        outbox = Outbox(SocketTransport(trio.SocketStream(a)), refill=lambda: None, lost=lambda: None)
        outbox.write(bytearray(200_000))
        assert outbox.state is WriterState.HELD and 0 < outbox.held < 200_000
        assert not outbox.ready()
        try:
            outbox.write(bytearray(b"late"))
        except RuntimeError as exc:
            assert "not ready" in str(exc)
        else:
            raise AssertionError("a write past held bytes was accepted")
        a.close()
        b.close()

    trio.run(main)


def test_a_flush_that_fails_is_logged_and_the_flusher_serves_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in one connection's flush must not end the flusher (a system task: its death
    would end the whole run), nor keep the other connections' output from leaving."""

    def broken_refill() -> Output | None:
        raise ValueError("planted")

    async def main() -> None:
        pairs = [squeezed_pair() for _ in range(3)]
        async with trio.open_nursery() as nursery:
            models = []
            for index, (ours, peer) in enumerate(pairs):
                transport = SocketTransport(trio.SocketStream(ours))
                model = Model(transport, peer)
                if index == 1:
                    model.outbox = Outbox(transport, refill=broken_refill, lost=model.lost)
                model.outbox.start(nursery)
                models.append(model)
            for _ in range(2):  # twice: the flusher goes on after the failure
                for model in models:
                    model.make(100, soon=True)
                for _ in range(3):
                    await trio.lowlevel.checkpoint()
                for index, model in enumerate(models):
                    if index != 1:
                        model.peer_reads(1 << 16)
                        assert model.read == model.made
            nursery.cancel_scope.cancel()
        for ours, peer in pairs:
            ours.close()
            peer.close()

    with caplog.at_level(logging.ERROR, logger="trio_ws"):
        trio.run(main)
    failures = [r for r in caplog.records if "deferred output" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None
