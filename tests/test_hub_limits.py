"""A subscriber's queue, bounded by count and by bytes, under each overflow policy:
drop_oldest, disconnect (1013) and latest (conflation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import trio_ws
from trio_ws.frames import Opcode
from trio_ws.subscriber_queue import SubscriberQueue

from .conftest import RawClient


def message(tag: str, size: int = 100) -> trio_ws.PreparedMessage:
    return trio_ws.PreparedMessage(tag.encode().ljust(size, b"."))


def put(queue: SubscriberQueue[trio_ws.PreparedMessage], topic: str, frames: trio_ws.PreparedMessage) -> bool:
    return queue.put(topic, frames, len(frames.payload))


def drain(queue: SubscriberQueue[trio_ws.PreparedMessage]) -> list[bytes]:
    out: list[bytes] = []

    async def take() -> None:
        while len(queue):
            frames = await queue.get()
            assert frames is not None
            out.append(frames.payload.rstrip(b"."))

    trio.run(take)
    return out


def test_drop_oldest_keeps_the_newest_within_both_limits() -> None:
    queue = SubscriberQueue[trio_ws.PreparedMessage](size=100, max_bytes=1000, policy="drop_oldest")
    for i in range(20):
        assert put(queue, "t", message(f"m{i}"))
        assert len(queue) <= 10 and queue.queued_bytes <= 1000
    assert queue.dropped == 10
    assert drain(queue) == [f"m{i}".encode() for i in range(10, 20)]
    assert queue.queued_bytes == 0


def test_disconnect_refuses_what_would_cross_either_limit_and_queues_nothing_of_it() -> None:
    by_bytes = SubscriberQueue[trio_ws.PreparedMessage](size=100, max_bytes=250, policy="disconnect")
    assert put(by_bytes, "t", message("a")) and put(by_bytes, "t", message("b"))
    assert not put(by_bytes, "t", message("c")), "300 bytes is past 250"
    assert drain(by_bytes) == [b"a", b"b"]
    by_count = SubscriberQueue[trio_ws.PreparedMessage](size=2, max_bytes=10**6, policy="disconnect")
    assert put(by_count, "t", message("a")) and put(by_count, "t", message("b"))
    assert not put(by_count, "t", message("c"))


def test_latest_keeps_the_newest_of_each_topic_in_its_place() -> None:
    queue = SubscriberQueue[trio_ws.PreparedMessage](size=64, max_bytes=10**6, policy="latest")
    for i in range(100):
        for topic in ("a", "b", "c"):
            assert put(queue, topic, message(f"{topic}{i}"))
    assert len(queue) == 3
    assert queue.dropped == 297
    assert drain(queue) == [b"a99", b"b99", b"c99"]


def test_latest_past_the_byte_limit_drops_another_topic_never_the_newest() -> None:
    queue = SubscriberQueue[trio_ws.PreparedMessage](size=64, max_bytes=1000, policy="latest")
    put(queue, "a", message("a0", 400))
    put(queue, "b", message("b0", 400))
    put(queue, "a", message("a1", 700))  # a replaces a0 in the front place: 1100 bytes
    assert drain(queue) == [b"a1"], "b0 goes, not the newest value of a"


def test_one_message_larger_than_the_byte_limit_is_still_queued_alone() -> None:
    queue = SubscriberQueue[trio_ws.PreparedMessage](size=8, max_bytes=100, policy="drop_oldest")
    put(queue, "t", message("small", 50))
    put(queue, "t", message("huge", 5000))
    assert drain(queue) == [b"huge"]


def test_queue_bytes_is_checked() -> None:
    with pytest.raises(ValueError, match="queue_bytes"):
        trio_ws.HubConfig(queue_bytes=0)


@asynccontextmanager
async def slow_subscriber(
    hub: trio_ws.Hub, *topics: str
) -> AsyncIterator[tuple[trio_ws.Subscription, RawClient]]:
    """A server whose one client subscribes to `topics` and reads nothing (until the test
    reads its `RawClient`); with its subscription."""
    subscriptions: list[trio_ws.Subscription] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        async with hub.subscribe(ws, *topics) as subscription:
            subscriptions.append(subscription)
            await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0, compression=None, write_limit=2**16) as server:
        raw = await RawClient.connect(server.port)
        with trio.fail_after(5):
            while not subscriptions:
                await trio.sleep(0.01)
        yield subscriptions[0], raw


async def test_a_ticker_subscriber_that_stops_reading_gets_the_newest_price_of_each_topic() -> None:
    """Three tickers publish 2,000 prices of 8 kB each to a client that reads nothing:
    under "latest" its queue never holds more than one per topic, and once it reads, the
    last message of each topic is that topic's newest price."""
    topics = ("AAA", "BBB", "CCC")
    async with trio_ws.open_hub(on_overflow="latest") as hub:
        async with slow_subscriber(hub, *topics) as (subscription, raw):
            longest = 0
            for price in range(2000):
                for topic in topics:
                    await hub.publish(topic, f"{topic} {price:05} ".ljust(8192, "."))
                    longest = max(longest, len(subscription.queue))
            assert longest <= 3
            assert subscription.dropped > 5000
            with trio.fail_after(10):
                while True:
                    newest = {}
                    for frame in raw.frames():
                        topic, price = frame.payload.split()[:2]
                        newest[topic.decode()] = int(price)
                    if newest == dict.fromkeys(topics, 1999):
                        break
                    raw.received += await raw.stream.receive_some()
            await raw.stream.aclose()


async def test_a_slow_subscriber_past_queue_bytes_is_disconnected_with_1013(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The count limit is far away (10,000); the byte limit (256 kB) is what a client that
    stops reading crosses, and "disconnect" closes it with 1013."""
    async with trio_ws.open_hub(on_overflow="disconnect", queue_size=10_000, queue_bytes=2**18) as hub:
        async with slow_subscriber(hub, "feed") as (subscription, raw):
            peak = published = 0
            while published < 2000:  # 16 MB
                await hub.publish("feed", bytes(8192))
                published += 1
                peak = max(peak, subscription.queue.queued_bytes)
                if not hub.topics:
                    break
            assert not hub.topics, "the slow subscriber must have been disconnected"
            assert published < 1000, f"disconnected only after {published} messages"
            assert peak <= 2**18
            with trio.fail_after(10):
                await raw.read_to_eof()
            close = raw.frames()[-1]
            assert close.opcode is Opcode.CLOSE and close.payload[:2] == (1013).to_bytes(2, "big")
    assert "subscriber too slow (queue of 262144 bytes full)" in caplog.text
