"""The client follows redirects: chains, loops, limits, no TLS downgrade, and credentials
kept only on the first URI's origin (checked from what the final server received)."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

import trio_ws

from .conftest import tls_contexts


@dataclass
class Site:
    """A server that answers the paths in `redirects` with (status, Location), and
    upgrades any other path, remembering the requests it upgraded."""

    server: trio_ws.WebSocketServer
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    upgraded: list[trio_ws.Request] = field(default_factory=list)

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.server.port}{path}"


@asynccontextmanager
async def site(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Site]:
    sites: list[Site] = []

    def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        here = sites[0]
        if request.path in here.redirects:
            status, location = here.redirects[request.path]
            return trio_ws.Response(status, {"Location": location} if location else {}, "moved\n")
        here.upgraded.append(request)
        return None

    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(ws.request.path)
        await ws.wait_closed()

    options = {"ssl_context": ssl_context} if ssl_context else {}
    async with trio_ws.open_server(
        handler, "127.0.0.1", 0, process_request=process_request, **options
    ) as server:
        sites.append(Site(server))
        yield sites[0]


async def test_a_chain_of_three_redirects_is_followed() -> None:
    async with site() as entry, site() as final:
        entry.redirects["/start"] = (302, "next?step=2")  # relative: resolved against /start
        entry.redirects["/next?step=2"] = (307, final.url("/elsewhere"))
        final.redirects["/elsewhere"] = (308, final.url("/final", "http"))  # http:// stands for ws://
        async with trio_ws.connect(entry.url("/start")) as ws:
            assert await ws.recv() == "/final"
    assert [request.path for request in final.upgraded] == ["/final"] and entry.upgraded == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(status: int) -> None:
    async with site() as here:
        here.redirects["/old"] = (status, "/new")
        async with trio_ws.connect(here.url("/old")) as ws:
            assert await ws.recv() == "/new"


async def test_a_loop_stops_with_the_chain_in_the_error() -> None:
    async with site() as here:
        here.redirects["/a"] = (302, "/b")
        here.redirects["/b"] = (302, "/a")
        a, b = here.url("/a"), here.url("/b")
        with pytest.raises(trio_ws.InvalidRedirect, match="loop") as info:
            async with trio_ws.connect(a):
                pass
    assert info.value.chain == (a, b, a)
    assert f"{a} -> {b} -> {a}" in str(info.value)
    assert isinstance(info.value, trio_ws.InvalidHandshake)


async def test_the_limit_stops_a_long_chain() -> None:
    async with site() as here:
        for n in range(5):
            here.redirects[f"/{n}"] = (302, f"/{n + 1}")
        with pytest.raises(trio_ws.InvalidRedirect, match="more than 3 redirects") as info:
            async with trio_ws.connect(here.url("/0"), max_redirects=3):
                pass
        assert len(info.value.chain) == 5  # the first URI, 3 followed, the one refused
        async with trio_ws.connect(here.url("/0"), max_redirects=5) as ws:
            assert await ws.recv() == "/5"
        with pytest.raises(trio_ws.InvalidRedirect, match="more than 0 redirects"):
            async with trio_ws.connect(here.url("/0"), max_redirects=0):
                pass
        with pytest.raises(ValueError, match="max_redirects"):
            async with trio_ws.connect(here.url("/0"), max_redirects=-1):
                pass


async def test_a_redirect_without_location_or_to_another_scheme_is_refused() -> None:
    async with site() as here:
        here.redirects["/nowhere"] = (302, "")
        here.redirects["/ftp"] = (302, "ftp://127.0.0.1/file")
        with pytest.raises(trio_ws.InvalidRedirect, match="without a Location") as info:
            async with trio_ws.connect(here.url("/nowhere")):
                pass
        assert info.value.status == 302
        with pytest.raises(trio_ws.InvalidRedirect, match="not a WebSocket URI"):
            async with trio_ws.connect(here.url("/ftp")):
                pass


async def test_wss_to_ws_is_refused_and_ws_to_wss_is_followed() -> None:
    server_context, client_context = tls_contexts()
    async with site(server_context) as secure, site() as plain:
        secure.redirects["/down"] = (302, plain.url("/plain"))
        with pytest.raises(trio_ws.InvalidRedirect, match="wss:// to ws://"):
            async with trio_ws.connect(secure.url("/down", "wss"), ssl_context=client_context):
                pass
        assert plain.upgraded == []  # not even tried
        # Upgrading to TLS is fine (the default context would not know this CA, so the
        # plain server sends the client to a wss:// server it trusts through the system's
        # CAs: here, the redirect is checked up to the TLS failure it meets).
        plain.redirects["/up"] = (302, secure.url("/secure", "wss"))
        with pytest.raises(ssl.SSLCertVerificationError, match="failed to verify"):
            async with trio_ws.connect(plain.url("/up")):
                pass


CREDENTIALS = {"Authorization": "Bearer t0ken", "Cookie": "session=abc", "Proxy-Authorization": "Basic eA=="}


async def test_credentials_are_kept_on_the_same_origin() -> None:
    async with site() as here:
        here.redirects["/login"] = (302, "/inside")
        async with trio_ws.connect(here.url("/login"), extra_headers={**CREDENTIALS, "X-Trace": "1"}) as ws:
            assert await ws.recv() == "/inside"
    received = here.upgraded[0].headers
    assert {name: received.get(name) for name in CREDENTIALS} == CREDENTIALS
    assert received["X-Trace"] == "1"


async def test_credentials_are_dropped_on_another_origin() -> None:
    async with site() as here, site() as elsewhere:
        here.redirects["/login"] = (302, elsewhere.url("/landing"))  # another port: another origin
        elsewhere.redirects["/landing"] = (302, here.url("/back"))  # and back: still dropped
        async with trio_ws.connect(here.url("/login"), extra_headers={**CREDENTIALS, "X-Trace": "1"}) as ws:
            assert await ws.recv() == "/back"
    received = here.upgraded[0].headers
    assert [name for name in CREDENTIALS if name in received] == []
    assert received["X-Trace"] == "1"  # other headers still go


async def test_user_info_follows_same_origin_redirects_only() -> None:
    basic = "Basic " + base64.b64encode(b"alice:pw").decode()
    async with site() as here, site() as elsewhere:
        here.redirects["/a"] = (302, "/b")
        here.redirects["/c"] = (302, elsewhere.url("/d"))
        port = here.server.port
        async with trio_ws.connect(f"ws://alice:pw@127.0.0.1:{port}/a") as ws:
            assert await ws.recv() == "/b"
        async with trio_ws.connect(f"ws://alice:pw@127.0.0.1:{port}/c") as ws:
            assert await ws.recv() == "/d"
    assert here.upgraded[0].headers["Authorization"] == basic
    assert "Authorization" not in elsewhere.upgraded[0].headers
