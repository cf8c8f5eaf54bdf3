"""`ServerConfig`: one frozen value runs the same server through `serve`, `open_server` and
`trio_ws.testing`; options given beside it replace its own; bad values fail when it is built;
and `process_request`, a Router's 404 and `max_connections` answer in the documented order."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws.testing import connect_in_memory, open_in_memory_server

from . import cli_app
from .conftest import echo, ws_url
from .test_handshake import http_exchange


async def refusal(uri: str) -> trio_ws.InvalidHandshake:
    with pytest.raises(trio_ws.InvalidHandshake) as info:
        async with trio_ws.connect(uri):
            pass
    return info.value


async def test_serve_runs_a_configuration_with_its_options() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(trio_ws.serve, cli_app.config, "127.0.0.1", 0))
        uri = ws_url(server, "/echo")
        with trio.fail_after(10):
            assert (await refusal(uri)).status == 401
            async with trio_ws.connect(f"{uri}?token={cli_app.TOKEN}") as ws:
                assert (await refusal(f"{uri}?token={cli_app.TOKEN}")).status == 503  # max_connections=1
                await ws.send("hi")
                assert await ws.recv() == "hi"
        await server.aclose()


async def test_options_beside_a_configuration_replace_its_own() -> None:
    async with trio_ws.open_server(cli_app.config, "127.0.0.1", 0, max_connections=None) as server:
        uri = ws_url(server, f"/echo?token={cli_app.TOKEN}")
        with trio.fail_after(10):
            async with trio_ws.connect(uri) as a, trio_ws.connect(uri) as b, trio_ws.connect(uri) as c:
                for ws in (a, b, c):  # three at once, past the configuration's max_connections=1
                    await ws.send("here")
                    assert await ws.recv() == "here"
            assert (await refusal(ws_url(server, "/echo"))).status == 401  # the rest is kept
    assert cli_app.config.max_connections == 1  # replaced in a copy, not in place


async def test_the_in_memory_server_runs_a_configuration_too() -> None:
    async with open_in_memory_server(cli_app.config) as app:
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with app.connect("/echo"):
                pass
        assert info.value.status == 401
        async with app.connect(f"/echo?token={cli_app.TOKEN}") as ws:
            await ws.send("in memory")
            assert await ws.recv() == "in memory"
    async with connect_in_memory(cli_app.config, f"/echo?token={cli_app.TOKEN}") as ws:
        assert ws.response_headers["X-Worker"]  # process_response ran


def test_a_configuration_is_frozen_and_replace_makes_a_checked_copy() -> None:
    config = trio_ws.ServerConfig(handler=echo, max_size=100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_size = 200  # type: ignore[misc]
    bigger = config.replace(max_size=200)
    assert (config.max_size, bigger.max_size, bigger.handler) == (100, 200, echo)
    with pytest.raises(TypeError, match="unknown server options: max_conections"):
        config.replace(max_conections=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_size must be a non-negative int"):
        config.replace(max_size=-1)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"handler": {"alice": "s3cret"}}, TypeError, "handler is dict {'alice': 's3cret'}, not a handler"),
        ({"handler": None}, TypeError, "handler is NoneType None, not a handler"),
        ({"max_queue": 0}, ValueError, "max_queue needs 1 <= high"),
        ({"compression": "gzip"}, ValueError, "compression must be"),
        ({"max_connections": -1}, ValueError, "max_connections must be a non-negative int"),
        ({"max_size": 1.5}, ValueError, "max_size must be a non-negative int"),
        ({"write_limit": -1}, ValueError, "write_limit must be non-negative"),
    ],
)
def test_a_bad_configuration_fails_when_built(options: dict[str, Any], error: type, message: str) -> None:
    options.setdefault("handler", echo)
    with pytest.raises(error, match=message.replace("{", r"\{").replace("}", r"\}")):
        trio_ws.ServerConfig(**options)


async def test_serve_and_open_server_refuse_bad_options_before_listening() -> None:
    with pytest.raises(TypeError, match="unknown server options: max_conections"):
        await trio_ws.serve(echo, "127.0.0.1", 0, max_conections=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown server options: max_conections"):
        async with trio_ws.open_server(echo, "127.0.0.1", 0, max_conections=3):  # type: ignore[call-arg]
            pass
    with pytest.raises(TypeError, match="not a handler"):
        async with trio_ws.open_server({"a": 1}, "127.0.0.1", 0):  # type: ignore[arg-type]
            pass


async def test_process_request_then_the_routers_404_then_max_connections() -> None:
    """The documented order: the option's `process_request` answers first (a health check
    at a path no route has), then the Router's 404, then the 503 of `max_connections`."""
    router = trio_ws.Router()
    router.add("/echo", echo)

    def health(request: trio_ws.Request) -> trio_ws.Response | None:
        return trio_ws.Response(200, body="ok\n") if request.path_only == "/healthz" else None

    async with trio_ws.open_server(
        router, "127.0.0.1", 0, process_request=health, max_connections=1
    ) as server:
        get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
        with trio.fail_after(10):
            assert (await http_exchange(server.port, get % b"/healthz?probe=1"))[0] == 200
            assert (await http_exchange(server.port, get % b"/nowhere"))[0] == 404
            async with trio_ws.connect(ws_url(server, "/echo")):
                assert (await http_exchange(server.port, get % b"/healthz"))[0] == 200
                assert (await refusal(ws_url(server, "/nowhere"))).status == 404
                assert (await refusal(ws_url(server, "/echo"))).status == 503


def test_a_plain_def_handler_is_refused_when_the_config_is_built() -> None:
    """`def handler(ws)` where `async def` was meant would fail every connection with
    1011; it is refused at once, naming it. A lambda returning a coroutine still works."""

    def handler(ws: trio_ws.WebSocket) -> None: ...

    with pytest.raises(TypeError, match=r"handler .*handler is a plain function, not `async def`"):
        trio_ws.ServerConfig(handler=handler)  # type: ignore[arg-type]
    trio_ws.ServerConfig(handler=lambda ws: ws.close())
