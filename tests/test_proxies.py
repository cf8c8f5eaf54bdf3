"""The client through real proxies: tinyproxy (HTTP CONNECT) and microsocks (SOCKS5),
ws:// and wss://, credentials, the environment's proxy settings, and refusals."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

import trio_ws

from .proxies import ProxyProcess, microsocks, tinyproxy

pytestmark = pytest.mark.timeout(120)


async def report_peer(ws: trio_ws.WebSocket) -> None:
    """Send back the port the connection came from, then echo."""
    await ws.send(str(ws.remote_address[1]))
    async for message in ws:
        await ws.send(message)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def target(ca: trustme.CA | None = None) -> AsyncIterator[str]:
    """A server reporting its peer's port; yields its URI (wss:// for "localhost" with `ca`)."""
    context = None
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
    async with trio_ws.open_server(report_peer, "127.0.0.1", 0, ssl_context=context) as server:
        yield f"wss://localhost:{server.port}/" if ca else f"ws://127.0.0.1:{server.port}/"


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def through(uri: str, **options: object) -> bool:
    """Connect, echo once, and tell whether the server saw another port than ours (a proxy)."""
    async with trio_ws.connect(uri, **options) as ws:  # type: ignore[arg-type]
        peer_port = int(str(await ws.recv()))
        await ws.send("through")
        assert await ws.recv() == "through"
        return peer_port != ws.local_address[1]


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    proxy = tinyproxy(tmp_path)
    yield proxy
    proxy.stop()


@pytest.fixture
def socks_proxy() -> Iterator[ProxyProcess]:
    proxy = microsocks()
    yield proxy
    proxy.stop()


async def test_ws_and_wss_through_an_http_connect_proxy(http_proxy: ProxyProcess, ca: trustme.CA) -> None:
    async with target() as uri:
        assert await through(uri, proxy=http_proxy.url)
        assert not await through(uri, proxy=None)  # the control: direct, the same port
    async with target(ca) as uri:  # TLS inside the tunnel, for the name "localhost" (SNI)
        assert await through(uri, proxy=http_proxy.url, ssl_context=client_context(ca))
    assert "CONNECT" in http_proxy.stop()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_ws_and_wss_through_a_socks5_proxy(scheme: str, ca: trustme.CA) -> None:
    proxy = microsocks(scheme=scheme)
    try:
        async with target() as uri:
            assert await through(uri, proxy=proxy.url)
        async with target(ca) as uri:  # socks5h: the proxy resolves "localhost"
            assert await through(uri, proxy=proxy.url, ssl_context=client_context(ca))
    finally:
        proxy.stop()


async def test_http_proxy_credentials_accepted_and_refused(tmp_path: Path) -> None:
    proxy = tinyproxy(tmp_path, auth=("alice", "s3cret"))
    try:
        async with target() as uri:
            assert await through(uri, proxy=proxy.url)
            wrong = proxy.url.replace("s3cret", "wrong")
            with pytest.raises(trio_ws.ProxyError, match=r"HTTP 40[17]") as info:  # tinyproxy says 401
                await through(uri, proxy=wrong)
            assert info.value.status in (401, 407)
            assert "alice:***@127.0.0.1" in str(info.value) and "wrong" not in str(info.value)
            with pytest.raises(trio_ws.ProxyError, match=r"HTTP 40[17]"):
                await through(uri, proxy=proxy.url.replace("alice:s3cret@", ""))
    finally:
        proxy.stop()


async def test_socks_proxy_credentials_accepted_and_refused() -> None:
    proxy = microsocks(auth=("bob", "hunter2"))
    try:
        async with target() as uri:
            assert await through(uri, proxy=proxy.url)
            with pytest.raises(trio_ws.ProxyError) as info:
                await through(uri, proxy=proxy.url.replace("hunter2", "nope"))
            assert "bob:***@127.0.0.1" in str(info.value) and "nope" not in str(info.value)
    finally:
        proxy.stop()


async def test_a_proxy_answering_403_is_a_clear_error(tmp_path: Path) -> None:
    proxy = tinyproxy(tmp_path, only_port=1)  # CONNECT to any other port is refused
    try:
        async with target() as uri:
            with pytest.raises(trio_ws.ProxyError) as info:
                await through(uri, proxy=proxy.url)
        assert info.value.status == 403
        assert f"proxy {proxy.url} refused the tunnel to 127.0.0.1:" in str(info.value)
        assert "HTTP 403" in str(info.value)
    finally:
        proxy.stop()


async def test_an_unreachable_proxy_is_named() -> None:
    from .conftest import free_port

    url = f"socks5://127.0.0.1:{free_port()}"
    async with target() as uri:
        for proxy in [url, url.replace("socks5", "http")]:
            with pytest.raises(trio_ws.ProxyError, match=f"cannot reach proxy {proxy}"):
                await through(uri, proxy=proxy)


async def test_the_environment_names_the_proxy(
    http_proxy: ProxyProcess, socks_proxy: ProxyProcess, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", http_proxy.url)
    async with target(ca) as secure, target() as plain:
        assert await through(secure, ssl_context=client_context(ca))  # wss:// takes HTTPS_PROXY
        assert not await through(plain)  # ws:// does not
        monkeypatch.setenv("HTTP_PROXY", http_proxy.url)
        assert await through(plain)
        assert not await through(plain, proxy=None)  # off
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,example.com")
        assert not await through(plain)  # the host is exempt
        assert await through(secure, ssl_context=client_context(ca))  # localhost is not
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.delenv("NO_PROXY")
        monkeypatch.setenv("ALL_PROXY", socks_proxy.url)
        assert await through(plain)  # the fallback for both


def test_bad_proxy_urls_fail_before_connecting() -> None:
    import trio

    async def main() -> None:
        for bad in ["ftp://127.0.0.1:21", "http://:8080", "socks5://u:pw@127.0.0.1:port"]:
            with pytest.raises(ValueError, match="proxy URL") as info:
                async with trio_ws.connect("ws://127.0.0.1:1/", proxy=bad):
                    pass
            assert ":pw@" not in str(info.value)

    trio.run(main)
