"""The client against real servers of other libraries: `websockets` 17's (asyncio, in a
thread) and Node's `ws` (from npm, in its own process). Text, binary, 1 MiB, with
compression on and off, and the extension really negotiated (or not)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import websockets

import trio_ws

from .conftest import ROOT, debian_binary, readline_within
from .test_interop import AsyncioServer

pytestmark = pytest.mark.timeout(180)
NODE = ROOT / "tests" / "node"
MESSAGES = ["text é ✓", b"\x00binary\xff", bytes(range(256)) * 4096, "x" * 2**20]  # 1 MiB each, the last two


def node_ws() -> str:
    """node, with ws installed from npm under tests/node (once)."""
    node, npm = debian_binary("node", "nodejs"), debian_binary("npm")
    if not (NODE / "node_modules" / "ws").is_dir():
        install = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE)]
        result = subprocess.run(install, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    return node


@pytest.fixture(params=["deflate", "none"])
def node_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    proc = subprocess.Popen(
        [node_ws(), str(NODE / "echo_server.js"), request.param], stdout=subprocess.PIPE, text=True, cwd=NODE
    )
    try:
        line = readline_within(proc.stdout, 30)
        assert line.startswith("listening on"), line
        yield f"ws://127.0.0.1:{line.split()[2]}/", request.param == "deflate"
    finally:
        proc.terminate()
        proc.wait(10)


async def exchange(uri: str, compression: str | None) -> str:
    """Send every message and check its echo; return the extension the server agreed to."""
    async with trio_ws.connect(uri, compression=compression, max_size=2**22) as ws:
        for message in MESSAGES:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(iter(["frag", "mented ", "text"]))
        assert await ws.recv() == "fragmented text"
        assert await ws.ping() >= 0
        return ws.response_headers.get("Sec-WebSocket-Extensions", "")


@pytest.mark.parametrize("client_compression", ["deflate", None])
async def test_against_node_ws(node_server: tuple[str, bool], client_compression: str | None) -> None:
    uri, server_deflate = node_server
    extension = await exchange(uri, client_compression)
    assert ("permessage-deflate" in extension) == (server_deflate and client_compression is not None)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_against_websockets_17_server(compression: str | None) -> None:
    assert int(websockets.__version__.split(".")[0]) >= 17
    with AsyncioServer(compression=compression) as server:
        extension = await exchange(f"ws://127.0.0.1:{server.port}/", compression)
    assert ("permessage-deflate" in extension) == (compression is not None)
