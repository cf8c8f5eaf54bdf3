"""A replay costs what a queue costs: 12 clients resume 57 MiB of history and read nothing,
in one process and through Redis. Before, each held its own framed copy of everything it
missed (85-95 MiB a client, 1.1 GiB in all); now each holds a cursor and one batch."""

from __future__ import annotations

import gc
import json

import pytest
import trio

import trio_ws
from trio_ws import StreamPosition

from .conftest import RawClient, RedisServer, rss_of

pytestmark = [pytest.mark.timeout(300), pytest.mark.alone]

HISTORY = 1000
SIZE = 60_000  # 1000 x 60 kB: 57 MiB of history
CLIENTS = 12
QUEUE_BYTES = 2**22  # the default


@pytest.mark.parametrize("mode", ["in process", "redis"])
async def test_12_clients_resuming_57_mib_and_reading_nothing_cost_at_most_their_queues(
    redis_server: RedisServer, mode: str
) -> None:
    backend = None
    if mode == "redis":
        backend = trio_ws.RedisBackend(redis_server.url, max_message_size=2**17)
    started: list[trio_ws.Subscription] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        if ws.path == "/watch":  # the position of each publication, as it comes
            async with hub.subscribe(ws, "t", format=lambda p: f"{p.offset}:{p.epoch}", queue_size=HISTORY):
                await ws.wait_closed()
            return
        offset, epoch = ws.path[1:].split(":")
        async with hub.subscribe(ws, "t", since=StreamPosition(int(offset), epoch)) as sub:
            started.append(sub)
            await ws.wait_closed()

    async with (
        trio_ws.open_hub(backend, history_size=HISTORY, history_ttl=None, queue_bytes=QUEUE_BYTES) as hub,
        trio_ws.open_server(handler, "127.0.0.1", 0, compression=None) as server,
    ):
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/watch") as watch:
            await trio.sleep(0.1)
            for i in range(HISTORY):
                await hub.publish("t", json.dumps(i).ljust(SIZE))
            with trio.fail_after(30):
                while True:
                    offset, epoch = str(await watch.recv()).split(":")
                    if int(offset) == HISTORY:
                        break
        gc.collect()
        before = rss_of()
        silent = [await RawClient.connect(server.port, path=f"/0:{epoch}") for _ in range(CLIENTS)]
        with trio.fail_after(30):
            while len(started) < CLIENTS or any(sub.recovered is None for sub in started):
                await trio.sleep(0.05)
        await trio.sleep(2)  # every replay has filled its socket and waits
        grown = rss_of() - before
        assert all(sub.recovered for sub in started)
        size = HISTORY * SIZE / 2**20
        print(f"{mode}: 12 silent resumes of {size:.0f} MiB grew RSS by {grown / 2**20:.1f} MiB")
        assert grown < CLIENTS * QUEUE_BYTES + 64 * 2**20
        # A client that does read gets every missed publication, in order, then a live one.
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/0:{epoch}", max_size=2**17) as reader:
            with trio.fail_after(60):
                for i in range(HISTORY):
                    assert json.loads(await reader.recv()) == i
                await hub.publish("t", "live")
                assert await reader.recv() == "live"
        for client in silent:
            await client.stream.aclose()
