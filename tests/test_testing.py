"""trio_ws.testing: a Router app tested in memory, through the real handshake and
protocol, without opening a single socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
import trio

import trio_ws
from trio_ws.testing import connect_in_memory, open_in_memory_server

router = trio_ws.Router()


@router.route("/echo")
async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@router.route("/rooms/{room}")
async def room(ws: trio_ws.WebSocket, room: str) -> None:
    await ws.send(f"welcome to {room} ({ws.subprotocol})")
    await ws.wait_closed()


@router.route("/crash")
async def crash(ws: trio_ws.WebSocket) -> None:
    raise RuntimeError("a bug")


def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
    if request.path.startswith("/rooms/") and request.headers.get("Authorization") != "Bearer ok":
        return trio_ws.Response(401, {"WWW-Authenticate": "Bearer"}, "who are you?\n")
    return None


def sockets_open() -> int:
    """Sockets among this process's descriptors (one listdir may race a closing fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@contextmanager
def no_new_socket() -> Iterator[int]:
    """Yields the sockets open before; checks none more is open after."""
    before = sockets_open()
    yield before
    assert sockets_open() == before, "a socket was opened"


async def test_a_router_app_in_memory() -> None:
    options = {"process_request": process_request, "subprotocols": ["chat.v1"]}
    with no_new_socket() as sockets:
        async with open_in_memory_server(router, **options) as app:
            async with app.connect("/echo") as ws:
                assert sockets_open() == sockets  # while connected, too
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00" * 100_000)  # compressed both ways: the real codec
                assert await ws.recv() == b"\x00" * 100_000
                assert "permessage-deflate" in ws.response_headers["Sec-WebSocket-Extensions"]
            with pytest.raises(trio_ws.InvalidHandshake) as missing:
                async with app.connect("/nowhere"):
                    pass
            assert missing.value.status == 404
            with pytest.raises(trio_ws.InvalidHandshake) as refused:
                async with app.connect("/rooms/lobby"):
                    pass
            assert refused.value.status == 401 and b"who are you" in refused.value.body
            headers = {"Authorization": "Bearer ok"}
            async with app.connect("/rooms/lobby", extra_headers=headers, subprotocols=["chat.v1"]) as ws:
                assert await ws.recv() == "welcome to lobby (chat.v1)"
            async with app.connect("/crash") as ws:
                with pytest.raises(trio_ws.ConnectionClosedError) as crashed:
                    await ws.recv()
            assert crashed.value.code == 1011


async def test_connect_in_memory_in_one_line() -> None:
    with no_new_socket():
        async with connect_in_memory(router, "/echo", compression=None) as ws:
            await ws.send("one line")
            assert await ws.recv() == "one line"
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
        with trio.fail_after(5), pytest.raises(TypeError, match="proxy"):
            async with connect_in_memory(router, "/echo", proxy=None):
                pass
        with pytest.raises(TypeError, match="unknown server options: port"):
            async with connect_in_memory(router, "/echo", server_options={"port": 1}):
                pass


async def test_a_plain_http_request_in_memory_gets_the_whole_response() -> None:
    """A health check answered by process_request, a Router's 404 and the 426 of a plain
    GET on a WebSocket route, each as a `Response`; the config's hub and lifespan run."""
    from tests import deploy_app

    response = await trio_ws.testing.request_in_memory(deploy_app.config, "/healthz")
    assert (response.status, response.body) == (200, b"ok\n")
    assert deploy_app.state["server"].hub is not None  # the lifespan was entered, with the hub
    response = await trio_ws.testing.request_in_memory(deploy_app.config, "/nowhere", headers={"X-A": "1"})
    assert response.status == 404
    response = await trio_ws.testing.request_in_memory(deploy_app.config, "/echo")
    assert response.status == 426 and response.headers["Upgrade"] == "websocket"
    assert b"not an upgrade" in response.body


async def test_an_in_memory_server_opens_the_configs_hub_for_its_handlers() -> None:
    from tests import deploy_app

    async with (
        trio_ws.testing.open_in_memory_server(deploy_app.config) as server,
        server.connect("/ticks") as ws,
    ):
        start = await ws.recv()
        assert '"recovered": null' in start
        assert '"offset": ' in await ws.recv()  # the lifespan's ticker publishes
        assert (await server.request("/healthz")).status == 200
