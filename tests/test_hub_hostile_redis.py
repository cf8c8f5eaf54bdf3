"""The hub's limits against Redis, hostile or merely slow: an oversized history reply,
malformed presence and position replies, bytes that are not RESP on the listener, a
listener that lags the publishing connection (the staleness check on the live path), and a
flood of live publications while a resume reads its position (the held buffer's bound)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import trio_ws
from trio_ws import StreamPosition

from .conftest import RedisServer, rss_of
from .hostile_redis import HostileRedis, array, bulk

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def hostile_hub(
    **options: object,
) -> AsyncIterator[tuple[trio_ws.Hub, HostileRedis, trio_ws.RedisBackend]]:
    redis = HostileRedis()
    async with trio.open_nursery() as nursery:
        await nursery.start(redis.run)
        backend = trio_ws.RedisBackend(redis.url, max_backoff=0.1, timeout=1, **options)  # type: ignore[arg-type]
        async with trio_ws.open_hub(backend, history_size=10) as hub:
            yield hub, redis, backend
        nursery.cancel_scope.cancel()


@pytest.mark.alone  # measures memory
async def test_an_oversized_history_reply_fails_that_read_and_costs_no_more_than_its_bound() -> None:
    """A READ answered with 64 MiB (announced, then sent): the publisher's reply bound is
    2 x max_message_size plus 64 KiB; past it the connection is dropped, the resume reports
    recovered=False, and the hub goes on."""
    async with hostile_hub(max_message_size=2**16) as (hub, redis, _backend):
        redis.scripts["READ"] = lambda args: b"$%d\r\n" % 2**26 + b"x" * 2**26 + b"\r\n"
        before = rss_of()
        async with hub.open_channel("t", since=StreamPosition(0, "epoch")) as channel:
            assert channel.subscription.recovered is False
            assert channel.subscription.position is None
        assert rss_of() - before < 16 * 2**20
        del redis.scripts["READ"]
        with trio.fail_after(5):  # the publisher comes back; the hub serves on
            while True:
                async with hub.open_channel("t", since=StreamPosition(0, "epoch")) as channel:
                    if channel.subscription.recovered:
                        break
                await trio.sleep(0.05)


@pytest.mark.parametrize(
    "answer",
    [
        array(bulk(b"epoch"), b":-5\r\n", b":1\r\n"),  # a negative offset
        array(bulk(b"e" * 100_000), b":1\r\n", b":1\r\n"),  # an epoch too long
        array(bulk(b"epoch"), bulk(b"1"), b":1\r\n"),  # an offset that is text
        b"-ERR hostile\r\n",
        b"*0\r\n",
    ],
    ids=["negative offset", "long epoch", "text offset", "error", "empty"],
)
async def test_a_position_reply_out_of_form_gives_live_publications_only(answer: bytes) -> None:
    async with hostile_hub() as (hub, redis, _backend):
        redis.scripts["POSITION"] = redis.scripts["READ"] = lambda args: answer
        async with hub.open_channel("t") as channel:
            assert channel.subscription.position is None
        async with hub.open_channel("t", since=StreamPosition(3, "epoch")) as channel:
            assert channel.subscription.recovered is False


@pytest.mark.parametrize(
    "answer",
    [
        array(bulk(b"a"), bulk(b"1"), bulk(b"b")),  # odd
        array(array(b":1\r\n"), bulk(b"1")),  # a member that is not a string
        array(bulk(b"deep"), bulk(b"[" * 100_000 + b"]" * 100_000)),  # JSON too deep to parse
        array(bulk(b"nan"), bulk(b"NaN")),
        array(bulk(b"garbage"), bulk(b"{not json")),
        b"%1\r\n*1\r\n:1\r\n:2\r\n",  # a RESP3 map keyed by a list: hiredis raised TypeError
    ],
    ids=["odd", "member not a string", "too deep", "NaN", "not JSON", "map keyed by a list"],
)
async def test_a_malformed_presence_reply_fails_that_call_or_is_skipped(answer: bytes) -> None:
    async with hostile_hub() as (hub, redis, _backend):
        redis.scripts["MEMBERS"] = lambda args: answer
        try:
            present = await hub.presence("room")
        except ConnectionError:
            pass
        else:
            assert all(isinstance(member, str) for member in present)
            assert "deep" not in present and "garbage" not in present
        del redis.scripts["MEMBERS"]
        with trio.fail_after(5):  # and the hub goes on
            while True:
                try:
                    assert await hub.presence("room") == {}
                    break
                except ConnectionError:
                    await trio.sleep(0.05)


async def test_bytes_that_are_not_resp_on_the_listener_cost_a_reconnection_not_the_hub() -> None:
    async with hostile_hub() as (hub, redis, _backend):
        async with hub.open_channel("t") as channel:
            await redis.push(b"%1\r\n*1\r\n:1\r\n:2\r\n")  # hiredis: TypeError
            await redis.push(b"!not resp at all\r\n")
            await trio.sleep(0.3)
            with trio.fail_after(5):  # the listener reconnected and subscribed again
                while redis.subscribed == []:
                    await trio.sleep(0.02)
            origin = b"0123456789abcdef"
            payload = origin + b"t" + (1).to_bytes(8, "big") + b"still here"
            await redis.push(array(bulk(b"message"), bulk(b"trio_ws:t"), bulk(payload)))
            with trio.fail_after(5):
                assert (await channel.receive()).data == "still here"


# ---- the live path's staleness check, and the held buffer's bound -------------------------


class LaggingRelay:
    """Forwards to Redis; what Redis sends to the n-th connection made (0: a backend's
    listener, 1: its publishing connection) arrives `lags[n]` seconds late, in order."""

    def __init__(self, target: int, lags: dict[int, float]) -> None:
        self.target, self.lags, self.port, self.made = target, lags, 0, 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        number = self.made
        self.made += 1
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, None, nursery.cancel_scope)
            nursery.start_soon(self._pump, upstream, client, number, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, number: int | None, done: trio.CancelScope
    ) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](10_000)

        async def delayed() -> None:
            async for at, data in receive:
                await trio.sleep_until(at + (self.lags.get(number, 0.0) if number is not None else 0.0))
                await sink.send_all(data)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(delayed)
                while data := await source.receive_some(65536):
                    await send.send((trio.current_time(), data))
                await send.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


async def publish_forever(hub: trio_ws.Hub, topic: str, pause: float = 0.001) -> None:
    n = 0
    while True:
        n += 1
        await hub.publish(topic, json.dumps(n))
        await trio.sleep(pause)


async def test_a_listener_that_lags_the_position_read_delivers_no_duplicate(
    redis_server: RedisServer,
) -> None:
    """The listener's data arrives 300 ms late; the position and the replay come on the
    publishing connection at once. Publications at or before the position then arrive live
    after the subscription went live: only the staleness check of the live path drops them."""
    async with trio.open_nursery() as nursery:
        relay = LaggingRelay(redis_server.port, {0: 0.3})
        await nursery.start(relay.run)
        lagging = trio_ws.RedisBackend(f"redis://127.0.0.1:{relay.port}/0")
        publisher = trio_ws.RedisBackend(redis_server.url)
        async with (
            trio_ws.open_hub(lagging, history_size=1000) as hub,
            trio_ws.open_hub(publisher, history_size=1000) as source,
        ):
            async with hub.open_channel("t") as witness:  # the topic is subscribed in Redis
                nursery.start_soon(publish_forever, source, "t")
                await trio.sleep(0.5)
                latest = (await witness.receive()).position
                assert latest is not None
                for _ in range(5):  # resumes racing the publisher, with the listener behind
                    async with hub.open_channel("t", since=latest) as resumed:
                        assert resumed.subscription.recovered
                        offsets = []
                        with trio.fail_after(5):
                            while len(offsets) < 400:
                                offsets.append((await resumed.receive()).offset)
                    assert offsets == list(range(latest.offset + 1, latest.offset + 401)), (
                        "once each, in order"
                    )
            nursery.cancel_scope.cancel()


async def test_a_flood_while_a_resume_reads_its_position_stays_within_the_held_bound(
    redis_server: RedisServer,
) -> None:
    """The publishing connection of the resuming process lags 300 ms, so its position and
    replay come late, while another process floods the topic: the live publications held
    meanwhile stay within half of queue_bytes and queue_size (the oldest go), and the
    subscriber still gets every offset once, in order, reading what the held buffer dropped
    from the history."""

    async def watch_held(sub: trio_ws.Subscription, peaks: list[int]) -> None:
        while True:
            peaks[0] = max(peaks[0], sub.held)
            peaks[1] = max(peaks[1], sub.held_bytes)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        relay = LaggingRelay(redis_server.port, {})
        await nursery.start(relay.run)
        lagging = trio_ws.RedisBackend(f"redis://127.0.0.1:{relay.port}/0")
        async with (
            trio_ws.open_hub(lagging, history_size=20_000, queue_size=16, queue_bytes=2**14) as hub,
            trio_ws.open_hub(trio_ws.RedisBackend(redis_server.url), history_size=20_000) as source,
        ):
            async with hub.open_channel("t") as witness:
                await source.publish("t", "0")
                start = (await witness.receive()).position
            assert start is not None
            nursery.start_soon(publish_forever, source, "t", 0.0002)
            peaks = [0, 0]
            relay.lags[1] = 0.3  # the publishing connection lags: the position comes late
            async with hub.open_channel("t", since=start, queue_size=16, queue_bytes=2**14) as resumed:
                relay.lags[1] = 0.0
                nursery.start_soon(watch_held, resumed.subscription, peaks)
                offsets = []
                with trio.fail_after(30):
                    while len(offsets) < 3000:
                        offsets.append((await resumed.receive()).offset)
            assert offsets == list(range(start.offset + 1, start.offset + 3001))
            print(f"held at most {peaks[0]} publications, {peaks[1]} bytes")
            assert peaks[0] == 16, "the flood must have filled the held buffer"
            assert peaks[1] <= 2**13
            # Without since: the position comes late, the held buffer has dropped the
            # oldest of what followed it, and the subscription reads them from the history
            # before it goes live (else a silent gap right after its start).
            for _ in range(3):
                relay.lags[1] = 0.3
                async with hub.open_channel("t", queue_size=16, queue_bytes=2**14) as fresh:
                    relay.lags[1] = 0.0
                    position = fresh.subscription.position
                    assert position is not None
                    assert fresh.subscription.held == 16, "the flood must have filled the held buffer"
                    with trio.fail_after(30):
                        offsets = [(await fresh.receive()).offset for _ in range(1000)]
                assert offsets == list(range(position.offset + 1, position.offset + 1001))
            nursery.cancel_scope.cancel()
