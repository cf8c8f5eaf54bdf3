"""`broadcast` over real sockets: plain and compressed peers, and slow ones skipped."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import trio
import trio.lowlevel
from websockets.asyncio.client import connect as ws_connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import trio_ws

from .conftest import RawClient, ws_url
from .test_interop import in_asyncio

NOISE = random.Random(7).randbytes(20_000)  # incompressible: stored, not deflated
MESSAGES: list[str | bytes] = [
    f"message {i} " * (i % 7 + 1) if i % 3 else bytes([i]) * 300 for i in range(60)
] + [NOISE, "long compressible text " * 1000, NOISE[:9000], NOISE[-3000:] * 2, "message after"]


async def wait_forever(ws: trio_ws.WebSocket) -> None:
    await ws.wait_closed()


async def test_one_broadcast_reaches_plain_and_compressed_peers_alike() -> None:
    async def clients(url: str) -> list[list[Any]]:
        async def client(**options: Any) -> list[Any]:
            async with asyncio.timeout(20), ws_connect(url, **options) as ws:  # never hang the test
                return [await ws.recv() for _ in MESSAGES]

        return await asyncio.gather(
            client(compression=None),
            client(),  # deflate with context takeover: its own compressor
            client(  # deflate without server context takeover: one shared frame
                compression=None,
                extensions=[ClientPerMessageDeflateFactory(server_no_context_takeover=True)],
            ),
        )

    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0) as server, trio.open_nursery() as nursery:
        results: list[list[Any]] = []

        async def run_clients() -> None:
            results.extend(await in_asyncio(lambda: clients(ws_url(server))))

        nursery.start_soon(run_clients)
        with trio.fail_after(10):
            while len(server.connections) < 3:
                await trio.sleep(0.01)
        kinds = sorted(
            (
                "permessage-deflate" in (agreed := ws.response_headers.get("Sec-WebSocket-Extensions", "")),
                "server_no_context_takeover" in agreed,
            )
            for ws in server.connections
        )
        assert kinds == [(False, False), (True, False), (True, True)]
        for message in MESSAGES:
            assert trio_ws.broadcast(server.connections, message) == 3
            await trio.lowlevel.checkpoint()
    assert results == [MESSAGES] * 3


async def test_slow_reader_is_skipped_and_others_still_get_everything() -> None:
    async with trio_ws.open_server(wait_forever, "127.0.0.1", 0, write_limit=2**16) as server:
        slow = await RawClient.connect(server.port)  # never reads
        async with trio_ws.connect(ws_url(server)) as fast:
            with trio.fail_after(5):
                while len(server.connections) < 2:
                    await trio.sleep(0.01)
            big = b"x" * 65536
            counts = []
            for _ in range(200):
                counts.append(trio_ws.broadcast(server.connections, big))
                assert await fast.recv() == big
            assert counts[0] == 2 and counts[-1] == 1, "the slow reader must end up skipped"
            slow_ws = next(ws for ws in server.connections if ws.remote_address[1] != fast.local_address[1])
            assert slow_ws.buffered_amount <= 2 * 2**16 + 65536 + 100
        await slow.stream.aclose()


async def test_broadcast_rejects_what_it_cannot_frame() -> None:
    with pytest.raises(TypeError):
        trio_ws.broadcast([], {"not": "serialized"})  # type: ignore[arg-type]
