"""WebSockets over HTTP/2 (RFC 8441), trio_ws's client against trio_ws's server, over real
sockets: TLS with ALPN and cleartext by prior knowledge, the same request path as HTTP/1.1,
one connection per origin, fallback, closing, and every feature that sits on a connection."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws.http2_connection import Http2Stream

from .conftest import tls_contexts


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def over_http2(ws: trio_ws.WebSocket) -> bool:
    """Whether `ws` runs on an HTTP/2 stream (both ends say so: the server's request, the
    client's answer)."""
    return ws.request.http_version == "2" or ws.response.status == 200


@pytest.fixture
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts()


async def test_wss_over_http2_by_alpn_text_binary_big_and_deflate(tls: Any) -> None:
    server_context, client_context = tls
    seen: list[trio_ws.Request] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        seen.append(ws.request)
        await echo(ws)

    async with trio_ws.open_server(handler, "127.0.0.1", 0, ssl_context=server_context, http2=True) as server:
        port = server.port
        uri = f"wss://127.0.0.1:{port}/chat?room=1"
        async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:
            assert ws.response.status == 200  # RFC 8441: a 2xx, not a 101
            assert (ws.request.method, ws.request.http_version, ws.request.protocol) == (
                "CONNECT",
                "2",
                "websocket",
            )
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff" * 10)
            assert await ws.recv() == b"\x00\xff" * 10
            big = bytes(range(256)) * 4096  # 1 MiB: many frames, many window updates
            await ws.send(big)
            assert await ws.recv() == big
        assert ws.close_code == 1000
        async with trio_ws.connect(uri, ssl_context=client_context, http2=True, compression="deflate") as ws:
            await ws.send("z" * 100_000)
            assert await ws.recv() == "z" * 100_000
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
    request = seen[0]
    assert (request.method, request.http_version, request.protocol) == ("CONNECT", "2", "websocket")
    assert request.path == "/chat?room=1" and request.query == {"room": ["1"]}
    assert request.scheme == "wss"
    assert request.headers["Host"] == f"127.0.0.1:{port}"  # from :authority
    assert request.headers["Sec-WebSocket-Version"] == "13"


async def test_cleartext_http2_by_prior_knowledge() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, http2=True, http2_cleartext=True) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", http2=True) as ws:
            assert isinstance(ws._core.transport, Http2Stream)
            await ws.send("plain")
            assert await ws.recv() == "plain"
        # HTTP/1.1 still works on the same port.
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            assert ws.response.status == 101
            await ws.send("one")
            assert await ws.recv() == "one"


async def test_a_server_without_http2_gets_http11(tls: Any) -> None:
    server_context, client_context = tls
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_context) as server:
        async with trio_ws.connect(
            f"wss://127.0.0.1:{server.port}/", ssl_context=client_context, http2=True
        ) as ws:
            assert ws.response.status == 101  # ALPN chose http/1.1: the upgrade on that connection
            await ws.send("x")
            assert await ws.recv() == "x"
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", http2=True) as ws:
            assert ws.response.status == 101  # no h2c there: HTTP/1.1 on a new connection
            await ws.send("y")
            assert await ws.recv() == "y"
    # http2=True on the server without cleartext: a prior-knowledge client falls back too.
    async with trio_ws.open_server(echo, "127.0.0.1", 0, http2=True) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", http2=True) as ws:
            assert ws.response.status == 101


async def test_connects_to_one_origin_share_one_connection_closed_with_the_last(tls: Any) -> None:
    server_context, client_context = tls
    peers: list[Any] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        peers.append(ws.remote_address)
        await echo(ws)

    async with trio_ws.open_server(handler, "127.0.0.1", 0, ssl_context=server_context, http2=True) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        async with trio.open_nursery() as nursery:

            async def one(i: int) -> None:
                async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:
                    for j in range(20):
                        await ws.send(f"{i}:{j}")
                        assert await ws.recv() == f"{i}:{j}"

            for i in range(10):
                nursery.start_soon(one, i)
        assert len(peers) == 10
        assert len(set(peers)) == 1, "ten WebSockets, one TCP connection (one client port)"
        # The pool closed it with its last stream: the server sees it go.
        with trio.fail_after(5):
            while server.stats()["trio_ws_http2_connections_open"][()]:
                await trio.sleep(0.01)
        async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:
            await ws.send("again")
            assert await ws.recv() == "again"
        assert peers[-1] != peers[0], "a new connection once the old one closed"


async def test_the_same_request_path_as_http11(tls: Any) -> None:
    """process_request, process_response, origins, subprotocols and refusals are HTTP/1.1's."""
    server_context, client_context = tls

    def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path_only == "/healthz":
            return trio_ws.Response(200, {"Content-Type": "text/plain"}, "ok\n")
        if request.path_only == "/moved":
            return trio_ws.Response(302, {"Location": "/chat"})
        if "token=good" not in request.path and request.path_only != "/chat":
            return trio_ws.Response(403, body="no token\n")
        return None

    def process_response(request: trio_ws.Request, response: trio_ws.Response) -> None:
        response.headers["X-Seen"] = request.http_version

    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(f"{ws.subprotocol} {ws.path}")

    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        0,
        ssl_context=server_context,
        http2=True,
        process_request=process_request,
        process_response=process_response,
        subprotocols=["chat.v2", "chat.v1"],
        origins=["https://ok.example", None],
    ) as server:
        base = f"wss://127.0.0.1:{server.port}"
        with pytest.raises(trio_ws.InvalidHandshake) as refused:
            async with trio_ws.connect(f"{base}/secret", ssl_context=client_context, http2=True):
                pass
        assert refused.value.status == 403
        assert refused.value.body == b"no token\n"
        assert refused.value.headers["X-Seen"] == "2"
        with pytest.raises(trio_ws.InvalidHandshake) as refused:
            async with trio_ws.connect(
                f"{base}/chat", ssl_context=client_context, http2=True, origin="https://evil.example"
            ):
                pass
        assert refused.value.status == 403
        async with trio_ws.connect(
            f"{base}/moved", ssl_context=client_context, http2=True, subprotocols=["chat.v1"]
        ) as ws:  # the 302 is followed, over HTTP/2 again
            assert await ws.recv() == "chat.v1 /chat"
            assert ws.subprotocol == "chat.v1"
            assert ws.response.headers["X-Seen"] == "2"


async def test_plain_http2_requests_reach_process_request(tls: Any) -> None:
    """A browser's page and its WebSockets come over one connection: a GET over HTTP/2 is
    answered by process_request; without an answer it is a 400 that says why."""
    server_context, _client_context = tls
    page = "<html>hello</html>"

    def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path_only == "/":
            return trio_ws.Response(200, {"Content-Type": "text/html", "Connection": "close"}, page)
        return None

    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, http2=True, http2_cleartext=True, process_request=process_request
    ) as server:
        answers = await raw_h2_requests(server.port, ["/", "/missing"])
    assert answers["/"][0] == 200
    assert answers["/"][1] == page.encode()
    assert answers["/"][2][b"content-type"] == b"text/html"
    assert b"connection" not in answers["/"][2]  # connection-specific: not sent over HTTP/2
    assert answers["/missing"][0] == 400
    assert b"Extended CONNECT" in answers["/missing"][1]
    del server_context


async def raw_h2_requests(port: int, paths: list[str]) -> dict[str, tuple[int, bytes, dict[bytes, bytes]]]:
    """GET each path over one cleartext HTTP/2 connection (h2 as the client); each answer's
    status, body and headers."""
    import h2.config
    import h2.connection
    import h2.events

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    ids = {}
    for path in paths:
        sid = conn.get_next_available_stream_id()
        ids[sid] = path
        headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")]
        headers.append((b":path", path.encode()))
        conn.send_headers(sid, headers, end_stream=True)
    await stream.send_all(conn.data_to_send())
    answers: dict[str, list[Any]] = {path: [0, b"", {}] for path in paths}
    done: set[int] = set()
    with trio.fail_after(5):
        while len(done) < len(paths):
            data = await stream.receive_some(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    fields = dict(event.headers)
                    answers[ids[event.stream_id]][0] = int(fields[b":status"])
                    answers[ids[event.stream_id]][2] = fields
                elif isinstance(event, h2.events.DataReceived):
                    answers[ids[event.stream_id]][1] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    done.add(event.stream_id)
            await stream.send_all(conn.data_to_send())
    await stream.aclose()
    return {path: (a[0], a[1], a[2]) for path, a in answers.items()}


async def test_closing_ends_the_stream_and_an_abort_resets_it_neighbours_unharmed(tls: Any) -> None:
    server_context, client_context = tls
    closed: dict[str, Any] = {}

    async def handler(ws: trio_ws.WebSocket) -> None:
        try:
            if ws.path == "/close-me":
                await ws.close(4001, "bye")
            elif ws.path == "/fail":
                raise RuntimeError("boom")  # 1011, the stream ends cleanly
            else:
                await echo(ws)
        finally:
            closed[ws.path] = ws.close_code

    async with trio_ws.open_server(handler, "127.0.0.1", 0, ssl_context=server_context, http2=True) as server:
        base = f"wss://127.0.0.1:{server.port}"
        async with trio_ws.connect(f"{base}/echo", ssl_context=client_context, http2=True) as steady:
            async with trio_ws.connect(f"{base}/close-me", ssl_context=client_context, http2=True) as ws:
                with pytest.raises(trio_ws.ConnectionClosedError):
                    await ws.recv()
            assert (ws.close_code, ws.close_reason) == (4001, "bye")
            async with trio_ws.connect(f"{base}/fail", ssl_context=client_context, http2=True) as ws:
                with pytest.raises(trio_ws.ConnectionClosedError):
                    await ws.recv()
            assert ws.close_code == 1011
            # A cancelled client aborts: RST_STREAM, and the server's side is abnormal.
            with trio.move_on_after(0.2):
                async with trio_ws.connect(f"{base}/abort", ssl_context=client_context, http2=True) as ws:
                    await trio.sleep_forever()
            with trio.fail_after(5):
                while "/abort" not in closed:
                    await trio.sleep(0.01)
            assert closed["/abort"] == 1006
            await steady.send("still here")
            assert await steady.recv() == "still here"
        assert steady.close_code == 1000


async def test_broadcast_keepalive_and_limits_on_http2_streams(tls: Any) -> None:
    server_context, client_context = tls
    connected = trio.Event()
    everyone: set[trio_ws.WebSocket] = set()

    async def handler(ws: trio_ws.WebSocket) -> None:
        everyone.add(ws)
        if len(everyone) == 3:
            connected.set()
        await ws.wait_closed()

    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        0,
        ssl_context=server_context,
        http2=True,
        ping_interval=0.05,
        ping_timeout=1,
        max_size=1000,
    ) as server:
        base = f"wss://127.0.0.1:{server.port}"
        async with (
            trio_ws.connect(base, ssl_context=client_context, http2=True) as a,
            trio_ws.connect(base, ssl_context=client_context, http2=True) as b,
            trio_ws.connect(base, ssl_context=client_context) as c,  # HTTP/1.1 beside them
        ):
            await connected.wait()
            trio_ws.broadcast(everyone, "to all")
            for ws in (a, b, c):
                assert await ws.recv() == "to all"
            await trio.sleep(0.3)
            assert all(ws.latency > 0 for ws in everyone), "keepalive pings answered on every stream"
            await a.send("x" * 2000)  # past max_size: 1009 for that stream only
            with pytest.raises(trio_ws.ConnectionClosedError):
                await a.recv()
            assert a.close_code == 1009
            await b.send("fine")
            trio_ws.broadcast(everyone - {w for w in everyone if w.close_code is not None}, "still")
            assert await b.recv() == "still"


async def test_http2_through_an_http_connect_proxy(tls: Any, tmp_path: Any) -> None:
    """The proxy sees one CONNECT tunnel; inside it, TLS then HTTP/2, and both WebSockets
    share it."""
    from .proxies import tinyproxy

    server_context, client_context = tls
    peers: list[Any] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        peers.append((ws.request.http_version, ws.remote_address))
        await echo(ws)

    proxy = tinyproxy(tmp_path)
    try:
        async with trio_ws.open_server(
            handler, "127.0.0.1", 0, ssl_context=server_context, http2=True
        ) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            options: dict[str, Any] = {"ssl_context": client_context, "http2": True, "proxy": proxy.url}
            async with trio_ws.connect(uri, **options) as a, trio_ws.connect(uri, **options) as b:
                for ws in (a, b):
                    await ws.send("tunnelled")
                    assert await ws.recv() == "tunnelled"
    finally:
        log = proxy.stop()
    assert [version for version, _ in peers] == ["2", "2"]
    assert peers[0][1] == peers[1][1], "one tunnel, one connection"
    assert log.count("CONNECT") >= 1


async def test_reconnect_over_http2(tls: Any) -> None:
    server_context, client_context = tls
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_context, http2=True) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        async with trio_ws.reconnect(
            uri, ssl_context=client_context, http2=True, initial_delay=0.01
        ) as connections:
            async for ws in connections:
                assert ws.response.status == 200
                await ws.send(f"round {connections.opened}")
                assert await ws.recv() == f"round {connections.opened}"
                if connections.opened == 3:
                    break
                for peer in list(server.connections):
                    await peer.close(1012, "restarting")  # the server drops it: reconnect


async def test_max_connections_counts_http2_websockets(tls: Any) -> None:
    server_context, client_context = tls
    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, ssl_context=server_context, http2=True, max_connections=2
    ) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        async with (
            trio_ws.connect(uri, ssl_context=client_context, http2=True),
            trio_ws.connect(uri, ssl_context=client_context, http2=True),
        ):
            with pytest.raises(trio_ws.InvalidHandshake) as refused:
                async with trio_ws.connect(uri, ssl_context=client_context, http2=True):
                    pass
            assert refused.value.status == 503
        async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:  # room again
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_an_idle_http2_connection_gets_goaway_and_is_closed() -> None:
    from .h2_peer import RawH2

    limits = trio_ws.Http2Limits(idle_timeout=0.3)
    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, http2=True, http2_cleartext=True, http2_limits=limits
    ) as server:
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        await trio.sleep(0.5)  # a stream is open: not idle
        assert not peer.goaway_codes
        peer.h2.reset_stream(sid)
        await peer.flush()
        with trio.fail_after(3):
            while not peer.closed:
                await peer.read_once()
        assert peer.goaway_codes and set(peer.goaway_codes) == {0}  # no new streams, then the end
        with trio.fail_after(3):
            while server.stats()["trio_ws_http2_connections_open"][()]:
                await trio.sleep(0.01)


async def test_an_http2_server_without_extended_connect_gets_http11(tls: Any) -> None:
    """ALPN chose h2, but the server's SETTINGS do not offer RFC 8441: the client goes
    back to HTTP/1.1 on a connection of its own."""
    import h2.config
    import h2.connection

    server_context, client_context = tls
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    upgrades = build_upgrade_server()
    seen: list[str] = []

    async def serve(stream: trio.SocketStream) -> None:
        tls_stream = trio.SSLStream(stream, server_context, server_side=True)
        await tls_stream.do_handshake()
        seen.append(tls_stream.selected_alpn_protocol() or "none")
        if tls_stream.selected_alpn_protocol() == "h2":  # plain HTTP/2: no ENABLE_CONNECT_PROTOCOL
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            await tls_stream.send_all(conn.data_to_send())
            while data := await tls_stream.receive_some():
                conn.receive_data(data)
                await tls_stream.send_all(conn.data_to_send())
            return
        await upgrades.serve_stream(tls_stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with trio_ws.connect(f"wss://127.0.0.1:{port}/", ssl_context=client_context, http2=True) as ws:
            assert ws.response.status == 101
            await ws.send("fell back")
            assert await ws.recv() == "fell back"
        nursery.cancel_scope.cancel()
    assert seen == ["h2", "http/1.1"]


def build_upgrade_server() -> trio_ws.WebSocketServer:
    from trio_ws.server import build_server

    return build_server(trio_ws.ServerConfig(handler=echo), [])


async def test_the_hub_delivers_to_http2_websockets_in_order_slow_ones_by_policy(tls: Any) -> None:
    """Hub subscribers over HTTP/2 streams, beside one over HTTP/1.1: every publication in
    order for the readers; one that never reads is dropped by its policy, not stalling the
    others on its connection."""
    server_context, client_context = tls
    async with trio_ws.open_hub() as hub:
        closed: list[int | None] = []

        async def handler(ws: trio_ws.WebSocket) -> None:
            try:
                async with hub.subscribe(ws, "news", on_overflow="disconnect"):
                    await ws.wait_closed()
            finally:
                closed.append(ws.close_code)

        async with trio_ws.open_server(
            handler,
            "127.0.0.1",
            0,
            ssl_context=server_context,
            http2=True,
            compression=None,
            close_timeout=0.5,
        ) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            async with (
                trio_ws.connect(uri, ssl_context=client_context, http2=True) as a,
                trio_ws.connect(uri, ssl_context=client_context, http2=True) as b,
                trio_ws.connect(uri, ssl_context=client_context, http2=True) as sleeper,
                trio_ws.connect(uri, ssl_context=client_context) as c,
            ):
                with trio.fail_after(5):
                    while len(hub.subscribers("news")) < 4:
                        await trio.sleep(0.01)
                payload = "x" * 2000
                count = 500  # 1 MB: past the sleeper's window, its outbox and its queue
                got: dict[int, list[int]] = {0: [], 1: [], 2: []}

                async def read(i: int, ws: trio_ws.WebSocket) -> None:
                    while len(got[i]) < count:
                        got[i].append(int(str(await ws.recv()).split()[0]))

                async with trio.open_nursery() as readers:
                    for i, ws in enumerate((a, b, c)):
                        readers.start_soon(read, i, ws)
                    for n in range(count):
                        await hub.publish("news", f"{n} {payload}")
                        if n % 20 == 0:
                            await trio.sleep(0.001)  # a steady rate, as a live feed publishes
                assert got == {i: list(range(count)) for i in range(3)}
                # The sleeper's subscription overflowed: dropped at once by its policy, and
                # its connection closed (1013, Try Again Later; its close frame cannot reach
                # a peer that reads nothing, so close_timeout ends it as 1006).
                assert len(hub.subscribers("news")) == 3
                with trio.fail_after(5):
                    while not closed:
                        await trio.sleep(0.01)
                assert closed[0] in (1013, 1006)
                del sleeper


async def test_a_connection_that_opens_no_stream_gets_open_timeout_not_idle_timeout() -> None:
    """An idle HTTP/2 connection costs what an idle HTTP/1.1 preconnect does: open_timeout."""
    from .h2_peer import RawH2

    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, http2=True, http2_cleartext=True, open_timeout=0.3
    ) as server:
        peer = await RawH2.connect(server.port)
        start = trio.current_time()
        with trio.fail_after(3):
            while not peer.closed:
                await peer.read_once()
        assert trio.current_time() - start < 1.5
        assert peer.goaway_codes and set(peer.goaway_codes) == {0}
        # Once it has had a stream, idle_timeout applies (120 s by default): kept.
        peer = await RawH2.connect(server.port)
        sid = await peer.open_websocket("/")
        peer.h2.reset_stream(sid)
        await peer.flush()
        with trio.move_on_after(0.8):
            while not peer.closed:
                await peer.read_once()
        assert not peer.closed and not peer.goaway_codes
        await peer.aclose()


async def test_a_refused_stream_is_tried_again_on_a_new_connection(tls: Any) -> None:
    """The server counts a stream its client reset until its handler is done: the client's
    next stream, which it thinks fits, is refused (REFUSED_STREAM), never processed, and
    tried again on a connection of its own."""
    server_context, client_context = tls
    release = trio.Event()
    peers: list[Any] = []

    async def hold(request: trio_ws.Request) -> None:
        if request.path == "/slow":
            await release.wait()

    async def handler(ws: trio_ws.WebSocket) -> None:
        peers.append(ws.remote_address)
        await echo(ws)

    limits = trio_ws.Http2Limits(max_concurrent_streams=2)
    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        0,
        ssl_context=server_context,
        http2=True,
        http2_limits=limits,
        process_request=hold,
    ) as server:
        base = f"wss://127.0.0.1:{server.port}"
        async with trio_ws.connect(f"{base}/", ssl_context=client_context, http2=True) as keeper:
            with trio.move_on_after(0.3):  # opened, then given up: its handler holds the slot
                async with trio_ws.connect(f"{base}/slow", ssl_context=client_context, http2=True):
                    pass
            # The client sees one stream of two open; the server counts two: refused.
            async with trio_ws.connect(f"{base}/", ssl_context=client_context, http2=True) as ws:
                await ws.send("second try")
                assert await ws.recv() == "second try"
            await keeper.send("still")
            assert await keeper.recv() == "still"
        release.set()
    assert len(peers) == 2 and peers[0] != peers[1], "the second try came on a connection of its own"


async def test_connects_one_after_another_each_outlive_the_last_ones_connection(tls: Any) -> None:
    """With nothing to keep it, the pooled connection closes with its stream, just as the
    next connect() looks for one: it must open a new connection, never pick the closing one."""
    server_context, client_context = tls
    async with trio_ws.open_server(echo, "127.0.0.1", 0, ssl_context=server_context, http2=True) as server:
        uri = f"wss://127.0.0.1:{server.port}/"
        for i in range(30):
            async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:
                await ws.send(f"{i}")
                assert await ws.recv() == f"{i}"
            assert ws.close_code == 1000
        # And with no pause at all between them, from many tasks at once.
        async with trio.open_nursery() as nursery:

            async def churn(k: int) -> None:
                for i in range(10):
                    async with trio_ws.connect(uri, ssl_context=client_context, http2=True) as ws:
                        await ws.send(f"{k}.{i}")
                        assert await ws.recv() == f"{k}.{i}"

            for k in range(5):
                nursery.start_soon(churn, k)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"http2_limits": trio_ws.Http2Limits()}, None, None),
        ({"http2_cleartext": True}, ValueError, "http2_cleartext needs http2=True"),
        ({"http2": "yes"}, TypeError, "http2 must be True or False"),
        ({"http2": True, "http2_limits": {"max_concurrent_streams": 10}}, TypeError, "trio_ws.Http2Limits"),
    ],
)
def test_http2_options_are_checked_when_the_config_is_built(
    options: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    if error is None:
        trio_ws.ServerConfig(handler=echo, **options)
        return
    with pytest.raises(error, match=message):
        trio_ws.ServerConfig(handler=echo, **options)


@pytest.mark.parametrize(
    "field", ["max_concurrent_streams", "stream_window", "connection_window", "rate_window", "output_buffer"]
)
@pytest.mark.parametrize("value", [0, -1, True, "10"])
def test_http2_limits_refuse_values_that_bound_nothing(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"Http2Limits.{field}"):
        trio_ws.Http2Limits(**{field: value})  # type: ignore[arg-type]


def test_http2_windows_must_fit_http2s_range() -> None:
    with pytest.raises(ValueError, match="stream_window must be 65535 to 2\\*\\*31-1"):
        trio_ws.Http2Limits(stream_window=1000)
    with pytest.raises(ValueError, match="connection_window"):
        trio_ws.Http2Limits(connection_window=2**31)
    assert trio_ws.Http2Limits(idle_timeout=None).idle_timeout is None
