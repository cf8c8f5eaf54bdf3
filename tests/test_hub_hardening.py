"""The hub against hostile clients, careless apps and a failing Redis: each test here failed
on the hub before its hardening (issue "Hardening III, the hub")."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import trio_ws
from trio_ws import Publication, StreamPosition
from trio_ws.demo import config as demo_config
from trio_ws.history import MAX_EPOCH_LENGTH, MAX_OFFSET

from .conftest import RedisServer

pytestmark = pytest.mark.timeout(120)


async def receive(channel: trio_ws.PublicationChannel, count: int, seconds: float = 5) -> list[Publication]:
    out = []
    with trio.fail_after(seconds):
        for _ in range(count):
            out.append(await channel.receive())
    return out


def as_row(publication: Publication) -> str:
    return json.dumps([publication.offset, publication.epoch, publication.data])


@asynccontextmanager
async def ws_subscribed(
    hub: trio_ws.Hub, topic: str, since: StreamPosition | None = None
) -> AsyncIterator[tuple[trio_ws.Subscription, trio_ws.WebSocket]]:
    """A WebSocket client subscribed to `topic` (from `since`) through a real server: its
    subscription, and the client's end, which gets each publication as [offset, epoch, data]."""
    subscriptions: list[trio_ws.Subscription] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        async with hub.subscribe(ws, topic, since=since, format=as_row) as subscription:
            subscriptions.append(subscription)
            await ws.wait_closed()

    async with (
        trio_ws.open_server(handler, "127.0.0.1", 0) as server,
        trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        with trio.fail_after(5):
            while not subscriptions:
                await trio.sleep(0.005)
        yield subscriptions[0], ws


async def rows(ws: trio_ws.WebSocket, count: int) -> list[list[object]]:
    with trio.fail_after(5):
        return [json.loads(await ws.recv()) for _ in range(count)]


# ---- 1: one client's topic must never end the worker --------------------------------------


@asynccontextmanager
async def joined(port: int, room: str, name: str) -> AsyncIterator[trio_ws.WebSocket]:
    """A demo page's connection, joined to `room` (its welcome and presence read)."""
    async with trio_ws.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"type": "join", "room": room, "name": name}))
        with trio.fail_after(5):
            kinds = set()
            while not {"welcome", "present"} <= kinds:
                kinds.add(json.loads(await ws.recv())["type"])
        yield ws


async def next_message(ws: trio_ws.WebSocket) -> dict[str, object]:
    with trio.fail_after(5):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "message":
                return event  # type: ignore[no-any-return]


async def test_a_room_redis_cannot_carry_closes_one_client_with_1008_and_the_others_chat_on(
    redis_server: RedisServer,
) -> None:
    """`{"type": "join", "room": "\\udc80"}` ended the whole worker (1011, then exit 1)."""
    backend = trio_ws.RedisBackend(redis_server.url)
    async with (
        trio_ws.open_hub(backend, history_size=100),
        trio_ws.open_server(demo_config, "127.0.0.1", 0) as server,
        joined(server.port, "lobby", "ann") as ann,
        joined(server.port, "lobby", "bob") as bob,
    ):
        async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/ws") as hostile:
            await hostile.send('{"type": "join", "room": "\\udc80", "name": "m"}')
            with trio.fail_after(5):
                error = json.loads(await hostile.recv())
                assert error["type"] == "error" and "room" in error["error"]
                with pytest.raises(trio_ws.ConnectionClosed) as closed:
                    await hostile.recv()
            assert closed.value.code == 1008
        await trio.sleep(1.5)  # the worker died about a second later
        for i in range(3):
            await ann.send(json.dumps({"type": "message", "text": f"still here {i}"}))
            assert (await next_message(bob))["text"] == f"still here {i}"
        assert backend.rejected == 0


@pytest.mark.parametrize(
    "topic",
    ["\udc80", "", "x" * 1025, "é" * 513],
    ids=["lone surrogate", "empty", "1025 bytes", "1026 bytes of UTF-8"],
)
async def test_a_topic_that_cannot_be_carried_is_refused_to_its_caller_only(
    redis_server: RedisServer, topic: str
) -> None:
    async with trio_ws.open_hub(trio_ws.RedisBackend(redis_server.url)) as hub:
        with pytest.raises(ValueError, match="topic"):
            async with hub.open_channel(topic):
                pass
        with pytest.raises(ValueError, match="topic"):
            await hub.publish(topic, "m")
        with pytest.raises(ValueError, match="topic"):
            await hub.presence(topic)
        async with hub.open_channel("fine") as channel:  # and the hub goes on
            await hub.publish("fine", "m")
            assert [p.data for p in await receive(channel, 1)] == ["m"]
        assert not hub.topics


async def test_a_non_str_topic_is_a_value_error() -> None:
    async with trio_ws.open_hub() as hub:
        for topic in (b"bytes", 3, None):
            with pytest.raises(ValueError, match="a topic is a str"):
                await hub.publish(topic, "m")  # type: ignore[arg-type]


# ---- 2: a Redis restored from a snapshot must not reuse positions -------------------------


async def test_redis_restarted_from_an_older_snapshot_starts_a_new_epoch(tmp_path: Path) -> None:
    """m1..m10, SAVE, m11..m15, SIGKILL, restart on the same RDB: the meta hash reads offset
    10 again. Resuming from (15, E) must not be recovered, and new publications must not
    reuse offsets 11..15 of E."""
    redis = RedisServer("--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    redis.start()
    try:
        backend = trio_ws.RedisBackend(redis.url, max_backoff=0.2)
        async with trio_ws.open_hub(backend, history_size=100) as hub:
            async with ws_subscribed(hub, "t") as (_, ws):
                for i in range(1, 11):
                    await hub.publish("t", f"m{i}")
                assert redis.command("SAVE").startswith(b"+OK")
                for i in range(11, 16):
                    await hub.publish("t", f"m{i}")
                seen = await rows(ws, 15)
            assert [row[0] for row in seen] == list(range(1, 16))
            epoch = str(seen[-1][1])
            redis.kill()
            await trio.to_thread.run_sync(redis.start)
            assert (tmp_path / "dump.rdb").exists()
            async with ws_subscribed(hub, "ready") as (_, ready):
                with trio.fail_after(10):  # the backend is back, on another Redis process
                    while True:
                        await hub.publish("ready", "x")
                        with trio.move_on_after(0.1):
                            await ready.recv()
                            break
            for position in (StreamPosition(15, epoch), StreamPosition(12, epoch), StreamPosition(10, epoch)):
                async with ws_subscribed(hub, "t", since=position) as (sub, _):
                    assert sub.recovered is False, f"{position} must not be recovered after a rollback"
                    assert sub.position is not None and sub.position.epoch != epoch
            async with ws_subscribed(hub, "t") as (_, ws):
                await hub.publish("t", "after")
                (after,) = await rows(ws, 1)
            assert after[1] != epoch and after[0] == 1
    finally:
        redis.kill()


# ---- 3: a formatter that cannot be hashed, or raises, or is slow ---------------------------


@dataclass
class Tagger:
    """A formatter the docs allow: a dataclass with __call__ (unhashable: eq without frozen)."""

    tag: str

    def __call__(self, publication: Publication) -> str:
        return f"{self.tag}:{publication.data}"


@asynccontextmanager
async def subscribers(
    hub: trio_ws.Hub, topic: str, formats: list[object]
) -> AsyncIterator[list[trio_ws.WebSocket]]:
    """A server with a client per formatter, each subscribed to `topic` with it."""
    ready = 0

    async def handler(ws: trio_ws.WebSocket) -> None:
        nonlocal ready
        async with hub.subscribe(ws, topic, format=formats[int(ws.path[1:])]):  # type: ignore[arg-type]
            ready += 1
            await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio.open_nursery() as nursery:
            clients: list[trio_ws.WebSocket] = []
            for n in range(len(formats)):
                clients.append(await nursery.start(_client, f"ws://127.0.0.1:{server.port}/{n}"))
            with trio.fail_after(5):
                while ready < len(formats):
                    await trio.sleep(0.01)
            yield clients
            nursery.cancel_scope.cancel()


async def _client(url: str, *, task_status: trio.TaskStatus[trio_ws.WebSocket]) -> None:
    async with trio_ws.connect(url) as ws:
        task_status.started(ws)
        await trio.sleep_forever()


def failing(publication: Publication) -> str:
    if publication.data == "bad":
        raise RuntimeError("cannot format this one")
    return f"ok:{publication.data}"


@pytest.mark.parametrize("backend", ["none", "redis"])
async def test_unhashable_and_failing_formatters_cost_only_their_own_subscribers(
    redis_server: RedisServer, backend: str
) -> None:
    hub_options: dict[str, object] = {"history_size": 10}
    if backend == "redis":
        hub_options["backend"] = trio_ws.RedisBackend(redis_server.url)
    async with trio_ws.open_hub(**hub_options) as hub:  # type: ignore[arg-type]
        formats = [Tagger("a"), Tagger("a"), failing, None]
        async with subscribers(hub, "t", formats) as (tag1, tag2, fail, plain):
            for data in ("one", "bad", "two"):
                await hub.publish("t", data)
            with trio.fail_after(5):
                assert [await tag1.recv() for _ in range(3)] == ["a:one", "a:bad", "a:two"]
                assert [await tag2.recv() for _ in range(3)] == ["a:one", "a:bad", "a:two"]
                assert [await fail.recv() for _ in range(2)] == ["ok:one", "ok:two"], "only 'bad' is skipped"
                assert [await plain.recv() for _ in range(3)] == ["one", "bad", "two"]


async def test_a_slow_formatter_runs_once_per_publication_however_many_share_it() -> None:
    calls = 0

    def slow(publication: Publication) -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.01)
        return str(publication.data)

    async with trio_ws.open_hub() as hub:
        async with subscribers(hub, "t", [slow] * 20 + [None]) as clients:
            started = trio.current_time()
            for i in range(10):
                await hub.publish("t", str(i))
            elapsed = trio.current_time() - started
            with trio.fail_after(5):
                for ws in clients:
                    assert [await ws.recv() for _ in range(10)] == [str(i) for i in range(10)]
    assert calls == 10, "once per publication, not once per subscriber"
    assert elapsed < 0.5


# ---- 5: the timeout holds for a command sent while the pipeline was idle -----------------


async def test_every_redis_command_answers_or_fails_within_its_timeout(redis_server: RedisServer) -> None:
    """timeout=0.5 with health_check_interval=20: CLIENT PAUSE 6000 WRITE held a history
    publish for 6 s (the real bound was health_check_interval / 2)."""
    backend = trio_ws.RedisBackend(redis_server.url, timeout=0.5, health_check_interval=20, max_backoff=0.2)
    async with trio_ws.open_hub(backend, history_size=10) as hub:
        await hub.publish("t", "warm")  # the pipeline is connected and idle
        await trio.sleep(0.3)
        assert redis_server.command("CLIENT", "PAUSE", "6000", "WRITE").startswith(b"+OK")
        try:
            started = trio.current_time()
            assert await hub.publish("t", "paused") == 0
            assert trio.current_time() - started < 0.6
            assert backend.undelivered >= 1
            await trio.sleep(0.3)  # the pipeline reconnects (its commands paused again)
            started = trio.current_time()
            with pytest.raises(ConnectionError):
                await hub.presence("t")
            assert trio.current_time() - started < 0.6
            started = trio.current_time()
            async with hub.open_channel("t", since=StreamPosition(0, "e")) as channel:
                assert channel.subscription.position is None
                assert channel.subscription.recovered is False
            assert trio.current_time() - started < 0.6
        finally:
            redis_server.command("CLIENT", "UNPAUSE")


# ---- 6: a quiet topic resumes whole from the position the hub gave ------------------------


async def test_resuming_a_quiet_topic_from_its_given_position_is_recovered() -> None:
    async with trio_ws.open_hub(history_size=10) as hub:
        async with ws_subscribed(hub, "quiet") as (sub, _):
            start = sub.position
        assert start is not None and start.offset == 0
        await trio.sleep(0.01)  # its last subscriber gone: the stream must keep its epoch
        async with ws_subscribed(hub, "quiet", since=start) as (sub, ws):
            assert sub.recovered is True
            assert sub.position == start
            await hub.publish("quiet", "first")
            (first,) = await rows(ws, 1)
        assert first[:2] == [1, start.epoch]


async def test_a_quiet_topic_forgets_its_epoch_only_after_its_ttl(autojump_clock: trio.abc.Clock) -> None:
    async with trio_ws.open_hub(history_size=10, history_ttl=60) as hub:
        async with hub.open_channel("quiet") as channel:
            start = channel.subscription.position
        await trio.sleep(61)
        for n in range(3):  # each use sweeps the two longest idle
            await hub.publish(f"other {n}", "x")
        async with hub.open_channel("quiet", since=start) as channel:
            assert channel.subscription.recovered is False, "as Redis would: its meta expired"


# ---- 7: positions are checked where they are built ----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@given(offset=json_values | st.integers(-(2**70), 2**70), epoch=json_values)
def test_a_position_from_any_json_is_valid_or_a_value_error(offset: object, epoch: object) -> None:
    valid = (
        type(offset) is int
        and 0 <= offset <= MAX_OFFSET
        and isinstance(epoch, str)
        and len(epoch) <= MAX_EPOCH_LENGTH
    )
    try:
        position = StreamPosition(offset, epoch)  # type: ignore[arg-type]
    except ValueError:
        assert not valid
    else:
        assert valid and position.offset == offset


@pytest.mark.parametrize("offset", [1.0, -3, True, "1", math.inf, 2**63])
def test_the_positions_of_the_issue_are_refused(offset: object) -> None:
    with pytest.raises(ValueError, match="offset"):
        StreamPosition(offset, "e")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["in process", "redis"])
async def test_a_position_no_hub_gave_is_answered_alike_in_every_mode(
    redis_server: RedisServer, mode: str
) -> None:
    backend = trio_ws.RedisBackend(redis_server.url) if mode == "redis" else None
    async with trio_ws.open_hub(backend, history_size=10) as hub:
        async with hub.open_channel("t") as channel:
            for i in range(3):
                await hub.publish("t", str(i))
            epoch = (await receive(channel, 3))[-1].epoch
        for since in (
            StreamPosition(99, epoch),
            StreamPosition(2**63 - 1, epoch),
            StreamPosition(1, "another epoch"),
            StreamPosition(0, ""),
        ):
            async with hub.open_channel("t", since=since) as channel:
                assert channel.subscription.recovered is False, since
                assert channel.subscription.position == StreamPosition(3, epoch)
        with pytest.raises(TypeError):
            async with hub.open_channel("t", since=(1, epoch)):  # type: ignore[arg-type]
                pass


async def test_the_resume_example_closes_a_bad_position_with_1008() -> None:
    import importlib

    resume = importlib.import_module("examples.resume")
    async with (
        trio_ws.open_hub(history_size=10),
        trio_ws.open_server(resume.router, "127.0.0.1", 0) as server,
    ):
        for query in ("offset=-3&epoch=e", "offset=1.0&epoch=e", f"offset={2**64}&epoch=e"):
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/feed/t?{query}") as ws:
                with pytest.raises(trio_ws.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.code == 1008, query


# ---- 8: smaller ones -----------------------------------------------------------------------


async def test_first_may_be_async_so_a_presence_snapshot_can_go_first() -> None:
    async with trio_ws.open_hub() as hub:

        async def snapshot(sub: trio_ws.Subscription) -> str:
            return json.dumps(await hub.presence("room"))

        async def handler(ws: trio_ws.WebSocket) -> None:
            async with hub.subscribe(ws, "room", first=snapshot, info={"name": ws.path[1:]}):
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/ann") as ann:
                assert json.loads(await ann.recv()) == {}
                with trio.fail_after(5):
                    while not await hub.presence("room"):
                        await trio.sleep(0.01)
                async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/bob") as bob:
                    present = json.loads(await bob.recv())
                    assert list(present.values()) == [{"name": "ann"}]


async def test_the_presence_topic_keeps_no_history_in_redis(redis_server: RedisServer) -> None:
    async with trio_ws.open_hub(trio_ws.RedisBackend(redis_server.url), history_size=500) as hub:
        async with hub.open_channel(trio_ws.presence_topic("room")) as events:
            async with hub.open_channel("room", info={"name": "ann"}):
                (join,) = await receive(events, 1)
        assert json.loads(join.data)["type"] == "join"
        assert join.offset is None
        keys = redis_server.command("KEYS", "*presence*").decode()
        assert "history" not in keys and "meta" not in keys, keys
        with pytest.raises(ValueError, match="presence topic keeps none"):
            async with hub.open_channel(trio_ws.presence_topic("room"), since=StreamPosition(0, "e")):
                pass


@pytest.mark.parametrize("mode", ["in process", "redis"])
async def test_two_subscriptions_of_one_connection_are_two_members(
    redis_server: RedisServer, mode: str
) -> None:
    """Both had the connection's id: the first to leave took the other out of presence()."""
    backend = trio_ws.RedisBackend(redis_server.url) if mode == "redis" else None
    async with trio_ws.open_hub(backend) as hub:
        left = trio.Event()

        async def handler(ws: trio_ws.WebSocket) -> None:
            async with hub.subscribe(ws, "room", info={"tab": 1}) as first:
                async with hub.subscribe(ws, "room", info={"tab": 2}) as second:
                    assert first.member != second.member
                    assert first.member.startswith(str(ws.id))
                    assert await hub.presence("room") == {first.member: {"tab": 1}, second.member: {"tab": 2}}
                with trio.fail_after(5):
                    while len(await hub.presence("room")) != 1:
                        await trio.sleep(0.01)
                assert await hub.presence("room") == {first.member: {"tab": 1}}
                left.set()
                await ws.wait_closed()

        async with (
            trio_ws.open_server(handler, "127.0.0.1", 0) as server,
            trio_ws.connect(f"ws://127.0.0.1:{server.port}/"),
        ):
            with trio.fail_after(5):
                await left.wait()


@pytest.mark.parametrize("subscription_ends_first", [True, False])
async def test_a_hub_that_closes_takes_its_members_out_of_every_process_presence(
    redis_server: RedisServer, subscription_ends_first: bool
) -> None:
    """Before, a process that shut down cleanly left its members in Redis for presence_ttl
    (15 s): its leaves were cancelled with the hub's nursery."""
    async with (
        trio_ws.open_hub(trio_ws.RedisBackend(redis_server.url)) as other,
        other.open_channel(trio_ws.presence_topic("room")) as events,
    ):
        async with trio_ws.open_hub(trio_ws.RedisBackend(redis_server.url)) as closing:
            channel_block = closing.open_channel("room", info={"name": "ann"})
            channel = await channel_block.__aenter__()
            member = channel.subscription.member
            with trio.fail_after(5):
                while member not in await other.presence("room"):
                    await trio.sleep(0.01)
            if subscription_ends_first:
                await channel_block.__aexit__(None, None, None)
        started = trio.current_time()
        assert await other.presence("room") == {}
        assert trio.current_time() - started < 1
        with trio.fail_after(5):
            kinds = [json.loads((await events.receive()).data)["type"] for _ in range(2)]
        assert kinds == ["join", "leave"]
        if not subscription_ends_first:
            await channel_block.__aexit__(None, None, None)  # after its hub: nothing more to do
