"""Deferred writes: what `try_send_nowait` (so `broadcast` and the hub) queues in a burst
leaves once the task yields, in one write per connection; a message after a quiet spell
leaves at once. Over real sockets.

The number of writes is read from the peer's kernel, not counted in our code: on loopback
with TCP_NODELAY (trio's default) every write under the MSS arrives as one data segment,
and Linux's TCP_INFO counts the data segments a socket received (`tcpi_data_segs_in`).
"""

from __future__ import annotations

import fcntl
import logging
import random
import socket
import struct
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.connection_core import BURST_WINDOW, DEFER_LIMIT
from trio_ws.frames import Opcode

from .conftest import HANDSHAKE, RawClient, tls_contexts
from .strategies import examples

SMALL = b"m" * 64  # a 66-byte frame
TCPI_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in Linux's struct tcp_info


def data_segments_in(client: RawClient) -> int:
    """Data segments the client's socket has received so far."""
    info = client.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)[0])


async def wait_forever(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


def unread_bytes(client: RawClient) -> int:
    """Bytes waiting in the client's socket, read without reading them."""
    return int(struct.unpack("i", fcntl.ioctl(client.stream.socket.fileno(), termios.FIONREAD, b"\0" * 4))[0])


@asynccontextmanager
async def raw_clients(server: trio_ws.WebSocketServer, count: int) -> AsyncIterator[list[RawClient]]:
    """`count` upgraded raw clients, each with its server connection open; closed after."""
    clients = [await RawClient.connect(server.port) for _ in range(count)]
    try:
        with trio.fail_after(5):
            while len(server.connections) < count:
                await trio.sleep(0.01)
        await trio.sleep(0.05)  # the 101s have arrived and been counted
        yield clients
    finally:
        for client in clients:
            await client.stream.aclose()


async def read_messages(client: RawClient, count: int) -> list[bytes]:
    """Read until `count` data frames have arrived; their payloads."""
    with trio.fail_after(5):
        while len(frames := [f for f in client.frames() if f.opcode is Opcode.BINARY]) < count:
            chunk = await client.stream.receive_some()
            assert chunk, "server closed"
            client.received += chunk
    return [bytes(f.payload) for f in frames]


async def test_a_burst_of_broadcasts_costs_each_connection_one_write() -> None:
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server:
        async with raw_clients(server, 5) as clients:
            before = [data_segments_in(c) for c in clients]
            for i in range(100):
                assert trio_ws.broadcast(server.connections, SMALL[:-3] + b"%03d" % i) == 5
            expected = [SMALL[:-3] + b"%03d" % i for i in range(100)]
            for client, segments in zip(clients, before, strict=True):
                assert await read_messages(client, 100) == expected
                # The first message leaves at once, the 99 after it together.
                assert data_segments_in(client) - segments == 2, "one write for the rest of the burst"


async def test_a_publisher_yielding_between_messages_still_batches() -> None:
    """A publisher that checkpoints after each message (as trio asks of a loop): the output
    waits one scheduler pass more, so at least two messages share each write."""
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server:
        async with raw_clients(server, 3) as clients:
            before = [data_segments_in(c) for c in clients]
            for _ in range(100):
                trio_ws.broadcast(server.connections, SMALL)
                await trio.lowlevel.checkpoint()
            for client, segments in zip(clients, before, strict=True):
                assert len(await read_messages(client, 100)) == 100
                assert data_segments_in(client) - segments <= 51


async def test_a_message_after_a_quiet_spell_leaves_at_once_and_one_in_a_burst_soon() -> None:
    """A message that follows the last one by more than BURST_WINDOW is written before
    `try_send_nowait` returns (no wait for a message now and then); one that follows within
    it waits for the task to yield, three scheduler passes at most: then its bytes are in the
    peer's socket (loopback delivers within the write)."""
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server:
        async with raw_clients(server, 1) as (client,):
            (ws,) = server.connections
            frame = len(SMALL) + 2
            for _ in range(3):
                await trio.sleep(BURST_WINDOW * 2)
                assert ws.try_send_nowait(SMALL)
                assert ws.buffered_amount == 0 and unread_bytes(client) == frame  # at once
                assert ws.try_send_nowait(SMALL)
                assert ws.buffered_amount == frame  # in a burst: waiting with its producer
                for _ in range(3):
                    await trio.lowlevel.checkpoint()
                assert ws.buffered_amount == 0 and unread_bytes(client) == 2 * frame
                client.received += await client.stream.receive_some()


async def test_a_send_after_nowait_sends_writes_them_all_in_order_at_once() -> None:
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server:
        async with raw_clients(server, 1) as (client,):
            (ws,) = server.connections
            before = data_segments_in(client)
            for i in range(3):
                assert ws.try_send_nowait(b"nowait %d" % i)  # the first leaves at once
            assert ws.buffered_amount > 0
            await ws.send(b"awaited")  # not deferred: it takes the deferred ones along
            assert ws.buffered_amount == 0
            assert await read_messages(client, 4) == [b"nowait 0", b"nowait 1", b"nowait 2", b"awaited"]
            assert data_segments_in(client) - before == 2


async def test_a_burst_past_the_defer_limit_is_written_as_it_goes_and_nothing_is_refused() -> None:
    """Deferred output is bounded (DEFER_LIMIT): past it, it is written at once, so that a
    long burst in one step is never refused for the bytes deferring held back."""
    count = 4 * DEFER_LIMIT // len(SMALL)  # four times the limit, twice write_limit
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0, write_limit=2**16) as server:
        async with raw_clients(server, 1) as (client,):
            (ws,) = server.connections
            before = data_segments_in(client)
            for _ in range(count):
                assert ws.try_send_nowait(SMALL), "refused"
                assert ws.buffered_amount < DEFER_LIMIT + len(SMALL) + 2
            assert len(await read_messages(client, count)) == count
            writes = data_segments_in(client) - before
            assert 4 <= writes <= 7, writes


async def test_a_zero_write_limit_defers_nothing() -> None:
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0, write_limit=0) as server:
        async with raw_clients(server, 1) as (client,):
            (ws,) = server.connections
            before = data_segments_in(client)
            for _ in range(10):
                assert ws.try_send_nowait(SMALL)
                assert ws.buffered_amount == 0
            assert len(await read_messages(client, 10)) == 10
            assert data_segments_in(client) - before == 10


@pytest.mark.parametrize("how", ["close", "peer_resets"])
async def test_a_connection_that_ends_with_output_deferred_breaks_nothing(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The deferred output of a connection that closes or loses its peer in the
    same step is written before the close frame or dropped with the connection, never
    logged as an error; the flusher goes on serving the other connections."""
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server:
        async with raw_clients(server, 2) as (doomed_client, other):
            doomed, survivor = sorted(
                server.connections,
                key=lambda ws: ws.remote_address[1] != doomed_client.stream.socket.getsockname()[1],
            )
            assert doomed.try_send_nowait(b"first words")  # at once
            assert doomed.try_send_nowait(b"last words")  # deferred: the burst's second
            assert doomed.buffered_amount > 0
            if how == "close":
                with trio.fail_after(5):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(doomed.close, 4001, "bye")
                        await trio.sleep(0.05)
                        received = await doomed_client.read_to_eof()
                assert received.startswith(b"\x82\x0bfirst words\x82\x0alast words\x88")
            else:
                doomed_client.stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                await doomed_client.stream.aclose()
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            assert survivor.try_send_nowait(b"still served")
            assert await read_messages(other, 1) == [b"still served"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_bursts_with_yields_between_reach_every_client_whole_and_in_order(tls: bool) -> None:
    """Bursts of broadcasts of every size, some compressed per connection, with checkpoints,
    quiet spells and awaited sends in between, over TCP and over TLS (where the flusher
    hands the output to a writer task): every client gets every message once, in order."""
    server_context, client_context = tls_contexts() if tls else (None, None)
    rng = random.Random(3)
    sizes = [rng.choice([0, 1, 64, 125, 126, 5_000, 40_000]) for _ in range(300)]
    messages = [bytes([i % 256]) * size + b"#%d" % i for i, size in enumerate(sizes)]
    async with trio_ws.open_server(
        wait_forever, "127.0.0.1", 0, ssl_context=server_context, compression="deflate"
    ) as server:
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{server.port}/"
        received: list[list[bytes]] = [[], [], []]

        async def client(i: int, task_status: trio.TaskStatus[None]) -> None:
            options: dict[str, Any] = {"compression": "deflate" if i else None, "max_size": None}
            if tls:
                options["ssl_context"] = client_context
            async with trio_ws.connect(url, **options) as ws:
                task_status.started()
                while len(received[i]) < len(messages):
                    received[i].append(bytes(await ws.recv()))  # type: ignore[arg-type]

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    await nursery.start(client, i)
                while len(server.connections) < 3:
                    await trio.sleep(0.01)
                first = next(iter(server.connections))
                for message in messages:
                    step = rng.random()
                    if step < 0.1:
                        await first.send(message)  # one connection gets it awaited...
                        assert trio_ws.broadcast(server.connections - {first}, message) == 2
                    else:
                        while trio_ws.broadcast(server.connections, message) == 0:
                            await trio.sleep(0.001)  # backed up: nothing was queued anywhere
                    if step > 0.97:
                        await trio.sleep(BURST_WINDOW * 1.5)  # a quiet spell
                    elif step > 0.5:
                        await trio.lowlevel.checkpoint()
                    while any(ws.buffered_amount > 2**16 for ws in server.connections):
                        await trio.sleep(0.001)  # let slow clients catch up before the next
    assert received == [messages] * 3


@asynccontextmanager
async def small_window_client(server: trio_ws.WebSocketServer) -> AsyncIterator[RawClient]:
    """An upgraded raw client with a 4 KiB receive buffer, set before it connects so that
    the window stays small: the server's kernel then takes part of a write, and output is
    held, refilled, and deferred behind held bytes."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", server.port))
    client = RawClient(trio.SocketStream(sock))
    try:
        await client.stream.send_all(HANDSHAKE)
        with trio.fail_after(5):
            while b"\r\n\r\n" not in client.received:
                client.received += await client.stream.receive_some()
            client.received = bytearray(bytes(client.received).partition(b"\r\n\r\n")[2])
            while not server.connections:
                await trio.sleep(0.01)
        yield client
    finally:
        await client.stream.aclose()


STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["nowait", "send"]), st.integers(0, 70_000)),
        st.tuples(st.sampled_from(["yield", "quiet"]), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=examples(25), deadline=None)
@given(write_limit=st.sampled_from([0, 64, 1_000, DEFER_LIMIT, 2**16]), steps=STEPS)
def test_any_mix_of_sizes_sends_and_yields_keeps_every_accepted_message_in_order(
    write_limit: int, steps: list[tuple[str, int]]
) -> None:
    """Arbitrary message sizes (as a hub's publishers choose them), nowait and awaited sends,
    yields and quiet spells, under any `write_limit`, to a client that reads as it can: a
    nowait send is refused exactly when more than `write_limit` was waiting, what it queues
    never takes the wait past `write_limit` plus its own frame, and the client gets every
    accepted message once, in order."""

    async def main() -> None:
        async with trio_ws.open_server(wait_forever, "127.0.0.1", 0, write_limit=write_limit) as server:
            async with small_window_client(server) as client:
                (ws,) = server.connections
                expected: list[bytes] = []
                done = trio.Event()

                async def read_until_done() -> None:
                    while not (done.is_set() and len(client.frames()) >= len(expected)):
                        with trio.move_on_after(0.05):
                            chunk = await client.stream.receive_some(4096)
                            assert chunk, "server closed"
                            client.received += chunk

                with trio.fail_after(20):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(read_until_done)
                        for index, (kind, size) in enumerate(steps):
                            payload = bytes([index]) * size
                            if kind == "nowait":
                                before = ws.buffered_amount
                                accepted = ws.try_send_nowait(payload)
                                assert accepted == (before <= write_limit)
                                if accepted:
                                    expected.append(payload)
                                    assert ws.buffered_amount <= write_limit + size + 14
                            elif kind == "send":
                                await ws.send(payload)
                                expected.append(payload)
                            elif kind == "yield":
                                await trio.lowlevel.checkpoint()
                            else:
                                await trio.sleep(BURST_WINDOW * 1.5)
                        done.set()
                assert [bytes(frame.payload) for frame in client.frames()] == expected

    trio.run(main)
