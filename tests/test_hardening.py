"""Regressions found by misbehaving on purpose: lost messages, unbounded buffers, HTTP edges.

Each test names the hostile case it reproduces; each runs a healthy echo client on the same
server throughout and checks it never waited more than 250 ms.
"""

from __future__ import annotations

import logging
import os
import ssl
import struct
import zlib
from array import array

import pytest
import trio
import trio.lowlevel
import trustme

import trio_ws
from trio_ws.frames import Frame, Opcode, serialize_frame

from .conftest import RawClient, echo, healthy_canary, hostile_server, with_canary, ws_url

DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def client_frame(opcode: Opcode, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    return serialize_frame(Frame(opcode, payload, fin, rsv1), mask=True)


async def read_http_answer(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some():
            answer += chunk
    return answer


async def http_exchange(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request)
    try:
        return await read_http_answer(stream)
    finally:
        await stream.aclose()


# ---- 1. a burst before a close -----------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_burst_of_messages_then_close_reaches_the_handler_whole(compression: str | None) -> None:
    received: list[str | bytes] = []
    done = trio.Event()

    async def busy_then_read(ws: trio_ws.WebSocket) -> None:
        await trio.sleep(0.3)  # busy while the whole burst and the close frame arrive
        async for message in ws:
            received.append(message)
        done.set()

    async with trio_ws.open_server(
        with_canary(busy_then_read), "127.0.0.1", 0, compression=compression
    ) as server:
        async with healthy_canary(ws_url(server, "/canary")):
            raw = await RawClient.connect(server.port)
            burst = b"".join(client_frame(Opcode.TEXT, f"m{i}".encode()) for i in range(40))
            await raw.stream.send_all(burst + client_frame(Opcode.CLOSE, b"\x03\xe8"))
            with trio.fail_after(5):
                await done.wait()
            await raw.read_to_eof()
    assert received == [f"m{i}" for i in range(40)]


# ---- 2. memoryviews of wider items -------------------------------------------------------


def wide_views() -> list[memoryview]:
    small = memoryview(array("i", [1, 2, 3]))
    random_ints = array("q", struct.unpack("10000q", os.urandom(80_000)))  # stored-block path
    compressible = array("d", [0.5] * 2_000)  # 16 kB that deflates well
    two_d = memoryview(bytes(range(24))).cast("B", (4, 6))
    return [small, memoryview(random_ints), memoryview(compressible), two_d]


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_send_of_a_memoryview_of_wide_items_sends_its_bytes(compression: str | None) -> None:
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, compression=compression) as server,
        trio_ws.connect(ws_url(server), compression=compression) as ws,
    ):
        for view in wide_views():
            await ws.send(view)  # the client frames it, the server echoes it
            assert await ws.recv() == view.tobytes()
        await ws.send(array("h", [7, 8, 9]))  # any bytes-like object, not only memoryview
        assert await ws.recv() == array("h", [7, 8, 9]).tobytes()
        await ws.send([memoryview(array("i", [1])), memoryview(array("i", [2]))])  # fragments too
        assert await ws.recv() == array("i", [1, 2]).tobytes()


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_server_send_and_broadcast_of_wide_memoryviews(compression: str | None) -> None:
    views = wide_views()

    async def sender(ws: trio_ws.WebSocket) -> None:
        await ws.recv()
        for view in views:
            await ws.send(view)
        for view in views:
            trio_ws.broadcast({ws}, view)
        await ws.recv()

    async with (
        trio_ws.open_server(sender, "127.0.0.1", 0, compression=compression) as server,
        trio_ws.connect(ws_url(server), compression=compression) as ws,
    ):
        await ws.send("go")
        for view in views * 2:
            assert await ws.recv() == view.tobytes()


# ---- 3. a ping flood that never reads ----------------------------------------------------


@pytest.mark.alone  # measures memory
async def test_ping_flood_from_a_peer_that_never_reads_stays_bounded() -> None:
    with hostile_server() as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        async with healthy_canary(server.url + "echo"):
            raw = await RawClient.connect(port, path="/echo")
            before = server.rss()
            pings = client_frame(Opcode.PING, b"p" * 125) * 1000
            sent = 0
            with trio.move_on_after(4):
                while True:
                    await raw.stream.send_all(pings)  # never reads a pong
                    sent += len(pings)
            grown = server.rss() - before
            await raw.stream.aclose()
    print(f"ping flood: {sent / 2**20:.0f} MiB of pings in 4 s, server RSS grew {grown / 2**20:.2f} MiB")
    # Enough that the pongs it asks for would exceed the limit many times over if buffered.
    assert sent > 32 * 2**20, f"the flood must really reach the server ({sent} bytes)"
    assert grown < 16 * 2**20, f"server RSS grew {grown / 2**20:.1f} MiB under a ping flood"


async def test_every_ping_is_answered_until_pongs_back_up_then_the_latest() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        few = b"".join(client_frame(Opcode.PING, b"few %d" % i) for i in range(10))
        await raw.stream.send_all(few)
        with trio.fail_after(5):
            while len([f for f in raw.frames() if f.opcode is Opcode.PONG]) < 10:
                raw.received += await raw.stream.receive_some()
        # Now far more than the socket buffers hold, without reading a byte of it.
        count = 40_000
        flood = b"".join(client_frame(Opcode.PING, b"%d" % i + b"." * 120) for i in range(count))
        with trio.fail_after(10):
            await raw.stream.send_all(flood + client_frame(Opcode.CLOSE, b"\x03\xe8"))
            await raw.read_to_eof()
    frames = raw.frames()
    pongs = [f.payload for f in frames if f.opcode is Opcode.PONG]
    assert [p.decode() for p in pongs[:10]] == [f"few {i}" for i in range(10)]
    assert pongs[-1].startswith(b"%d." % (count - 1)), pongs[-1][:10]
    assert len(pongs) < 10 + count, "a flood that is not read must not be answered pong for ping"
    assert frames[-1].opcode is Opcode.CLOSE  # nothing after the close frame


# ---- 4. the inbox, bounded in messages and bytes, checked per frame ----------------------


def deflate_bombs(count: int, size: int) -> bytes:
    """`count` compressed messages of `size` zero bytes each (about 1 kB on the wire)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    frames = []
    for _ in range(count):
        data = compressor.compress(b"\x00" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
        frames.append(client_frame(Opcode.BINARY, data[:-4], rsv1=True))
    return b"".join(frames)


@pytest.mark.alone  # measures memory
async def test_compressed_messages_cannot_overfill_the_inbox() -> None:
    with hostile_server() as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        bombs = deflate_bombs(60, 2**20 - 64)  # built first: it takes this process 0.3 s
        assert len(bombs) < 120_000  # all 60 messages arrive in very few reads
        async with healthy_canary(server.url + "echo"):
            raw = await RawClient.connect(port, path="/idle", headers=DEFLATE)
            assert b"permessage-deflate" in raw.handshake_head
            before = server.rss()
            await raw.stream.send_all(bombs)
            await trio.sleep(1.5)
            grown = server.rss() - before
            await raw.stream.aclose()
    print(f"60 deflate bombs ({len(bombs):,} bytes, 60 MiB inflated): RSS grew {grown / 2**20:.1f} MiB")
    # max_queue_bytes (4 MiB) plus the message that crossed it, plus the inflater's buffers.
    assert grown < 12 * 2**20, f"server RSS grew {grown / 2**20:.1f} MiB for 60 kB received"


async def test_max_queue_is_checked_per_message_and_nothing_is_lost() -> None:
    """With max_queue=(4, 1), a burst of 200 small messages in one read is parsed only as
    far as the inbox allows; every one still arrives, in order."""
    received: list[str | bytes] = []
    states_seen: list[int] = []
    done = trio.Event()

    async def slow(ws: trio_ws.WebSocket) -> None:
        await trio.sleep(0.2)
        async for message in ws:
            received.append(message)
            await trio.lowlevel.checkpoint()
        done.set()

    async with trio_ws.open_server(slow, "127.0.0.1", 0, max_queue=(4, 1)) as server:
        raw = await RawClient.connect(server.port)
        burst = b"".join(client_frame(Opcode.BINARY, b"%d" % i) for i in range(200))
        await raw.stream.send_all(burst + client_frame(Opcode.CLOSE, b"\x03\xe8"))
        await trio.sleep(0.1)
        (ws,) = server.connections
        states_seen.append(ws.state)  # still OPEN: the close frame was not parsed yet
        with trio.fail_after(5):
            await done.wait()
        await raw.read_to_eof()
    assert states_seen == [trio_ws.State.OPEN]
    assert received == [b"%d" % i for i in range(200)]


async def test_max_queue_validation() -> None:
    for bad in (0, (4, 5), (-1, 0)):
        with pytest.raises(ValueError, match="max_queue"):
            async with trio_ws.open_server(echo, "127.0.0.1", 0, max_queue=bad):
                pass


# ---- 5. HEAD -----------------------------------------------------------------------------


async def test_head_requests_get_headers_and_no_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trio_ws")

    def health(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path == "/healthz":
            return trio_ws.Response(200, body="ok\n")
        return None

    router = trio_ws.Router()
    router.add("/chat", echo)
    for handler, path, status in [
        (echo, "/", b"426"),
        (echo, "/healthz", b"200"),
        (router, "/nowhere", b"404"),
    ]:
        async with trio_ws.open_server(handler, "127.0.0.1", 0, process_request=health) as server:
            async with healthy_canary(ws_url(server, "/chat" if handler is router else "/")):
                answer = await http_exchange(server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status), head
        assert b"content-length: " in head.lower() and body == b""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# ---- 6. aclose() with handshakes in flight -----------------------------------------------


async def test_aclose_refuses_a_connection_upgraded_during_process_response() -> None:
    entered = trio.Event()

    async def slow_response(request: trio_ws.Request, response: trio_ws.Response) -> None:
        entered.set()
        await trio.sleep(2)

    handlers: list[trio_ws.WebSocket] = []

    async def record(ws: trio_ws.WebSocket) -> None:
        handlers.append(ws)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_ws.serve(
                record, "127.0.0.1", 0, process_response=slow_response, task_status=task_status
            )
        )
        raw = await RawClient.connect(server.port, handshake=False)
        from .conftest import HANDSHAKE

        await raw.stream.send_all(HANDSHAKE)
        with trio.fail_after(5):
            await entered.wait()
        started = trio.current_time()
        with trio.fail_after(3):
            await server.aclose()
        assert trio.current_time() - started < 0.5
        assert not handlers and not server.connections
        assert not (await read_http_answer(raw.stream)).startswith(b"HTTP/1.1 101")


@pytest.mark.parametrize("open_timeout", [10, None])
async def test_aclose_does_not_wait_for_idle_preconnects(open_timeout: float | None) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_ws.serve(
                echo, "127.0.0.1", 0, open_timeout=open_timeout, task_status=task_status
            )
        )
        idle = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(3)]
        partial = await trio.open_tcp_stream("127.0.0.1", server.port)
        await partial.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a request head
        await trio.sleep(0.1)
        started = trio.current_time()
        with trio.fail_after(3):
            await server.aclose()
        assert trio.current_time() - started < 0.5
        for stream in [*idle, partial]:
            assert await read_http_answer(stream) == b""
            await stream.aclose()


# ---- 7. request targets that read differently to a guard and a router --------------------


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/admin", b"401"),
        ("//evil.example/admin", b"404"),
        ("///admin", b"404"),
        ("/%61dmin", b"404"),
        ("http://evil.example/admin", b"400"),
        ("*", b"400"),
        ("/public", b"101"),
    ],
)
async def test_router_and_guard_see_the_same_path(target: str, status: bytes) -> None:
    def guard(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path.startswith("/admin"):
            return trio_ws.Response(401, body="no\n")
        return None

    router = trio_ws.Router()
    router.add("/admin", echo)
    router.add("/public", echo)
    async with trio_ws.open_server(router, "127.0.0.1", 0, process_request=guard) as server:
        request = HANDSHAKE_FOR(target)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(request)
        with trio.fail_after(5):
            answer = await stream.receive_some()
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]


def HANDSHAKE_FOR(target: str, version: str = "1.1", extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/{version}\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


# ---- 8. smaller deviations ---------------------------------------------------------------


async def test_http_10_upgrade_gets_505(echo_server: trio_ws.WebSocketServer) -> None:
    answer = await http_exchange(echo_server.port, HANDSHAKE_FOR("/", "1.0"))
    assert answer.startswith(b"HTTP/1.1 505"), answer[:60]


@pytest.mark.parametrize(
    "extra",
    ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"],
)
async def test_upgrade_with_a_body_gets_400(echo_server: trio_ws.WebSocketServer, extra: str) -> None:
    body = b"\x81\x85" if "Length" in extra else b"5\r\nhello\r\n0\r\n\r\n"
    answer = await http_exchange(echo_server.port, HANDSHAKE_FOR("/", extra=extra) + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:60]
    assert b"body" in answer


async def test_client_percent_encodes_an_iri_path() -> None:
    paths: list[str] = []

    async def record(ws: trio_ws.WebSocket) -> None:
        paths.append(ws.path)

    async with trio_ws.open_server(record, "127.0.0.1", 0) as server:
        for path in ["/café au lait?q=a b", "/%41 b", "/tab\there"]:
            async with trio_ws.connect(ws_url(server, path)) as ws:
                with pytest.raises(trio_ws.ConnectionClosedOK):
                    await ws.recv()
    assert paths == ["/caf%C3%A9%20au%20lait?q=a%20b", "/%41%20b", "/tabhere"]


async def test_server_connections_holds_only_open_sockets() -> None:
    closed_seen: list[bool] = []
    done = trio.Event()

    async def linger(ws: trio_ws.WebSocket) -> None:
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.recv()
        await ws.wait_closed()
        closed_seen.append(ws in server.connections)
        await trio.sleep(0.2)  # the handler goes on after its connection closed
        done.set()

    async with trio_ws.open_server(linger, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)):
            pass
        with trio.fail_after(5):
            await done.wait()
    assert closed_seen == [False]


async def test_tls_verification_failure_says_why() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"failed to verify: .*certificate") as info:
            async with trio_ws.connect(f"wss://127.0.0.1:{server.port}/"):
                pass
        assert "127.0.0.1" in str(info.value)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with trio_ws.connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_context) as ws:
            await ws.send("trusted")
            assert await ws.recv() == "trusted"
