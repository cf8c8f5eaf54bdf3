"""Interop with the `websockets` library, both ways, over real sockets.

`websockets` runs on asyncio in a worker thread; trio_ws runs in the test's Trio loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

import trio_ws

from .conftest import ws_url

BIG = bytes(range(256)) * 4096  # 1 MiB


async def in_asyncio(coro_fn: Any) -> Any:
    """Run an asyncio coroutine function in a thread, from Trio."""
    return await trio.to_thread.run_sync(asyncio.run, coro_fn())


async def test_websockets_client_against_our_server() -> None:
    server_saw: list[trio_ws.ConnectionClosed] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        try:
            async for message in ws:
                if message == "ping me":
                    await ws.ping()
                    await ws.send("pinged")
                elif message == "close 4001":
                    await ws.close(4001, "server says bye")
                else:
                    await ws.send(message)
                    await ws.send(iter([message[:1], message[1:]]))  # fragmented echo
        except trio_ws.ConnectionClosed as exc:
            server_saw.append(exc)
            raise

    async def client(url: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with ws_connect(url, compression=None, max_size=2**21) as ws:
            for message in ["text é", b"\x00binary\xff", BIG]:
                await ws.send(message)
                out[repr(message[:10])] = (await ws.recv(), await ws.recv())
            await ws.send(["frag", "mented"])  # websockets sends a fragmented message
            out["fragmented"] = (await ws.recv(), await ws.recv())
            out["rtt"] = await (await ws.ping(b"hi"))
            await ws.send("ping me")
            out["pinged"] = await ws.recv()
            await ws.send("close 4001")
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                out["close"] = (exc.rcvd.code, exc.rcvd.reason)
        async with ws_connect(url, compression=None) as ws:
            await ws.close(4002, "client says bye")
        return out

    async with trio_ws.open_server(handler, "127.0.0.1", 0, max_size=2**21) as server:
        out = await in_asyncio(lambda: client(ws_url(server)))
    assert out[repr("text é")] == ("text é", "text é")
    assert out[repr(b"\x00binary\xff")] == (b"\x00binary\xff", b"\x00binary\xff")
    assert out[repr(BIG[:10])] == (BIG, BIG)
    assert out["fragmented"] == ("fragmented", "fragmented")
    assert out["pinged"] == "pinged"
    assert out["close"] == (4001, "server says bye")
    # Each connection's handler saw its own close (in either order: they end concurrently).
    assert sorted((seen.code, seen.reason) for seen in server_saw) == [
        (4001, "server says bye"),
        (4002, "client says bye"),
    ]


class AsyncioServer:
    """A `websockets` server on asyncio in a thread; records how connections closed."""

    def __init__(self, compression: str | None = None) -> None:
        self.compression = compression
        self.closes: list[tuple[int | None, str | None]] = []
        self.pings_ok = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self.port = 0
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _handler(self, ws: Any) -> None:
        try:
            async for message in ws:
                if message == "ping me":
                    await (await ws.ping())
                    self.pings_ok += 1
                    await ws.send("pinged")
                elif message == "close 4003":
                    await ws.close(4003, "asyncio server says bye")
                elif message == "fragment me":
                    await ws.send(["frag", "mented"])
                else:
                    await ws.send(message)
        finally:
            self.closes.append((ws.close_code, ws.close_reason))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with ws_serve(
            self._handler, "127.0.0.1", 0, compression=self.compression, max_size=2**21
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> AsyncioServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


@pytest.fixture
def asyncio_server() -> Iterator[AsyncioServer]:
    with AsyncioServer() as server:
        yield server


async def test_our_client_against_websockets_server(asyncio_server: AsyncioServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"async "
        yield b"chunks"

    url = f"ws://127.0.0.1:{asyncio_server.port}/"
    async with trio_ws.connect(url, max_size=2**21) as ws:
        assert ws.response_headers["Server"].startswith("Python/")
        for message in ["text é", b"\x00binary\xff", BIG]:
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(["our ", "fragments"])
        assert await ws.recv() == "our fragments"
        await ws.send(chunks())
        assert await ws.recv() == b"async chunks"
        await ws.send("fragment me")
        assert await ws.recv() == "fragmented"
        assert await ws.ping() > 0
        await ws.send("ping me")
        assert await ws.recv() == "pinged"
        await ws.send("close 4003")
        with pytest.raises(trio_ws.ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4003, "asyncio server says bye")
    async with trio_ws.connect(url) as ws:
        await ws.close(4004, "trio client says bye")
    await trio.sleep(0.1)
    assert asyncio_server.pings_ok == 1
    assert asyncio_server.closes[-2:] == [(4003, "asyncio server says bye"), (4004, "trio client says bye")]
