"""A hundred WebSockets over one HTTP/2 connection: each in order, none stalled by a
neighbour that stopped reading, one closed without the others, and a drain's GOAWAY."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

import trio_ws

from .h2_peer import RawH2

STREAMS = 100
MESSAGES = 100
NOISE = os.urandom(1000)


async def server_handler(ws: trio_ws.WebSocket) -> None:
    if ws.path == "/never-reads":
        await ws.wait_closed()  # the client's sends to it must stall it alone
    elif ws.path == "/floods":
        while True:  # sends until the client (which never reads) stops it
            await ws.send(NOISE)
    else:
        async for message in ws:
            await ws.send(message)


async def echo_in_order(uri: str, i: int, durations: list[float]) -> trio_ws.WebSocket:
    start = trio.current_time()
    async with trio_ws.connect(uri, http2=True, open_timeout=10) as ws:
        for j in range(MESSAGES):
            await ws.send(f"{i}:{j}")
        for j in range(MESSAGES):
            assert await ws.recv() == f"{i}:{j}", "in order, on every stream"
    durations.append(trio.current_time() - start)
    return ws


async def echo_all(uri: str, count: int) -> tuple[float, list[float]]:
    durations: list[float] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(echo_in_order, uri, i, durations)
    return trio.current_time() - start, durations


@pytest.mark.alone
async def test_a_hundred_websockets_on_one_connection_none_stalled_by_a_neighbour() -> None:
    peers: list[Any] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        peers.append(ws.remote_address)
        await server_handler(ws)

    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        0,
        http2=True,
        http2_cleartext=True,
        write_limit=64 * 1024,
        compression=None,  # what holds a sender back is the window, not deflate
    ) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        baseline, _ = await echo_all(f"{uri}/echo", STREAMS)
        assert len(set(peers)) == 1 and len(peers) == STREAMS, "a hundred streams, one connection"

        # Now two of the hundred stop reading: one server handler never reads what its
        # client sends, and one client never reads what its server handler sends.
        peers.clear()
        sent_to_sleeper = 0
        # Kept open while the others run: they share its connection.
        async with (
            # (Its close frame cannot go either: it is dropped after close_timeout.)
            trio_ws.connect(f"{uri}/never-reads", http2=True, close_timeout=0.2) as sleeper,
            trio_ws.connect(f"{uri}/floods", http2=True),
        ):
            async with trio.open_nursery() as stalled:

                async def feed_the_sleeper() -> None:
                    nonlocal sent_to_sleeper
                    while True:
                        await sleeper.send(NOISE)
                        sent_to_sleeper += 1

                stalled.start_soon(feed_the_sleeper)
                await trio.sleep(0.3)  # both directions of the two are now stuck on their windows
                stuck_at = sent_to_sleeper
                elapsed, _ = await echo_all(f"{uri}/echo", STREAMS - 2)
                assert sent_to_sleeper == stuck_at, "the sleeper's window stayed shut meanwhile"
                assert len(set(peers)) == 1, "all on one connection"
                stalled.cancel_scope.cancel()
        # "Full speed": the 98 take about what the 100 took alone; a window shared with the
        # stuck streams would stall them all until the deadline.
        assert elapsed < baseline * 3 + 0.5, f"{elapsed:.2f}s with two stuck streams, {baseline:.2f}s without"
        # The windows held the backlog, not memory: at most a window's worth each.
        assert sent_to_sleeper * 1000 < 2 * trio_ws.Http2Limits().stream_window + 2 * 64 * 1024


async def test_closing_one_stream_leaves_the_others_open() -> None:
    async with trio_ws.open_server(
        server_handler, "127.0.0.1", 0, http2=True, http2_cleartext=True
    ) as server:
        uri = f"ws://127.0.0.1:{server.port}/echo"
        async with trio.open_nursery() as nursery:
            opened: list[trio_ws.WebSocket] = []
            first: list[trio_ws.WebSocket] = []
            done = trio.Event()

            async def hold(i: int) -> None:
                async with trio_ws.connect(uri, http2=True) as ws:
                    opened.append(ws)
                    if i == 0:
                        first.append(ws)
                        return  # closes at once
                    await done.wait()
                    await ws.send(f"after {i}")
                    assert await ws.recv() == f"after {i}"

            for i in range(STREAMS):
                nursery.start_soon(hold, i)
            with trio.fail_after(10):
                while len(opened) < STREAMS or first[0].close_code is None:
                    await trio.sleep(0.01)
            closed = [ws for ws in opened if ws.close_code is not None]
            assert closed == first and first[0].close_code == 1000
            done.set()
        assert all(ws.close_code == 1000 for ws in opened)


async def test_a_drain_sends_goaway_and_every_stream_closes_with_1001() -> None:
    async with trio_ws.open_server(
        server_handler, "127.0.0.1", 0, http2=True, http2_cleartext=True
    ) as server:
        port = server.port
        raw = await RawH2.connect(port)
        raw_sid = await raw.open_websocket("/echo")
        opened: list[trio_ws.WebSocket] = []
        codes: list[int | None] = []
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo", http2=True) as ws:
                    opened.append(ws)
                    with pytest.raises(trio_ws.ConnectionClosedOK):
                        await ws.recv()
                codes.append(ws.close_code)

            for _ in range(STREAMS):
                nursery.start_soon(hold)
            with trio.fail_after(10):
                while len(opened) < STREAMS:
                    await trio.sleep(0.01)
            nursery.start_soon(server.drain, 0.2)
            # GOAWAY comes at once, while the streams are still open...
            await raw.pump(lambda: raw.goaway is not None)
            assert raw.goaway is not None and raw.goaway.error_code == 0
            assert raw.goaway.last_stream_id >= raw_sid
            # ...and a stream opened after it is refused.
            late = raw.h2.get_next_available_stream_id()
            raw.h2.send_headers(
                late,
                [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")],
                end_stream=True,
            )
            await raw.flush()
            await raw.pump(lambda: late in raw.resets)
            assert raw.resets[late] == 0x7  # REFUSED_STREAM
            # Then, past the graceful timeout, each stream is closed with 1001.
            await raw.pump(lambda: any(f.opcode.name == "CLOSE" for f in raw.frames(raw_sid)))
            await raw.aclose()
        assert codes == [1001] * STREAMS
