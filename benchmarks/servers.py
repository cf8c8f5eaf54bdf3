"""The servers under test: the same echo and fanout service in each library.

    python benchmarks/servers.py LIBRARY PORT [--compression]

Every WebSocket server echoes each message on any path, except /fanout: there a text
message "go N" makes the server broadcast N binary messages of 64 bytes to every /fanout
connection, with the library's own broadcast where it has one. `raw_trio` is a plain Trio
TCP echo (no WebSocket framing): the ceiling for anything on Trio. `trio_floor` is the
least a WebSocket server on Trio can do for the handshake and idle rows: one task per
connection, the 101 written by hand (no h11, no WebSocket object), the close frame answered,
then the TCP close. `trio_ws_metrics` is trio_ws with `metrics=True`, scraped meanwhile.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

PAYLOAD64 = bytes(range(64))
MAX_SIZE = 2**21


def fanout_count(message: object) -> int | None:
    if isinstance(message, str) and message.startswith("go "):
        return int(message[3:])
    return None


SCRAPE_EVERY = 0.5  # seconds: trio_ws_metrics is scraped thirty times as often as Prometheus's default


def scrape_forever(port: int) -> None:
    """GET /metrics every SCRAPE_EVERY seconds, from a thread of the server's own process (so
    on its core: the scrape's whole cost, client side included, counts against the server)."""
    import urllib.request

    while True:
        time.sleep(SCRAPE_EVERY)
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()


async def serve_trio_ws_metrics(port: int, compression: bool) -> None:
    """trio_ws with `metrics=True`, scraped every SCRAPE_EVERY seconds meanwhile."""
    threading.Thread(target=scrape_forever, args=(port,), daemon=True).start()
    await serve_trio_ws(port, compression, metrics=True)


async def serve_trio_ws(port: int, compression: bool, metrics: bool = False) -> None:
    import trio

    import trio_ws

    fanout: set[trio_ws.WebSocket] = set()

    async def handler(ws: trio_ws.WebSocket) -> None:
        if ws.path != "/fanout":
            async for message in ws:
                await ws.send(message)
            return
        fanout.add(ws)
        try:
            async for message in ws:
                for _ in range(fanout_count(message) or 0):
                    trio_ws.broadcast(fanout, PAYLOAD64)
                    await trio.lowlevel.checkpoint()
        finally:
            fanout.discard(ws)

    async with trio_ws.open_server(
        handler,
        "127.0.0.1",
        port,
        compression="deflate" if compression else None,
        max_size=MAX_SIZE,
        metrics=metrics,
    ):
        print("ready", flush=True)
        await trio.sleep_forever()


async def serve_websockets_trio(port: int, compression: bool) -> None:
    import trio
    from websockets.trio.server import broadcast, serve

    fanout: set[object] = set()

    async def handler(ws: object) -> None:
        if ws.request.path != "/fanout":  # type: ignore[attr-defined]
            async for message in ws:  # type: ignore[attr-defined]
                await ws.send(message)  # type: ignore[attr-defined]
            return
        fanout.add(ws)
        try:
            async for message in ws:  # type: ignore[attr-defined]
                for _ in range(fanout_count(message) or 0):
                    await broadcast(fanout, PAYLOAD64)  # type: ignore[arg-type]  # a coroutine here
                    await trio.lowlevel.checkpoint()
        finally:
            fanout.discard(ws)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve(
                handler,
                port,
                host="127.0.0.1",
                compression="deflate" if compression else None,
                max_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        print("ready", flush=True)


async def serve_websockets_asyncio(port: int, compression: bool) -> None:
    import asyncio

    from websockets.asyncio.server import broadcast, serve

    fanout: set[object] = set()

    async def handler(ws: object) -> None:
        if ws.request.path != "/fanout":  # type: ignore[attr-defined]
            async for message in ws:  # type: ignore[attr-defined]
                await ws.send(message)  # type: ignore[attr-defined]
            return
        fanout.add(ws)
        try:
            async for message in ws:  # type: ignore[attr-defined]
                for _ in range(fanout_count(message) or 0):
                    broadcast(fanout, PAYLOAD64)  # type: ignore[arg-type]
                    await asyncio.sleep(0)
        finally:
            fanout.discard(ws)

    async with serve(
        handler, "127.0.0.1", port, compression="deflate" if compression else None, max_size=MAX_SIZE
    ):
        print("ready", flush=True)
        await asyncio.Future()


async def serve_trio_websocket(port: int, compression: bool) -> None:
    import trio
    from trio_websocket import ConnectionClosed, serve_websocket

    fanout: set[object] = set()

    async def handler(request: object) -> None:
        ws = await request.accept()  # type: ignore[attr-defined]
        try:
            if ws.path != "/fanout":
                while True:
                    await ws.send_message(await ws.get_message())
            fanout.add(ws)
            while True:
                for _ in range(fanout_count(await ws.get_message()) or 0):
                    for peer in list(fanout):  # no broadcast of its own: send to each
                        await peer.send_message(PAYLOAD64)  # type: ignore[attr-defined]
        except ConnectionClosed:
            fanout.discard(ws)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_websocket(
                handler,
                "127.0.0.1",
                port,
                ssl_context=None,
                max_message_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        print("ready", flush=True)


async def serve_raw_trio(port: int, compression: bool) -> None:
    import trio

    async def echo(stream: trio.SocketStream) -> None:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, echo, port)
        print("ready", flush=True)


async def serve_trio_floor(port: int, compression: bool) -> None:
    import base64
    import hashlib

    import trio

    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    async def upgrade_then_close(stream: trio.SocketStream) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                head += chunk
            key = head.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0]
            accept = base64.b64encode(hashlib.sha1(key + guid).digest())
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            rest = head.split(b"\r\n\r\n", 1)[1]
            while not rest or rest[0] & 0x0F != 0x8:  # wait for the client's close frame
                rest = await stream.receive_some(4096)
                if not rest:
                    return
            await stream.send_all(b"\x88\x02\x03\xe8")
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, upgrade_then_close, port)
        print("ready", flush=True)


SERVERS = {
    "trio_ws": ("trio", serve_trio_ws),
    "trio_ws_metrics": ("trio", serve_trio_ws_metrics),
    "websockets_trio": ("trio", serve_websockets_trio),
    "websockets_asyncio": ("asyncio", serve_websockets_asyncio),
    "trio_websocket": ("trio", serve_trio_websocket),
    "raw_trio": ("trio", serve_raw_trio),
    "trio_floor": ("trio", serve_trio_floor),
}

if __name__ == "__main__":
    library, port = sys.argv[1], int(sys.argv[2])
    loop, main = SERVERS[library]
    if loop == "trio":
        import trio

        trio.run(main, port, "--compression" in sys.argv)
    else:
        import asyncio

        asyncio.run(main(port, "--compression" in sys.argv))
