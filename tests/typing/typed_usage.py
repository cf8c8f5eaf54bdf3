"""Type-checked by tests/test_typing.py with `mypy --strict`, never run: each line marked
`# error` must be an error, and no other line may be."""

from __future__ import annotations

import trio

import trio_ws


async def handler(ws: trio_ws.WebSocket) -> None:
    await ws.send("hi")


async def misspelt_and_mistyped_options() -> None:
    await trio_ws.serve(handler, "127.0.0.1", 0, max_conections=3)  # error
    await trio_ws.serve(handler, "127.0.0.1", 0, max_connections="3")  # error
    async with trio_ws.open_server(handler, "127.0.0.1", 0, max_conections=3):  # error
        pass
    async with trio_ws.open_server(handler, "127.0.0.1", 0, ping_interval="20"):  # error
        pass
    async with trio_ws.open_server(handler, "127.0.0.1", 0, max_connections=3, ping_interval=None):
        pass
    async with trio_ws.connect("ws://127.0.0.1/", max_redirect=3):  # error
        pass


async def one_configuration() -> None:
    config = trio_ws.ServerConfig(handler=handler, max_connections=3, ping_interval=None)
    trio_ws.ServerConfig(handler=handler, max_conections=3)  # error
    trio_ws.ServerConfig(handler=handler, max_size="1 MiB")  # error
    config.replace(max_conections=3)  # error
    config.max_connections = 4  # error
    await trio_ws.serve(config, "127.0.0.1", 0, max_connections=10)
    async with trio_ws.open_server(config.replace(max_size=2**16), "127.0.0.1", 0):
        pass


async def one_client_configuration() -> None:
    config = trio_ws.ClientConfig(max_size=None, open_timeout=3)
    trio_ws.ClientConfig(max_redirect=3)  # error
    trio_ws.ClientConfig(max_size="1 MiB")  # error
    config.replace(open_timout=3)  # error
    async with trio_ws.connect("ws://127.0.0.1/", config, ping_interval=None) as ws:
        await ws.send("hi")
    async with trio_ws.connect("ws://127.0.0.1/", config, ping_interval="20"):  # error
        pass
    async with trio_ws.reconnect("ws://127.0.0.1/", config, max_delay=5.0, max_size=None):
        pass
    async with trio_ws.reconnect("ws://127.0.0.1/", max_sise=None):  # error
        pass


async def refused() -> str | None:
    try:
        async with trio_ws.connect("ws://127.0.0.1/"):
            pass
    except trio_ws.InvalidHandshake as exc:
        retry_after: str | None = exc.headers.get("Retry-After")
        return retry_after
    return None


async def streaming(ws: trio_ws.WebSocket) -> int:
    size = 0
    async for fragment in ws.recv_streaming():
        size += len(fragment)
    async with trio_ws.reconnect("ws://127.0.0.1/", max_delay=5.0) as connections:
        async for other in connections:
            await other.send("again")
    return size


trio.run(refused)
