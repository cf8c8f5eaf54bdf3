"""The outbox under pressure: partial writes, backlogs, batched answers and resets.

Each test makes the kernel's send buffer fill on purpose (a peer with a tiny receive buffer
that reads slowly, or never), so that output goes through the write-through, the backlog and
the writer in turn; what the peer finally reads must be every frame, whole, in order.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import time

import pytest
import trio

import trio_ws
from trio_ws.config import Handler
from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame

from .conftest import RawClient, healthy_canary, hostile_server, tls_contexts


def text(payload: bytes) -> bytes:
    return serialize_frame(Frame(Opcode.TEXT, payload), mask=True)


async def slow_reader(raw: RawClient, *, until: int, chunk: int = 4096) -> list[Frame]:
    """Read `chunk` bytes at a time, pausing between reads, until `until` frames are in."""
    parser = FrameParser(require_mask=False)
    parser.feed(raw.received)
    frames: list[Frame] = []
    while True:
        while (frame := parser.next_frame()) is not None:
            frames.append(frame)
        if len(frames) >= until:
            return frames
        data = await raw.stream.receive_some(chunk)
        assert data, "the server closed before sending everything"
        parser.feed(data)
        await trio.sleep(0.0005)


def squeezed(raw: RawClient) -> None:
    """A small receive buffer: the server's writes stop fitting almost at once. (Smaller
    than loopback's 64 kB segments, TCP itself stalls for seconds: plain trio streams too.)"""
    raw.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**16)


def sending_each_plan_from_a_task_of_its_own(plans: dict[int, list[bytes]]) -> Handler:
    """A handler that sends each plan's messages from a task of its own, then waits."""

    async def two_senders(ws: trio_ws.WebSocket) -> None:
        async def send_all(messages: list[bytes]) -> None:
            for message in messages:
                await ws.send(message)

        async with trio.open_nursery() as nursery:
            for messages in plans.values():
                nursery.start_soon(send_all, messages)
        await ws.wait_closed()

    return two_senders


async def test_two_tasks_sending_through_a_full_socket_never_mix_frames() -> None:
    """Two tasks of one handler send messages of random sizes (1 B to 200 kB) while the
    peer reads 16 kB at a time through a small receive buffer: every write is partial,
    backlogs form and writers start and stop; each message must arrive whole, and each
    task's messages in its own order."""
    rng = random.Random(14)
    plans = {
        tag: [bytes([tag]) * rng.choice([1, 100, 5_000, 70_000, 200_000]) + b"%d" % i for i in range(60)]
        for tag in (ord("a"), ord("b"))
    }

    two_senders = sending_each_plan_from_a_task_of_its_own(plans)

    async with trio_ws.open_server(
        two_senders, "127.0.0.1", 0, compression=None, write_limit=2**14
    ) as server:
        raw = await RawClient.connect(server.port)
        squeezed(raw)
        with trio.fail_after(30):
            frames = await slow_reader(raw, until=120, chunk=16384)
        await raw.stream.aclose()
    assert all(frame.fin and frame.opcode is Opcode.BINARY for frame in frames)
    for tag, messages in plans.items():
        assert [f.payload for f in frames if f.payload[0] == tag] == messages


def read_slowly_in_a_thread(port: int, count: int, tls: ssl.SSLContext | None = None) -> list[bytes]:
    """A real peer (`websockets`' sync client) in a thread of its own, through a socket with
    a tiny receive buffer, taking one message at a time with a pause: the kernel drains the
    server's socket while the server is in the middle of writing, so flushes are partial."""
    from websockets.sync.client import connect

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.connect(("127.0.0.1", port))
    received: list[bytes] = []
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/"
    with connect(url, sock=sock, ssl=tls, compression=None, max_size=None, max_queue=1) as ws:
        while len(received) < count:
            message = ws.recv(timeout=20)
            assert isinstance(message, bytes)
            received.append(message)
            time.sleep(0.0002)
    return received


async def test_partial_flushes_to_a_reader_in_another_thread_keep_every_frame_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two tasks send 150 messages each (1 B to 90 kB) to a reader in another thread: the
    kernel takes part of a write, and part of a backlog, while new output keeps coming.
    Each task's messages must arrive whole and in its own order, and the test checks that
    the kernel really took part of a write (a flush that takes nothing, as over loopback to
    a reader in this process, proves nothing). Writing new output ahead of a backlog fails it."""
    rng = random.Random(25)
    plans = {
        tag: [bytes([tag]) * rng.choice([1, 100, 3_000, 20_000, 90_000]) + b"%d" % i for i in range(150)]
        for tag in (ord("a"), ord("b"))
    }
    partial = {"write": 0, "backlog": 0}
    real_write = os.write

    def observed_write(fd: int, data: bytes | bytearray | memoryview) -> int:
        sent = real_write(fd, data)
        if 0 < sent < len(data):
            partial["backlog" if isinstance(data, memoryview) else "write"] += 1
        return sent

    monkeypatch.setattr(os, "write", observed_write)

    two_senders = sending_each_plan_from_a_task_of_its_own(plans)

    async with trio_ws.open_server(
        two_senders, "127.0.0.1", 0, compression=None, write_limit=2**13
    ) as server:
        with trio.fail_after(60):
            received = await trio.to_thread.run_sync(read_slowly_in_a_thread, server.port, 300)
    for tag, messages in plans.items():
        assert [m for m in received if m[0] == tag] == messages
    # The write-through is partial many times a run (about 100 here); the writer's own
    # partial sends happen inside trio and are not counted.
    assert partial["write"] >= 10, partial


async def test_two_tasks_sending_over_tls_to_a_slow_reader_keep_every_frame_in_order() -> None:
    """Over TLS there is no socket to write through: each burst of output gets a writer,
    and output made while it sends waits for it. Two tasks send 100 messages each (1 B to
    90 kB) to a slow reader in another thread; each task's messages arrive whole and in its
    own order, and the connection closes cleanly."""
    rng = random.Random(26)
    plans = {
        tag: [bytes([tag]) * rng.choice([1, 100, 3_000, 20_000, 90_000]) + b"%d" % i for i in range(100)]
        for tag in (ord("a"), ord("b"))
    }
    server_ctx, client_ctx = tls_contexts()
    two_senders = sending_each_plan_from_a_task_of_its_own(plans)
    async with trio_ws.open_server(
        two_senders, "127.0.0.1", 0, compression=None, write_limit=2**13, ssl_context=server_ctx
    ) as server:
        with trio.fail_after(60):
            received = await trio.to_thread.run_sync(read_slowly_in_a_thread, server.port, 200, client_ctx)
        assert all(conn.buffered_amount == 0 for conn in server.connections)
    for tag, messages in plans.items():
        assert [m for m in received if m[0] == tag] == messages


async def test_a_flood_of_small_messages_is_echoed_whole_and_in_order() -> None:
    """20,000 messages in one burst: the server answers them in batches (one write per
    batch of queued answers); the peer reads slowly, so batches meet a full socket too."""
    count = 20_000
    burst = b"".join(text(b"m%d" % i) for i in range(count))

    async def echo(ws: trio_ws.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio_ws.open_server(echo, "127.0.0.1", 0, compression=None) as server:
        raw = await RawClient.connect(server.port)
        squeezed(raw)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.stream.send_all, burst)
            with trio.fail_after(30):
                frames = await slow_reader(raw, until=count, chunk=65536)
        await raw.stream.aclose()
    assert [frame.payload for frame in frames] == [b"m%d" % i for i in range(count)]


async def test_a_peer_that_resets_mid_backlog_ends_the_send_at_once() -> None:
    """The peer reads a little of a 4 MiB message, then resets the connection while most
    of it is still a backlog: the blocked send() raises ConnectionClosed (1006) within a
    second, the connection is gone from the server, and a second connection is served."""
    outcome: list[BaseException | None] = []
    started = trio.Event()

    async def big_sender(ws: trio_ws.WebSocket) -> None:
        if ws.path == "/other":
            await ws.send(await ws.recv())
            return
        started.set()
        try:
            while True:
                await ws.send(b"x" * 2**22)
        except trio_ws.ConnectionClosed as exc:
            outcome.append(exc)
            raise

    async with trio_ws.open_server(big_sender, "127.0.0.1", 0, compression=None) as server:
        raw = await RawClient.connect(server.port)
        squeezed(raw)
        await started.wait()
        raw.received += await raw.stream.receive_some(50_000)
        raw.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await raw.stream.aclose()  # a RST, with megabytes still unsent
        with trio.fail_after(1):
            while not outcome or server.connections:
                await trio.sleep(0.01)
        assert isinstance(outcome[0], trio_ws.ConnectionClosed)
        assert outcome[0].code == 1006
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/other") as ws:
            await ws.send("still here")
            with trio.fail_after(2):
                assert await ws.recv() == "still here"


@pytest.mark.alone  # measures memory
async def test_an_echo_flood_that_is_never_read_stays_bounded() -> None:
    """A peer sends 64 MiB of small messages to /echo and never reads an answer: the
    answers fill the outbox to `write_limit`, send() waits, recv() stops, the inbox fills,
    the reader stops reading, and TCP pushes back. The server's memory stays flat and a
    healthy client on the same server is served throughout."""
    with hostile_server(compression=None) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        async with healthy_canary(server.url + "echo"):
            raw = await RawClient.connect(port, path="/echo")
            squeezed(raw)
            before = server.rss()
            chunk = b"".join(text(b"%d" % i + b"." * 100) for i in range(100))  # 11 kB
            sent = 0
            with trio.move_on_after(3):
                while sent < 64 * 2**20:
                    await raw.stream.send_all(chunk)  # blocks once the server pushes back
                    sent += len(chunk)
            grown = server.rss() - before
            await raw.stream.aclose()
    print(f"echo flood: {sent / 2**20:.1f} MiB sent unread, server RSS grew {grown / 2**20:.2f} MiB")
    assert sent > 2**18, f"the flood must really reach the server and be echoed ({sent} bytes)"
    assert sent < 64 * 2**20, "the server must push back instead of reading 64 MiB it cannot answer"
    assert grown < 16 * 2**20, f"server RSS grew {grown / 2**20:.1f} MiB under an unread echo flood"
