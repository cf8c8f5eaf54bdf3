"""permessage-deflate over real sockets: interop both ways, and the decompression bomb."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import trio
from websockets.asyncio.client import connect as ws_connect

import trio_ws
from trio_ws.frames import Frame, FrameParser, Opcode, write_frame

from .conftest import HANDSHAKE, ExampleProcess, echo, ws_url
from .test_interop import AsyncioServer, in_asyncio

DEFLATE_HANDSHAKE = HANDSHAKE.replace(
    b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
COMPRESSIBLE = b"".join(b"%08d: the same words again and again\n" % i for i in range(2**20 // 45))[: 2**20]


async def test_websockets_client_negotiates_deflate_with_our_server() -> None:
    async def client(url: str) -> tuple[str, bytes, str]:
        async with ws_connect(url, max_size=2**21) as ws:  # compression on by default
            await ws.send(COMPRESSIBLE)
            echoed = await ws.recv()
            await ws.send("text too")
            return ws.response.headers["Sec-WebSocket-Extensions"], echoed, await ws.recv()

    async with trio_ws.open_server(echo, "127.0.0.1", 0, max_size=2**21) as server:
        header, echoed, text = await in_asyncio(lambda: client(ws_url(server)))
    assert header.startswith("permessage-deflate")
    assert echoed == COMPRESSIBLE
    assert text == "text too"


async def test_our_client_negotiates_deflate_with_websockets_server() -> None:
    with AsyncioServer(compression="deflate") as server:
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/", max_size=2**21) as ws:
            assert ws.response_headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            assert ws.request_headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            await ws.send(COMPRESSIBLE)
            assert await ws.recv() == COMPRESSIBLE
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"


async def test_compression_none_declines() -> None:
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, compression=None) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        await ws.send("plain")
        assert await ws.recv() == "plain"


async def test_messages_really_are_compressed_on_the_wire() -> None:
    wire_sizes: list[int] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(COMPRESSIBLE)
        await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(DEFLATE_HANDSHAKE)
        data = b""
        parser = FrameParser(require_mask=False, allowed_rsv=0x40)
        with trio.fail_after(5):
            while not wire_sizes:
                data += await stream.receive_some()
                if b"\r\n\r\n" in data:
                    head, _, rest = data.partition(b"\r\n\r\n")
                    assert b"permessage-deflate" in head
                    parser.feed(rest)
                    data = head + b"\r\n\r\n"
                    while (frame := parser.next_frame()) is not None:
                        assert frame.rsv1
                        wire_sizes.append(len(frame.payload))
        await stream.aclose()
    assert wire_sizes[0] < len(COMPRESSIBLE) // 10


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.alone  # measures memory
async def test_decompression_bomb_closes_1009_without_inflating() -> None:
    inflated_size = 2**30  # 1 GiB of zeros ...
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(2**20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(inflated_size // len(chunk)))
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 1_100_000  # ... in about 1 MiB on the wire

    server = ExampleProcess("echo.py", "--port", "0", "--max-size", str(2**21))
    try:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        before = peak_rss_kib(server.proc.pid)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(DEFLATE_HANDSHAKE)
        frame = bytearray()
        write_frame(frame, Opcode.BINARY, bomb, rsv1=True, mask=True)
        received = b""
        with trio.fail_after(30):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
            await stream.send_all(frame)
            while chunk := await stream.receive_some():
                received += chunk
        await stream.aclose()
        peak = peak_rss_kib(server.proc.pid)
    finally:
        server.stop()
    parser = FrameParser(require_mask=False, allowed_rsv=0x40)
    parser.feed(received.partition(b"\r\n\r\n")[2])
    close = parser.next_frame()
    assert isinstance(close, Frame) and close.opcode is Opcode.CLOSE
    assert close.payload[:2] == (1009).to_bytes(2, "big")
    # The server never held the inflated gigabyte: its peak grew by a few MiB at most.
    assert peak - before < 64 * 1024, f"peak RSS grew by {(peak - before) // 1024} MiB"
    print(f"\npeak RSS {before // 1024} MiB before, {peak // 1024} MiB after the 1 GiB bomb")


async def test_compression_option_is_checked() -> None:
    with pytest.raises(ValueError, match="deflate"):
        async with trio_ws.open_server(echo, "127.0.0.1", 0, compression="gzip"):
            pass


async def test_server_can_require_no_context_takeover() -> None:
    config = trio_ws.DeflateConfig(server_no_context_takeover=True)
    async with (
        trio_ws.open_server(echo, "127.0.0.1", 0, compression=config) as server,
        trio_ws.connect(ws_url(server)) as ws,
    ):
        assert "server_no_context_takeover" in ws.response_headers["Sec-WebSocket-Extensions"]
        for text in ["same", "same", "other"]:
            await ws.send(text)
            assert await ws.recv() == text
