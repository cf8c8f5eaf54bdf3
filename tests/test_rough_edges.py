"""First-hour rough edges: a Router that checks handler signatures when a route is added,
a parsed query string, and a refused handshake whose error says why and types its headers."""

from __future__ import annotations

import functools

import pytest

import trio_ws
from trio_ws.testing import open_in_memory_server


def test_a_handler_that_cannot_take_the_route_parameters_is_refused_at_once() -> None:
    router = trio_ws.Router()

    async def wrong_name(ws: trio_ws.WebSocket, name: str) -> None: ...

    async def too_few(ws: trio_ws.WebSocket) -> None: ...

    async def room_and_more(ws: trio_ws.WebSocket, room: str, user: str) -> None: ...

    for handler in (wrong_name, too_few, room_and_more):
        with pytest.raises(
            TypeError, match=r"route '/rooms/\{room\}' calls its handler as .*\(ws, room\)"
        ) as info:
            router.add("/rooms/{room}", handler)
        assert handler.__name__ in str(info.value)
    with pytest.raises(TypeError, match="not a handler"):
        router.add("/tokens", {"alice": "t0ken"})  # type: ignore[arg-type]

    async def fits(ws: trio_ws.WebSocket, room: str) -> None: ...

    async def takes_anything(ws: trio_ws.WebSocket, **params: str) -> None: ...

    async def with_default(ws: trio_ws.WebSocket, room: str, user: str = "guest") -> None: ...

    for handler in (fits, takes_anything, with_default, functools.partial(room_and_more, user="u")):
        router.add("/rooms/{room}", handler)  # these can be called as handler(ws, room=...)


def test_request_query_is_parsed_and_multi_valued() -> None:
    request = trio_ws.Request(path="/chat/1?room=a&tag=x&tag=y&empty=", headers=trio_ws.Headers())
    assert request.query == {"room": ["a"], "tag": ["x", "y"], "empty": [""]}
    assert request.path_only == "/chat/1"
    bare = trio_ws.Request(path="/healthz", headers=trio_ws.Headers())
    assert (bare.query, bare.path_only) == ({}, "/healthz")


async def test_a_refused_handshake_says_why_and_its_headers_are_headers() -> None:
    def refuse(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(
            401, {"WWW-Authenticate": "Bearer"}, "token expired, log in again\nsecond line\n"
        )

    async def unused(ws: trio_ws.WebSocket) -> None: ...

    async with open_in_memory_server(unused, process_request=refuse) as app:
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with app.connect("/"):
                pass
    assert (
        str(info.value) == "server rejected the WebSocket connection: HTTP 401: token expired, log in again"
    )
    headers: trio_ws.Headers = info.value.headers  # typed Headers (not object): .get() type-checks
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert trio_ws.InvalidHandshake("no answer").headers == trio_ws.Headers()
