"""What goes on the wire for an RFC 8441 WebSocket, seen by a hand-driven HTTP/2 peer: the
answer, the closing handshake ending the stream, an abort resetting it, windows."""

from __future__ import annotations

import pytest
import trio

import trio_ws
from trio_ws.frames import Frame, Opcode, parse_close, serialize_close

from .h2_peer import RawH2


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def test_the_answer_and_a_client_initiated_close_end_the_stream_without_a_reset() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, http2=True, http2_cleartext=True) as server:
        peer = await RawH2.connect(server.port)
        assert peer.settings is not None
        assert peer.settings.changed_settings[0x8].new_value == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        sid = await peer.open_websocket("/", [(b"sec-websocket-protocol", b"x")])
        assert peer.status(sid) == 200
        assert b"sec-websocket-accept" not in peer.headers[sid]  # HTTP/1.1's, not RFC 8441's
        await peer.send_message(sid, "hello")
        await peer.pump(lambda: peer.messages(sid) == [b"hello"])
        await peer.send_frame(sid, Frame(Opcode.CLOSE, serialize_close(1000, "done")))
        # The server answers the close frame and ends its side of the stream: its "TCP close".
        await peer.pump(lambda: sid in peer.ended)
        closing = [f for f in peer.frames(sid) if f.opcode is Opcode.CLOSE]
        assert [parse_close(f.payload) for f in closing] == [(1000, "done")]
        peer.h2.end_stream(sid)
        await peer.flush()
        # The connection stays up for more streams, and the closed one was never reset.
        second = await peer.open_websocket("/")
        assert peer.status(second) == 200
        assert sid not in peer.resets
        await peer.aclose()


async def test_a_server_initiated_close_waits_for_the_peers_close_frame_then_ends_the_stream() -> None:
    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.close(4000, "server says bye")

    async with trio_ws.open_server(handler, "127.0.0.1", 0, http2=True, http2_cleartext=True) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        await peer.pump(lambda: any(f.opcode is Opcode.CLOSE for f in peer.frames(sid)))
        assert sid not in peer.ended, "the stream stays open until the peer answers the close frame"
        await peer.send_frame(sid, Frame(Opcode.CLOSE, serialize_close(4000)))
        await peer.pump(lambda: sid in peer.ended)
        peer.h2.end_stream(sid)
        await peer.flush()
        with trio.move_on_after(0.2):
            await peer.pump(lambda: sid in peer.resets)
        assert sid not in peer.resets
        await peer.aclose()


async def test_a_peer_that_never_ends_its_side_is_reset_after_close_timeout() -> None:
    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, http2=True, http2_cleartext=True, close_timeout=0.3
    ) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        await peer.send_frame(sid, Frame(Opcode.CLOSE, serialize_close(1000)))
        await peer.pump(lambda: sid in peer.ended)
        # We never send END_STREAM: the server's half-closed stream must not stay forever.
        await peer.pump(lambda: sid in peer.resets, seconds=3)
        await peer.aclose()


async def test_a_full_inbox_holds_back_the_window_update_and_reading_gives_it_back() -> None:
    """The stream's window is the WebSocket's receive buffer: a handler that does not read
    stops the peer once the window is spent; reading again reopens it."""
    reading = trio.Event()
    got: list[int] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        await reading.wait()
        async for message in ws:
            got.append(len(message))

    limits = trio_ws.Http2Limits(stream_window=65535)
    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        0,
        http2=True,
        http2_cleartext=True,
        http2_limits=limits,
        max_queue=2,
        max_queue_bytes=None,
    ) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        chunk = b"x" * 8000
        sent = 0
        with trio.move_on_after(1):
            while True:
                while peer.h2.local_flow_control_window(sid) < len(chunk) + 14:
                    await peer.read_once()
                await peer.send_message(sid, chunk)
                sent += 1
        window = peer.h2.local_flow_control_window(sid)
        assert window < len(chunk) + 14, "the window closed while the handler did not read"
        assert sent < 20, f"{sent} messages of 8 kB went into a 64 KiB window"
        reading.set()
        for _ in range(10):
            while peer.h2.local_flow_control_window(sid) < len(chunk) + 14:
                await peer.read_once()
            await peer.send_message(sid, chunk)
        with trio.fail_after(5):
            while len(got) < sent + 10:
                await trio.sleep(0.01)
        assert got == [8000] * (sent + 10)
        await peer.aclose()


@pytest.mark.parametrize("code", [0x1, 0x8])
async def test_the_peer_resetting_a_stream_ends_that_websocket_as_abnormal(code: int) -> None:
    ended: dict[str, int | None] = {}

    async def handler(ws: trio_ws.WebSocket) -> None:
        try:
            await echo(ws)
        finally:
            ended[ws.path] = ws.close_code

    async with trio_ws.open_server(handler, "127.0.0.1", 0, http2=True, http2_cleartext=True) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/reset")
        other = await peer.open_websocket("/other")
        peer.h2.reset_stream(sid, code)
        await peer.flush()
        with trio.fail_after(5):
            while "/reset" not in ended:
                await trio.sleep(0.01)
        assert ended["/reset"] == 1006
        await peer.send_message(other, b"ok")
        await peer.pump(lambda: peer.messages(other) == [b"ok"])
        await peer.aclose()


@pytest.mark.parametrize("max_streams", [2, 64])
async def test_streams_opened_and_reset_in_one_read_never_take_the_connection_down(max_streams: int) -> None:
    """HEADERS and RST_STREAM for one stream in the same read: h2 has closed the stream by
    the time its request is handled. With 2, the reset streams' handlers (still in a slow
    process_request) hold the slots, so the later ones are refused; with 64 they are
    answered. Either way the connection carries on."""
    from hyperframe.frame import HeadersFrame, RstStreamFrame

    async def slow(request: trio_ws.Request) -> None:
        if request.path == "/slow":
            await trio.sleep(1)

    limits = trio_ws.Http2Limits(max_concurrent_streams=max_streams)
    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, http2=True, http2_cleartext=True, http2_limits=limits, process_request=slow
    ) as server:
        peer = await RawH2.connect(server.port)
        steady = await peer.open_websocket("/")
        encoder = peer.h2.encoder  # the connection's own HPACK state, so that it stays in step
        burst = b""
        for sid in range(steady + 2, steady + 2 + 2 * 20, 2):
            block = encoder.encode(
                [
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":scheme", "http"),
                    (":path", "/slow"),
                    (":authority", "127.0.0.1"),
                    ("sec-websocket-version", "13"),
                ]
            )
            burst += HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize()
            burst += RstStreamFrame(sid, error_code=8).serialize()
        await peer.send_raw(burst)
        await trio.sleep(0.2)
        assert not peer.goaway_codes, "the connection carries on"
        await peer.send_message(steady, "still here")
        await peer.pump(lambda: b"still here" in peer.messages(steady))
        await peer.aclose()


async def test_a_burst_of_small_messages_leaves_in_few_data_frames() -> None:
    """Sends are framed when the connection's writer runs: a burst of 200 small messages
    goes out in a handful of DATA frames, every message whole and in order (one frame per
    message would cost the peer a frame parse each)."""

    async def burst(ws: trio_ws.WebSocket) -> None:
        for i in range(200):
            await ws.send(f"message {i}")
        await ws.wait_closed()

    async with trio_ws.open_server(
        burst, "127.0.0.1", 0, http2=True, http2_cleartext=True, compression=None
    ) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        await peer.pump(lambda: len(peer.messages(sid)) == 200)
        assert peer.messages(sid) == [f"message {i}".encode() for i in range(200)]
        assert peer.data_frames[sid] <= 20, f"{peer.data_frames[sid]} DATA frames for 200 messages"
        await peer.aclose()
