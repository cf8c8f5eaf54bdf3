"""History and positions through Redis: offsets from one counter for every process, and
resuming on any worker (examples/resume.py under `serve --workers 2 --redis`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws import StreamPosition

from .conftest import RedisServer
from .test_redis import Workers

pytestmark = pytest.mark.timeout(300)


class FeedWorkers(Workers):
    """`serve examples.resume:router --workers 2 --redis URL --history-size 1000`."""

    def __init__(self, redis_url: str, extra: tuple[str, ...] = ()) -> None:
        extra = ("--history-size", "1000", *extra)
        super().__init__(redis_url, target="examples.resume:router", extra=extra)

    def feed(self, topic: str, since: StreamPosition | None = None) -> str:
        resume = f"?offset={since.offset}&epoch={since.epoch}" if since else ""
        return f"ws://127.0.0.1:{self.port}/feed/{topic}{resume}"


@pytest.fixture
def feed_workers(redis_server: RedisServer) -> AsyncIterator[FeedWorkers]:
    running = FeedWorkers(redis_server.url)
    yield running  # type: ignore[misc]
    running.stop()


async def receive_json(ws: trio_ws.WebSocket) -> dict[str, Any]:
    return json.loads(str(await ws.recv()))  # type: ignore[no-any-return]


@asynccontextmanager
async def feed_on_worker(
    workers: FeedWorkers, pid: int, topic: str, since: StreamPosition | None = None
) -> AsyncIterator[tuple[trio_ws.WebSocket, dict[str, Any]]]:
    """A feed client served by worker `pid` (connecting until SO_REUSEPORT picks it), and
    its start message."""
    for _ in range(100):
        async with AsyncExitStack() as stack:
            ws = await stack.enter_async_context(trio_ws.connect(workers.feed(topic, since)))
            with trio.fail_after(10):
                start = await receive_json(ws)
            assert start["type"] == "start", start
            if start["worker"] == pid:
                yield ws, start
                return
    raise AssertionError(f"SO_REUSEPORT never sent a client to worker {pid}")


async def messages(ws: trio_ws.WebSocket, count: int) -> list[tuple[int, str, str]]:
    """The next `count` messages as (offset, epoch, data)."""
    received = []
    with trio.fail_after(20):
        for _ in range(count):
            message = await receive_json(ws)
            assert message["type"] == "message", message
            received.append((message["offset"], message["epoch"], message["data"]))
    return received


def position_after(received: list[tuple[int, str, str]]) -> StreamPosition:
    offset, epoch, _ = received[-1]
    return StreamPosition(offset, epoch)


async def test_a_client_of_another_worker_recovers_what_it_missed_on_either_worker(
    feed_workers: FeedWorkers, redis_server: RedisServer
) -> None:
    """A client of worker B drops; a client of worker A publishes 100 messages. Resuming
    from its last position, on worker A and on worker B, it gets exactly those 100, in
    order, then a live one. After Redis restarts without its data, the same resume is
    refused (`recovered` false), and what follows is in a new epoch: never a silent gap."""
    pid_a, pid_b = sorted(feed_workers.pids)
    async with feed_on_worker(feed_workers, pid_a, "news") as (publisher, _):
        async with feed_on_worker(feed_workers, pid_b, "news") as (subscriber, start):
            assert start["recovered"] is None and start["offset"] == 0
            await publisher.send("before the drop")
            seen = await messages(subscriber, 1)
        since = position_after(seen)
        assert since.offset == 1
        for i in range(100):
            await publisher.send(f"missed {i}")
        published = await messages(publisher, 101)
        assert [data for _, _, data in published] == ["before the drop"] + [f"missed {i}" for i in range(100)]
        for pid in (pid_a, pid_b):
            async with feed_on_worker(feed_workers, pid, "news", since) as (resumed, start):
                assert start["recovered"] is True, start
                assert (start["offset"], start["epoch"]) == (published[-1][0], since.epoch)
                recovered = await messages(resumed, len(published) - 1)
                assert recovered == published[1:], f"on worker {pid}"
                await publisher.send(f"live after resuming on {pid}")
                (live,) = await messages(resumed, 1)
                assert live[2] == f"live after resuming on {pid}"
                assert live[0] == recovered[-1][0] + 1
            published += await messages(publisher, 1)  # the live one is missed by the next resume

        redis_server.stop()
        await trio.to_thread.run_sync(redis_server.start)  # empty: --save "" and no AOF
        for pid in (pid_a, pid_b):
            with trio.fail_after(30):
                while True:  # until this worker reads positions from Redis again
                    async with feed_on_worker(feed_workers, pid, "news", since) as (resumed, start):
                        if start["epoch"] is not None:
                            break
                    await trio.sleep(0.2)
            assert start["recovered"] is False, start
            assert start["epoch"] != since.epoch
        # The publisher's worker subscribes again a moment after Redis is back: what is
        # published before that is in the stream but not seen live. Probe until one comes
        # back; the new epoch numbers from 1, counting the probes not seen.
        probes = 0
        with trio.fail_after(20):
            while True:
                await publisher.send(f"probe {probes}")
                probes += 1
                with trio.move_on_after(0.3):
                    message = await receive_json(publisher)
                    break
        assert message["epoch"] not in (None, since.epoch), message
        assert message["offset"] == int(message["data"].split()[1]) + 1, message
        await publisher.send("after the restart")
        with trio.fail_after(20):
            while (message := await receive_json(publisher))["data"] != "after the restart":
                pass
        assert message["epoch"] not in (None, since.epoch) and message["offset"] == probes + 1, message


async def test_two_processes_publishing_at_once_give_unique_consecutive_offsets_seen_in_one_order(
    feed_workers: FeedWorkers,
) -> None:
    """Two publishers, one per worker, send 500 messages each at the same time to one
    topic. The 1,000 offsets are unique and consecutive, and two subscribers of each
    worker see every message, in the same order."""
    pid_a, pid_b = sorted(feed_workers.pids)
    async with AsyncExitStack() as stack:
        publishers = []
        subscribers = []
        for pid in (pid_a, pid_b):
            ws, start = await stack.enter_async_context(feed_on_worker(feed_workers, pid, "race"))
            publishers.append(ws)
            for _ in range(2):
                ws, _ = await stack.enter_async_context(feed_on_worker(feed_workers, pid, "race"))
                subscribers.append(ws)
        first = start["offset"] + 1

        async def publish_all(ws: trio_ws.WebSocket, name: str) -> None:
            for i in range(500):
                await ws.send(f"{name} {i}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_all, publishers[0], "a")
            nursery.start_soon(publish_all, publishers[1], "b")
        orders = [await messages(ws, 1000) for ws in subscribers]
    offsets = [offset for offset, _, _ in orders[0]]
    assert offsets == list(range(first, first + 1000))
    assert all(order == orders[0] for order in orders[1:])
    data = [text for _, _, text in orders[0]]
    assert sorted(data) == sorted([f"a {i}" for i in range(500)] + [f"b {i}" for i in range(500)])
    for name in "ab":  # each publisher's own order holds within the total order
        mine = [int(text.split()[1]) for text in data if text.startswith(name)]
        assert mine == list(range(500))


@asynccontextmanager
async def history_hubs(url: str, **options: Any) -> AsyncIterator[tuple[trio_ws.Hub, trio_ws.Hub, int]]:
    """Hub A and hub B, both with history through RedisBackend(url), and the port of a
    server under hub B serving examples.resume's feed."""
    from examples.resume import router

    backends = trio_ws.RedisBackend(url, **options), trio_ws.RedisBackend(url, **options)
    async with (
        trio_ws.open_hub(backend=backends[0], history_size=10_000) as hub_a,
        trio_ws.open_hub(backend=backends[1], history_size=10_000) as hub_b,
    ):
        # The server's handlers run under hub B: open_server is entered inside it.
        async with trio_ws.open_server(router, "127.0.0.1", 0) as server:
            yield hub_a, hub_b, server.port


def feed_uri(port: int, topic: str, since: StreamPosition | None = None) -> str:
    resume = f"?offset={since.offset}&epoch={since.epoch}" if since else ""
    return f"ws://127.0.0.1:{port}/feed/{topic}{resume}"


async def test_resumes_racing_a_fast_publisher_have_no_gap_and_no_duplicate(
    redis_server: RedisServer,
) -> None:
    """Hub A publishes as fast as it can while a client of hub B drops and resumes 20
    times, reading a few messages each time. Across all the connections, the client sees
    every offset exactly once, in order: the switch from replay to live loses and repeats
    nothing, however the publishes fall around the resume's reads from Redis."""
    async with history_hubs(redis_server.url) as (hub_a, _, port):
        published = 0

        async def publish_fast() -> None:
            nonlocal published
            while True:
                await hub_a.publish("race", f"m{published}")
                published += 1
                if published % 16 == 0:
                    await trio.lowlevel.checkpoint()

        seen: list[int] = []
        since = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_fast)
            for attempt in range(20):
                async with trio_ws.connect(feed_uri(port, "race", since)) as ws:
                    start = await receive_json(ws)
                    if since is None:
                        seen.append(start["offset"])  # where the first connection starts
                    else:
                        assert start["recovered"] is True, (attempt, start)
                    received = await messages(ws, 30 + attempt * 7)
                seen += [offset for offset, _, _ in received]
                since = position_after(received)
            nursery.cancel_scope.cancel()
    assert published > 20 * 30
    assert seen == list(range(seen[0], seen[0] + len(seen))), "a gap or a duplicate at a switch"


async def test_a_topic_keeps_a_history_of_its_own_in_redis_too(redis_server: RedisServer) -> None:
    """history_limits through Redis: the tickers keep 3 (the stream's MAXLEN), the rooms
    the hub's 100. After 5 missed, a room recovers all 5, a ticker reports it cannot."""
    from examples.resume import router

    from .test_hub_history import ticker_limits

    backend = trio_ws.RedisBackend(redis_server.url)
    async with (
        trio_ws.open_hub(backend=backend, history_size=100, history_limits=ticker_limits) as hub,
        trio_ws.open_server(router, "127.0.0.1", 0) as server,
    ):
        starts = {}
        for topic in ("ticker:eur", "room"):
            async with trio_ws.connect(feed_uri(server.port, topic)) as ws:
                start = await receive_json(ws)
                starts[topic] = StreamPosition(start["offset"], start["epoch"])
        for topic in starts:
            for i in range(5):
                await hub.publish(topic, f"{topic} {i}")
        for topic, recovered in [("room", True), ("ticker:eur", False)]:
            async with trio_ws.connect(feed_uri(server.port, topic, starts[topic])) as ws:
                assert (await receive_json(ws))["recovered"] is recovered
                if recovered:
                    assert [data for _, _, data in await messages(ws, 5)] == [f"room {i}" for i in range(5)]
        assert redis_server.command("XLEN", "trio_ws:{ticker:eur}:history").strip() == b":3"
