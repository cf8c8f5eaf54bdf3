"""Server options over real sockets with a real client: routing, limits, headers, logging."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

import pytest
import trio

import trio_ws

from .conftest import echo, ws_url
from .test_handshake import http_exchange, request


def make_router() -> trio_ws.Router:
    router = trio_ws.Router()

    @router.route("/chat/{room}")
    async def chat(ws: trio_ws.WebSocket, room: str) -> None:
        await ws.send(f"room {room}")

    @router.route("/users/{user}/inbox/{box}")
    async def inbox(ws: trio_ws.WebSocket, user: str, box: str) -> None:
        await ws.send(f"{user}:{box}")

    return router


async def test_router_dispatches_by_path_and_404s_the_rest() -> None:
    async with trio_ws.open_server(make_router(), "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server, "/chat/lobby?token=x")) as ws:
            assert await ws.recv() == "room lobby"
        async with trio_ws.connect(ws_url(server, "/users/ann%20b/inbox/new")) as ws:
            assert await ws.recv() == "ann b:new"
        for path in ["/chat", "/chat/a/b", "/nothing"]:
            with pytest.raises(trio_ws.InvalidHandshake) as info:
                async with trio_ws.connect(ws_url(server, path)):
                    pass
            assert info.value.status == 404
            assert path.encode() in info.value.body


def test_router_rejects_relative_patterns() -> None:
    with pytest.raises(ValueError):
        trio_ws.Router().add("chat", echo)


async def test_max_connections_answers_503_and_spares_existing_ones() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0, max_connections=2) as server:
        async with trio_ws.connect(ws_url(server)) as first, trio_ws.connect(ws_url(server)) as second:
            with pytest.raises(trio_ws.InvalidHandshake) as info:
                async with trio_ws.connect(ws_url(server)):
                    pass
            assert info.value.status == 503
            assert isinstance(info.value.headers, trio_ws.Headers)
            assert int(info.value.headers["Retry-After"]) > 0
            for ws in (first, second):
                await ws.send("still here")
                assert await ws.recv() == "still here"
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)
        async with trio_ws.connect(ws_url(server)) as again:
            await again.send("room again")
            assert await again.recv() == "room again"


async def test_process_response_edits_or_replaces_the_101() -> None:
    def process_response(request: trio_ws.Request, response: trio_ws.Response) -> trio_ws.Response | None:
        if request.path == "/deny":
            return trio_ws.Response(403, body="denied after all\n")
        response.headers["X-Request-Path"] = request.path
        return None

    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_response=process_response) as server:
        async with trio_ws.connect(ws_url(server, "/ok")) as ws:
            assert ws.response_headers["X-Request-Path"] == "/ok"
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.connect(ws_url(server, "/deny")):
                pass
        assert (info.value.status, info.value.body) == (403, b"denied after all\n")


async def test_async_process_request_and_a_bad_return_value() -> None:
    async def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        await trio.lowlevel.checkpoint()
        if request.path == "/bad":
            return "not a response"  # type: ignore[return-value]
        return None

    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_request=process_request) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("fine")
            assert await ws.recv() == "fine"
        status, _, _ = await http_exchange(server.port, request().replace(b"GET / ", b"GET /bad "))
        assert status == 500


async def test_server_header_can_be_changed_or_removed() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server, trio_ws.connect(ws_url(server)) as ws:
        assert ws.response_headers["Server"].startswith("Python/3")
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, server_header="acme/1") as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        assert ws.response_headers["Server"] == "acme/1"
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, server_header=None) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        assert "Server" not in ws.response_headers


async def test_every_log_record_names_the_connection_and_the_peer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server, trio_ws.connect(ws_url(server)) as ws:
        await ws.send("x")
        await ws.recv()
    server_records = [r for r in caplog.records if r.name == "trio_ws.server"]
    assert server_records
    for record in server_records:
        assert record.websocket and record.remote_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
        assert f"{record.remote_address}" in record.getMessage()  # type: ignore[attr-defined]


async def test_bind_errors_say_what_to_do() -> None:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        with pytest.raises(OSError) as busy:
            async with trio_ws.open_server(echo, "127.0.0.1", server.port):
                pass
        assert busy.value.errno == errno.EADDRINUSE
        assert "port=0" in str(busy.value)
    with pytest.raises(OSError) as absent:
        async with trio_ws.open_server(echo, "192.0.2.1", 0):  # TEST-NET-1: on no interface
            pass
    assert "0.0.0.0" in str(absent.value) and "192.0.2.1" in str(absent.value)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_host_none_listens_on_every_family_on_one_port() -> None:
    async with trio_ws.open_server(echo, None, 0) as server:
        families = {len(address) for address in server.addresses}  # 2-tuples: IPv4, 4-tuples: IPv6
        assert 2 in families
        assert len({address[1] for address in server.addresses}) == 1
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("v4")
            assert await ws.recv() == "v4"
        if has_ipv6_loopback():
            assert 4 in families
            async with trio_ws.connect(f"ws://[::1]:{server.port}/") as ws:
                await ws.send("v6")
                assert await ws.recv() == "v6"


async def test_aclose_without_closing_connections_refuses_new_ones_and_waits() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve, echo, "127.0.0.1", 0)
        async with trio_ws.connect(ws_url(server)) as ws:
            closed = trio.Event()

            async def close_server() -> None:
                await server.aclose(close_connections=False)
                closed.set()

            nursery.start_soon(close_server)
            await trio.sleep(0.1)
            with pytest.raises(OSError):
                async with trio_ws.connect(ws_url(server)):
                    pass
            await ws.send("still served")
            assert await ws.recv() == "still served"
            assert not closed.is_set()
        with trio.fail_after(5):
            await closed.wait()


@pytest.mark.parametrize("flood", [False, True])
async def test_aclose_cancels_a_handler_that_ignores_its_closed_connection_after_close_timeout(
    flood: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler waiting on something else never sees its connection close: aclose() used to
    wait for it forever. Past close_timeout it is cancelled, also while the client floods
    the server's inbox."""

    async def never_looks(ws: trio_ws.WebSocket) -> None:
        await trio.sleep_forever()

    async with trio_ws.open_server(never_looks, "127.0.0.1", 0, close_timeout=0.5) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws, trio.open_nursery() as nursery:

            async def send_forever() -> None:
                with contextlib.suppress(trio_ws.ConnectionClosed):
                    while flood:
                        await ws.send(b"x" * 65536)

            nursery.start_soon(send_forever)
            await trio.sleep(0.3)
            started = trio.current_time()
            with trio.fail_after(3):
                await server.aclose()
            assert trio.current_time() - started < 0.5 + 0.3
            assert not server.connections
            nursery.cancel_scope.cancel()
        assert ws.close_code == 1001
    warnings = [r for r in caplog.records if "handler cancelled: still running" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
