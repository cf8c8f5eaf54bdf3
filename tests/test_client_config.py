"""`ClientConfig`: `connect(uri, config, **options)` and `reconnect` run with one frozen
value; keywords beside it replace its own; a bad option fails before any TCP connection."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws.client import connect_over

from .conftest import ws_url


async def user_agent_and_big(ws: trio_ws.WebSocket) -> None:
    await ws.send(ws.request_headers.get("User-Agent", "none"))
    await ws.send(b"x" * 2000)
    await ws.wait_closed()


async def test_connect_runs_a_configuration_and_keywords_replace_its_own() -> None:
    config = trio_ws.ClientConfig(user_agent_header="probe/1", max_size=1000)
    async with trio_ws.open_server(user_agent_and_big, "127.0.0.1", 0) as server:
        with trio.fail_after(10):
            async with trio_ws.connect(ws_url(server), config) as ws:
                assert await ws.recv() == "probe/1"
                with pytest.raises(trio_ws.ConnectionClosedError):
                    await ws.recv()  # 2000 bytes against max_size=1000
                assert ws.close_code == 1009
            async with trio_ws.connect(ws_url(server), config, max_size=None, user_agent_header=None) as ws:
                assert await ws.recv() == "none"
                assert await ws.recv() == b"x" * 2000
    assert (config.max_size, config.user_agent_header) == (1000, "probe/1"), "replaced in a copy"


async def test_the_default_user_agent_is_the_default_server_header() -> None:
    async with trio_ws.open_server(user_agent_and_big, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            assert await ws.recv() == trio_ws.ServerConfig(handler=user_agent_and_big).server_header
            assert ws.response_headers["Server"] == ws.request_headers["User-Agent"]


@pytest.mark.parametrize(
    ("config", "options", "error", "message"),
    [
        (None, {"max_queue": 0}, ValueError, "max_queue needs 1 <= high"),
        (None, {"max_redirects": -1}, ValueError, "max_redirects must be 0 or more"),
        (None, {"max_redirect": 3}, TypeError, "unknown connect\\(\\) options: max_redirect"),
        (None, {"compression": "gzip"}, ValueError, "compression must be"),
        (None, {"write_limit": -1}, ValueError, "write_limit must be non-negative"),
        (None, {"close_timeout": -1}, ValueError, "close_timeout must be a non-negative number"),
        (None, {"proxy": "ftp://proxy"}, ValueError, "proxy"),
        (
            {"max_size": 10},
            {},
            TypeError,
            "connect\\(\\) takes a trio_ws.ClientConfig after the URI, not dict",
        ),
    ],
)
async def test_a_bad_option_fails_before_any_connection(
    config: Any, options: dict[str, Any], error: type, message: str
) -> None:
    accepted = 0

    async def count(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(functools.partial(trio.serve_tcp, count, 0, host="127.0.0.1"))
        uri = f"ws://127.0.0.1:{listener.socket.getsockname()[1]}/"
        with pytest.raises(error, match=message):
            async with trio_ws.connect(uri, config, **options):
                pass
        with pytest.raises(error, match=message):
            async with trio_ws.reconnect(uri, config, **options):
                pass
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert accepted == 0


def test_a_client_configuration_is_frozen_and_checked() -> None:
    config = trio_ws.ClientConfig(open_timeout=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.open_timeout = 4  # type: ignore[misc]
    assert config.replace(open_timeout=4).open_timeout == 4
    with pytest.raises(ValueError, match="max_size must be a non-negative int"):
        trio_ws.ClientConfig(max_size=-5)


async def test_connect_over_refuses_the_options_about_reaching_the_server() -> None:
    left, _right = trio.testing.memory_stream_pair()
    for name, value in (("proxy", None), ("max_redirects", 3), ("ssl_context", None)):
        with pytest.raises(TypeError, match=f"unknown connect_over\\(\\) options: {name}"):
            async with connect_over(left, "ws://in-memory/", **{name: value}):
                pass
