"""Both ends' addresses: a server's connection takes its peer's address from accept (no
system call of its own), and asks the socket for its own only when first read."""

from __future__ import annotations

import socket

import pytest
import trio

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


async def test_the_local_address_is_kept_once_read_and_none_if_first_read_after_the_close() -> None:
    async with trio_ws.open_server(lambda ws: ws.wait_closed(), "127.0.0.1", 0) as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as early:
            read_while_open = early.local_address
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as late:
            pass
        await trio.lowlevel.checkpoint()
    assert early.local_address == read_while_open and read_while_open[0] == "127.0.0.1"
    assert late.local_address is None
