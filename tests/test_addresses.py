"""Both ends' addresses: a server's connection takes its peer's address from accept (no
system call of its own), and asks the socket for its own only when first read."""

from __future__ import annotations

import socket

import pytest

import trio_ws


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6"))]
)
async def test_each_end_sees_the_other_as_it_is(host: str) -> None:
    seen: list[tuple[object, object]] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        seen.append((ws.remote_address, ws.local_address))
        await ws.send("ok")

    async with trio_ws.open_server(handler, host, 0) as server:
        port = server.port
        url = f"ws://[{host}]:{port}/" if ":" in host else f"ws://{host}:{port}/"
        async with trio_ws.connect(url) as ws:
            assert await ws.recv() == "ok"
            client_local, client_remote = ws.local_address, ws.remote_address
    ((server_remote, server_local),) = seen
    assert server_remote == client_local and server_local == client_remote
    assert server_remote[0] == host and server_local[1] == port


async def test_a_server_connection_asks_its_address_once_and_a_client_at_once() -> None:
    """A server's connection asks the socket for its own address on first use (None if
    that is after the close) and keeps it; a client's reads it as it opens, so that it is
    there after the close too."""
    read: list[object] = []
    unread: list[trio_ws.WebSocket] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        if ws.path == "/read":
            read.append(ws.local_address)
        unread.append(ws)
        await ws.wait_closed()
        read.append(ws.local_address)

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        port = server.port
        for path in ["/read", "/unread"]:
            async with trio_ws.connect(f"ws://127.0.0.1:{port}{path}") as client:
                pass
            assert client.local_address is not None and client.local_address[0] == "127.0.0.1"
    assert read[0] == read[1] == ("127.0.0.1", port)  # kept once read
    assert read[2] is None  # first read after the close
