"""A WebSocket over real sockets: messages, cancellation, ping, close semantics."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel

import trio_ws
from trio_ws.frames import Opcode

from .conftest import RawClient, ws_url


async def test_text_binary_and_fragmented_round_trips(echo_server: trio_ws.WebSocketServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"as", b"ync"):
            await trio.lowlevel.checkpoint()
            yield part

    async with trio_ws.connect(ws_url(echo_server)) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(bytearray(b"\x00\xff"))
        assert await ws.recv() == b"\x00\xff"
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
        await ws.send(chunks())
        assert await ws.recv() == b"async"
        await ws.send(b"x" * 2**20)
        assert await ws.recv() == b"x" * 2**20


async def test_send_rejects_what_it_cannot_frame(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.connect(ws_url(echo_server)) as ws:
        with pytest.raises(TypeError, match="json"):
            await ws.send({"a": 1})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await ws.send(42)  # type: ignore[arg-type]
        await ws.send("still usable")
        assert await ws.recv() == "still usable"


async def test_mixed_fragment_types_fail_the_connection_with_1011(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    async with trio_ws.connect(ws_url(echo_server)) as ws:
        with pytest.raises(TypeError):
            await ws.send(["text", b"bytes"])
        with pytest.raises(trio_ws.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011


async def test_cancelled_recv_loses_and_reorders_nothing() -> None:
    count = 1500

    async def producer(ws: trio_ws.WebSocket) -> None:
        rng = random.Random(1)
        for i in range(count):
            await ws.send(str(i))
            if rng.random() < 0.3:
                await trio.sleep(rng.random() / 2000)

    received: list[str | bytes] = []
    cancellations = 0
    rng = random.Random(2)
    async with (
        trio_ws.open_server(producer, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        while len(received) < count:
            with trio.move_on_after(rng.random() / 3000) as scope:
                received.append(await ws.recv())
            cancellations += scope.cancelled_caught
    assert received == [str(i) for i in range(count)]
    assert cancellations > 100, "the test must actually cancel recv() many times"


async def test_ping_returns_the_round_trip_time(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.connect(ws_url(echo_server)) as ws:
        rtt = await ws.ping()
        assert 0 < rtt < 1
        assert await ws.ping(b"payload") > 0
        async with trio.open_nursery() as nursery:  # concurrent pings all complete
            for _ in range(5):
                nursery.start_soon(ws.ping)


async def test_handler_return_closes_with_1000() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send("bye")

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(trio_ws.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1000
        assert ws.close_code == 1000
        assert ws.state is trio_ws.State.CLOSED


async def test_handler_exception_closes_with_1011_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        raise ValueError("boom in handler")

    caplog.set_level(logging.ERROR, logger="trio_ws")
    async with (
        trio_ws.open_server(handler, "127.0.0.1", 0) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        with pytest.raises(trio_ws.ConnectionClosedError) as info:
            await ws.recv()
    assert (info.value.code, info.value.reason) == (1011, "internal error")
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert "boom in handler" in caplog.text


async def test_connection_closed_in_handler_is_not_logged_as_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        while True:
            await ws.recv()  # raises ConnectionClosedOK when the client leaves

    caplog.set_level(logging.DEBUG, logger="trio_ws")
    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)):
            pass
        await trio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "handler ended on a closed connection" in caplog.text


async def test_lost_tcp_connection_raises_1006_in_the_handler() -> None:
    outcome: list[BaseException] = []
    done = trio.Event()

    async def handler(ws: trio_ws.WebSocket) -> None:
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            outcome.append(exc)
            done.set()

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        await raw.stream.aclose()  # no close frame
        with trio.fail_after(5):
            await done.wait()
    assert isinstance(outcome[0], trio_ws.ConnectionClosedError)
    assert outcome[0].code == 1006


def recording_close(seen: list[trio_ws.ConnectionClosed]) -> trio_ws.server.Handler:
    """A handler that waits for a message and records how the connection closed."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as exc:
            seen.append(exc)

    return handler


async def test_close_with_code_and_reason_reaches_the_server() -> None:
    seen: list[trio_ws.ConnectionClosed] = []
    handler = recording_close(seen)

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.close(4321, "custom")
            assert ws.close_code == 4321
            with pytest.raises(trio_ws.ConnectionClosedError):
                await ws.send("after close")
    assert (seen[0].code, seen[0].reason) == (4321, "custom")


async def test_body_exception_comes_out_unwrapped(echo_server: trio_ws.WebSocketServer) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with trio_ws.connect(ws_url(echo_server)):
            raise KeyError("mine")
    with pytest.raises(LookupError, match="server body"):
        async with trio_ws.open_server(lambda ws: ws.close(), "127.0.0.1", 0):
            raise LookupError("server body")


async def test_protocol_violation_from_peer_gets_1002() -> None:
    seen: list[trio_ws.ConnectionClosed] = []
    handler = recording_close(seen)

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        await raw.stream.send_all(b"\x81\x05hello")  # unmasked client frame
        with trio.fail_after(5):
            await raw.read_to_eof()
    close = [f for f in raw.frames() if f.opcode is Opcode.CLOSE]
    assert close and close[0].payload[:2] == (1002).to_bytes(2, "big")
    assert seen[0].code == 1002


async def test_send_waits_when_the_peer_does_not_read() -> None:
    sent = 0

    async def firehose(ws: trio_ws.WebSocket) -> None:
        nonlocal sent
        while True:
            await ws.send(b"x" * 65536)
            sent += 1

    async with trio_ws.open_server(firehose, "127.0.0.1", 0, write_limit=2**16) as server:
        raw = await RawClient.connect(server.port)  # reads nothing from here on
        await trio.sleep(0.5)
        stalled_at = sent
        await trio.sleep(0.5)
        assert sent == stalled_at, "send() must block while the peer reads nothing"
        assert sent * 65536 < 64 * 2**20, "buffered far more than socket buffers plus write_limit"
        await raw.stream.aclose()
