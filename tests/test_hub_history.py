"""Positions, history and resume in one process: exactly the missed publications, in order,
then the live ones, with no gap and no duplicate at the switch, or `recovered=False`."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.client import connect_over
from trio_ws.history import Publication, StreamPosition, TopicHistory
from trio_ws.subscription import Phase


def as_json(pub: Publication) -> str:
    return json.dumps({"offset": pub.offset, "epoch": pub.epoch, "data": pub.data})


# ---- the history itself (sans-I/O) -------------------------------------------------------


def test_offsets_are_consecutive_and_since_returns_exactly_what_follows() -> None:
    history = TopicHistory("t", "e1", size=5, ttl=None)
    assert history.position == StreamPosition(0, "e1")
    pubs = [history.append(f"m{i}", now=0.0) for i in range(1, 8)]
    assert [p.offset for p in pubs] == list(range(1, 8))
    assert [p.data for p in history.since(StreamPosition(4, "e1"), 0.0) or []] == ["m5", "m6", "m7"]
    assert history.since(StreamPosition(2, "e1"), 0.0) == [p for p in pubs if p.offset and p.offset > 2]
    assert history.since(StreamPosition(1, "e1"), 0.0) is None, "m2 fell out of a history of 5"
    assert history.since(StreamPosition(7, "e1"), 0.0) == [], "nothing missed is a full recovery"


@pytest.mark.parametrize(
    "position",
    [StreamPosition(3, "another epoch"), StreamPosition(99, "e1")],
    ids=["other epoch", "an offset never given"],
)
def test_a_position_this_stream_cannot_vouch_for_is_never_recovered(position: StreamPosition) -> None:
    history = TopicHistory("t", "e1", size=100, ttl=None)
    for i in range(10):
        history.append(str(i), now=0.0)
    assert history.since(position, 0.0) is None


def test_history_is_bounded_by_age_and_by_count() -> None:
    history = TopicHistory("t", "e1", size=3, ttl=10.0)
    history.append("old", now=0.0)
    history.append("new", now=5.0)
    assert [p.data for p in history.since(StreamPosition(0, "e1"), now=9.0) or []] == ["old", "new"]
    assert history.since(StreamPosition(0, "e1"), now=10.0) is None, "'old' is 10 s old: gone"
    assert [p.data for p in history.since(StreamPosition(1, "e1"), now=10.0) or []] == ["new"]
    for i in range(1000):
        history.append(f"flood {i}", now=11.0)
    assert len(history.since(StreamPosition(history.position.offset - 3, "e1"), 11.0) or []) == 3
    assert history.since(StreamPosition(history.position.offset - 4, "e1"), 11.0) is None


@pytest.mark.parametrize("size, ttl", [(-1, None), (10, 0), (10, -5.0), (1.5, None)])
def test_bad_history_limits_are_refused(size: int, ttl: float | None) -> None:
    with pytest.raises(ValueError, match="history_"):
        TopicHistory("t", "e", size, ttl)


# ---- resume over real connections ----------------------------------------------------------


def since_in(path: str) -> StreamPosition | None:
    """The position in `?since=OFFSET:EPOCH`, if any."""
    query = parse_qs(urlsplit(path).query)
    if "since" not in query:
        return None
    offset, epoch = query["since"][0].split(":")
    return StreamPosition(int(offset), epoch)


@asynccontextmanager
async def history_server(hub: trio_ws.Hub) -> AsyncIterator[trio_ws.WebSocketServer]:
    """/?since=OFFSET:EPOCH subscribes to "room" from there; every publication arrives as
    JSON with its offset, after one {"recovered": ...} status message."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        async with hub.subscribe(
            ws, "room", since=since_in(ws.path), format=as_json, queue_size=10_000
        ) as sub:
            await ws.send(json.dumps({"recovered": sub.recovered, "position": hub.position("room").offset}))
            await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        yield server


class Reader:
    """A client of `history_server` that remembers the last position it saw."""

    def __init__(self, port: int, since: StreamPosition | None = None) -> None:
        self.port = port
        self.since = since  # where the first connection starts (default: live only)
        self.offsets: list[int] = []
        self.epoch = ""
        self.recovered: list[bool | None] = []
        self.status_due = False  # the connection's status message is still to come

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[trio_ws.WebSocket]:
        if self.offsets:
            self.since = StreamPosition(self.offsets[-1], self.epoch)
        query = f"?since={self.since.offset}:{self.since.epoch}" if self.since else ""
        async with trio_ws.connect(f"ws://127.0.0.1:{self.port}/{query}") as ws:
            self.status_due = True
            yield ws

    async def read(self, ws: trio_ws.WebSocket, until_offset: int) -> None:
        """Receive until the publication at `until_offset` (and the status) are in."""
        with trio.fail_after(10):
            while self.status_due or (self.offsets[-1] if self.offsets else 0) < until_offset:
                message = json.loads(await ws.recv())
                if "recovered" in message:
                    self.recovered.append(message["recovered"])
                    self.status_due = False
                else:
                    self.offsets.append(message["offset"])
                    self.epoch = message["epoch"]


async def test_a_client_that_drops_gets_exactly_the_100_it_missed_then_live_ones() -> None:
    async with trio_ws.open_hub(history_size=1000) as hub, history_server(hub) as server:
        reader = Reader(server.port)
        async with reader.connected() as ws:
            for i in range(5):
                await hub.publish("room", f"before {i}")
            await reader.read(ws, until_offset=5)
        for i in range(100):  # while it is away
            await hub.publish("room", f"missed {i}")
        async with reader.connected() as ws:
            for i in range(20):
                await hub.publish("room", f"live {i}")
            await reader.read(ws, until_offset=125)
    assert reader.recovered == [None, True]
    assert reader.offsets == list(range(1, 126)), "every offset once, in order, across the drop"


async def test_publishes_racing_with_resubscribes_leave_no_gap_and_no_duplicate() -> None:
    """A publisher never stops while the client drops and resumes 20 times, at random
    points of its stream: across all 21 connections every offset arrives exactly once."""
    async with trio_ws.open_hub(history_size=100_000) as hub, history_server(hub) as server:
        reader = Reader(server.port, since=hub.position("room"))
        published = 0

        async def publisher() -> None:
            nonlocal published
            while True:
                published += 1
                await hub.publish("room", f"p{published}")  # one checkpoint each
                if published % 7 == 0:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            for _ in range(21):
                async with reader.connected() as ws:
                    await reader.read(ws, until_offset=(reader.offsets or [0])[-1] + 50)
            nursery.cancel_scope.cancel()
    assert reader.recovered == [True] * 21
    assert reader.offsets == list(range(1, len(reader.offsets) + 1))
    assert len(reader.offsets) >= 21 * 50


async def test_a_replay_larger_than_the_queue_arrives_whole_before_the_live_ones() -> None:
    """A replay of 100 messages of 50 kB to a client that reads slowly, with a live queue
    of 4 (drop_oldest) and live publications every millisecond: the replay is not subject
    to the live queue's limit, so all 100 arrive, in order, before any live one; the live
    ones that follow are in order (some dropped by the policy, none duplicated)."""
    async with trio_ws.open_hub(history_size=1000) as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            since = StreamPosition(0, hub.position("room").epoch)
            async with hub.subscribe(ws, "room", since=since, format=as_json, queue_size=4):
                await ws.wait_closed()

        async with trio_ws.open_server(
            handler, "127.0.0.1", 0, compression=None, write_limit=2**16
        ) as server:
            for i in range(100):
                await hub.publish("room", f"{i:05}" + "." * 50_000)
            offsets: list[int] = []

            async def publisher() -> None:
                while True:
                    await hub.publish("room", "live")
                    await trio.sleep(0.001)

            async with (
                trio.open_nursery() as nursery,
                trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws,
            ):
                nursery.start_soon(publisher)
                with trio.fail_after(20):
                    while len(offsets) < 150:
                        offsets.append(json.loads(await ws.recv())["offset"])
                        if len(offsets) < 100:
                            await trio.sleep(0.002)  # slow while the replay goes on
                nursery.cancel_scope.cancel()
    assert offsets[:100] == list(range(1, 101))
    assert all(a < b for a, b in itertools.pairwise(offsets)), "live ones out of order"


async def test_a_resume_from_beyond_the_history_is_reported_and_replays_nothing() -> None:
    async with trio_ws.open_hub(history_size=10) as hub, history_server(hub) as server:
        reader = Reader(server.port)
        async with reader.connected() as ws:
            await hub.publish("room", "first")
            await reader.read(ws, until_offset=1)
        for i in range(11):  # one more than the history keeps
            await hub.publish("room", f"missed {i}")
        async with reader.connected() as ws:
            await hub.publish("room", "live")
            await reader.read(ws, until_offset=13)
    assert reader.recovered == [None, False]
    assert reader.offsets == [1, 13], "no partial recovery: the 10 still kept are not sent either"


async def test_a_position_from_another_hub_is_not_recovered() -> None:
    """A hub restarted (a new epoch) cannot vouch for positions of the old one, even where
    the offsets happen to line up."""
    async with trio_ws.open_hub(history_size=10) as old:
        await old.publish("room", "x")
        old_position = old.position("room")
    async with trio_ws.open_hub(history_size=10) as hub, history_server(hub) as server:
        await hub.publish("room", "y")
        await hub.publish("room", "z")
        reader = Reader(server.port, since=old_position)
        async with reader.connected() as ws:
            await hub.publish("room", "live")
            await reader.read(ws, until_offset=3)
    assert old_position.epoch != hub.position("room").epoch
    assert reader.recovered == [False]
    assert reader.offsets == [3]


async def test_since_is_refused_where_it_cannot_be_honoured() -> None:
    async with trio_ws.open_hub(history_size=10) as hub:
        server_ws: list[trio_ws.WebSocket] = []

        async def handler(ws: trio_ws.WebSocket) -> None:
            server_ws.append(ws)
            await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/"):
                with trio.fail_after(5):
                    while not server_ws:
                        await trio.sleep(0.01)
                with pytest.raises(ValueError, match="one topic"):
                    async with hub.subscribe(server_ws[0], "a", "b", since=hub.position("a")):
                        pass
                with pytest.raises(TypeError, match="StreamPosition"):
                    async with hub.subscribe(server_ws[0], "a", since=(0, "e")):  # type: ignore[arg-type]
                        pass
                assert not hub.topics, "a refused subscription leaves nothing behind"


async def test_without_history_there_are_no_positions_and_since_is_refused() -> None:
    seen: list[Publication] = []

    def remember(pub: Publication) -> str:
        seen.append(pub)
        return str(pub.data)

    async with trio_ws.open_hub() as hub:  # history_size=0, the default
        done = trio.Event()

        async def handler(ws: trio_ws.WebSocket) -> None:
            with pytest.raises(ValueError, match="history_size > 0"):
                async with hub.subscribe(ws, "room", since=StreamPosition(0, "e")):
                    pass
            async with hub.subscribe(ws, "room", format=remember):
                done.set()
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
            async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await done.wait()
                await hub.publish("room", "plain")
                with trio.fail_after(5):
                    assert await ws.recv() == "plain"
        with pytest.raises(ValueError, match="history_size > 0"):
            hub.position("room")
    assert [(p.offset, p.epoch) for p in seen] == [(None, "")]


async def test_streams_of_topics_no_longer_published_are_dropped() -> None:
    """History for 20,000 distinct topics, each published once and never again: once the
    history's age limit has passed, publishing elsewhere drops their streams (two per
    publish), so memory returns to what the live topics need."""
    import tracemalloc

    async with trio_ws.open_hub(history_size=10, history_ttl=0.2) as hub:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(20_000):
                await hub.publish(f"user-{i}", f"{i:06}" * 20)
            grown = tracemalloc.get_traced_memory()[0] - base
            await trio.sleep(0.3)  # all 20,000 histories are now too old
            for i in range(10_000):
                await hub.publish("ticker", str(i))
            after = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert hub.position("ticker").offset == 10_000
        before = hub.position("user-1")  # its stream went: a new epoch, from offset 0
        assert before.offset == 0
    print(f"20,000 topics with history: {grown / 2**20:.1f} MiB; after the sweep: {after / 2**20:.2f} MiB")
    assert grown > 2**20, "the streams must really have been held first"
    assert after < grown / 10, f"{after} bytes still held for topics whose history expired"


# ---- against a model ------------------------------------------------------------------------

Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 8)),
        st.tuples(st.just("drop"), st.just(0)),
        st.tuples(st.just("resume"), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(ops=ops, history_size=st.integers(1, 6))
def test_resume_matches_the_model(ops: list[Op], history_size: int) -> None:
    """Random publishes, drops and resumes against a model: a resume recovers iff no more
    than `history_size` publications were missed; recovered or not, what the client saw is
    its earlier offsets, then (if recovered) every missed one, then every live one."""

    async def run() -> None:
        async with trio_ws.open_hub(history_size=history_size) as hub, history_server(hub) as server:
            reader = Reader(server.port)
            expected: list[int] = []
            expected_recovered: list[bool | None] = [None]
            latest = 0
            pending = [*ops, ("resume", 0)]
            while True:
                async with reader.connected() as ws:  # until the next drop
                    if len(expected_recovered) > 1:  # a resume: one live publication after it
                        latest += 1
                        await hub.publish("room", str(latest))
                        expected.append(latest)
                    await reader.read(ws, until_offset=latest)
                    while pending and pending[0][0] != "drop":
                        op, count = pending.pop(0)
                        if op == "publish":
                            for _ in range(count):
                                latest += 1
                                await hub.publish("room", str(latest))
                                expected.append(latest)
                            await reader.read(ws, until_offset=latest)
                if not pending:
                    break
                pending.pop(0)  # the drop
                seen_at_drop = reader.offsets[-1] if reader.offsets else None
                while pending[0][0] != "resume":  # away: publishes go on
                    op, count = pending.pop(0)
                    for _ in range(count if op == "publish" else 0):
                        latest += 1
                        await hub.publish("room", str(latest))
                pending.pop(0)  # the resume
                if seen_at_drop is None:  # saw nothing yet: a fresh subscription, live only
                    expected_recovered.append(None)
                else:
                    recovered = latest - seen_at_drop <= history_size
                    expected_recovered.append(recovered)
                    if recovered:
                        expected.extend(range(seen_at_drop + 1, latest + 1))
            assert reader.recovered == expected_recovered
            assert reader.offsets == expected

    trio.run(run)


# ---- overflow, repaired by resuming, against a model ---------------------------------------

BIG = "x" * 65536  # large enough that a burst fills the socket buffers and the queue of 2


@asynccontextmanager
async def overflowing_server(
    hub: trio_ws.Hub, subscriptions: list[trio_ws.Subscription] | None = None
) -> AsyncIterator[trio_ws.WebSocketServer]:
    """Like `history_server`, but each subscriber's queue holds 2 (drop_oldest) and
    compression is off, so that a client that stops reading loses publications."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        async with hub.subscribe(ws, "room", since=since_in(ws.path), format=as_json, queue_size=2) as sub:
            if subscriptions is not None:
                subscriptions.append(sub)
            await ws.send(json.dumps({"recovered": sub.recovered}))
            await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0, compression=None) as server:
        yield server


overflow_ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 5)),
        st.tuples(st.just("overflow"), st.integers(40, 60)),
        st.tuples(st.just("drop"), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None)
@given(ops=overflow_ops, history_size=st.sampled_from([10, 200]))
def test_a_gap_from_overflow_is_seen_and_repaired_by_resuming_from_before_it(
    ops: list[Op], history_size: int
) -> None:
    """Random publishes, bursts the client does not read (its queue of 2 overflows), and
    drops with publications made while away. The client sees offsets that only increase;
    where one is missing (an overflow dropped it), it resumes from the last offset before
    the gap, as after a drop. The model: a resume recovers iff every publication after
    that offset is still in the history; if every resume recovered, the client has seen
    every offset up to the last, exactly once and in order. A burst that comes while the
    subscription is still replaying waits in its held buffer (2, the oldest dropped) and
    is then read from the history: no gap if the history still has it."""

    async def run() -> None:
        subscriptions: list[trio_ws.Subscription] = []
        async with (
            trio_ws.open_hub(history_size=history_size) as hub,
            overflowing_server(hub, subscriptions) as server,
            AsyncExitStack() as stack,
        ):
            latest = 0
            whole = 0  # the client saw every offset up to here, once, in order
            resumes: list[tuple[bool | None, bool]] = []  # (recovered, what the model says)

            async def publish(count: int, data: str = "") -> None:
                nonlocal latest
                for _ in range(count):
                    latest += 1
                    await hub.publish("room", data or str(latest))

            async def connect(resume: bool) -> trio_ws.WebSocket:
                """Connect (from `whole` if resuming) and read the status message."""
                nonlocal whole
                query = f"?since={whole}:{hub.position('room').epoch}" if resume else ""
                sock = trio.socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**16)  # a burst cannot fit
                await sock.connect(("127.0.0.1", server.port))
                uri = f"ws://127.0.0.1:{server.port}/{query}"
                stream = trio.SocketStream(sock)
                ws = await stack.enter_async_context(connect_over(stream, uri, compression=None))
                status = json.loads(await ws.recv())
                if resume:
                    resumes.append((status["recovered"], latest - whole <= history_size))
                if not status["recovered"]:  # live from here: what came before is lost
                    whole = latest
                return ws

            await publish(1)
            ws = await connect(resume=False)
            gap = False
            bursts: list[bool] = []  # for each burst, whether the client saw a gap after it
            for op, count in [*ops, ("publish", 1)]:
                if op == "drop" or gap:
                    await ws.close()
                    await publish(count if op == "drop" else 0)  # while away
                    ws = await connect(resume=True)
                if op == "overflow":
                    live = subscriptions[-1].phase is Phase.LIVE
                    await publish(count, BIG)  # the client reads none of it meanwhile
                elif op == "publish":
                    await publish(count)
                received: list[int] = []
                with trio.fail_after(20):
                    while latest > (received[-1] if received else whole):
                        received.append(json.loads(await ws.recv())["offset"])
                assert received == sorted(set(received)), "an offset twice, or out of order"
                assert not received or received[0] > whole, "an offset seen before"
                gap = False
                for offset in received:
                    if offset != whole + 1:
                        gap = True  # dropped by the overflow: resume from `whole`
                        break
                    whole = offset
                if op == "overflow":
                    bursts.append(gap or not live)
            assert [recovered for recovered, _ in resumes] == [expected for _, expected in resumes]
            if all(recovered for recovered, _ in resumes):
                assert whole == latest, "every resume recovered, yet an offset is missing"
            assert all(bursts), "a burst of 40 or more to a live subscriber must overflow its queue of 2"

    trio.run(run)


# ---- limits per topic ----------------------------------------------------------------------


def ticker_limits(topic: str) -> trio_ws.HistoryLimits | None:
    return trio_ws.HistoryLimits(3, 60.0) if topic.startswith("ticker") else None


@asynccontextmanager
async def topics_server(hub: trio_ws.Hub) -> AsyncIterator[trio_ws.WebSocketServer]:
    """/TOPIC?since=OFFSET:EPOCH: a {"recovered": ...} status, then the topic's data."""

    async def handler(ws: trio_ws.WebSocket) -> None:
        topic = urlsplit(ws.path).path.strip("/")
        async with hub.subscribe(ws, topic, since=since_in(ws.path)) as sub:
            await ws.send(json.dumps({"recovered": sub.recovered}))
            await ws.wait_closed()

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        yield server


async def resumed(port: int, topic: str, since: StreamPosition, missed: int) -> tuple[bool, list[str]]:
    """Resume `topic` from `since`: whether it recovered, and what was replayed."""
    async with trio_ws.connect(f"ws://127.0.0.1:{port}/{topic}?since={since.offset}:{since.epoch}") as ws:
        recovered = json.loads(await ws.recv())["recovered"]
        replayed = []
        with trio.move_on_after(0.3 if not recovered else 5):
            while len(replayed) < missed:
                replayed.append(str(await ws.recv()))
    return recovered, replayed


async def test_a_topic_can_keep_a_history_of_its_own() -> None:
    """history_limits gives the tickers 3 publications and leaves the rooms the hub's 100:
    after 5 missed, a room recovers all 5, a ticker reports it cannot."""
    async with (
        trio_ws.open_hub(history_size=100, history_limits=ticker_limits) as hub,
        topics_server(hub) as server,
    ):
        assert hub.limits_of("ticker:eur") == trio_ws.HistoryLimits(3, 60.0)
        assert hub.limits_of("room") == trio_ws.HistoryLimits(100, 300.0)
        for topic in ("ticker:eur", "room"):
            await hub.publish(topic, "seen")  # a stream that keeps something is kept
        starts = {topic: hub.position(topic) for topic in ("ticker:eur", "room")}
        for topic in starts:
            for i in range(5):
                await hub.publish(topic, f"{topic} {i}")
        expected = [f"room {i}" for i in range(5)]
        assert await resumed(server.port, "room", starts["room"], 5) == (True, expected)
        assert await resumed(server.port, "ticker:eur", starts["ticker:eur"], 5) == (False, [])


def test_history_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="history_size"):
        trio_ws.HistoryLimits(-1, 10.0)
    with pytest.raises(ValueError, match="history_ttl"):
        trio_ws.HistoryLimits(10, 0)

    async def main() -> None:
        async with trio_ws.open_hub(history_size=10, history_limits=lambda topic: (3, 60)) as hub:  # type: ignore[arg-type,return-value]
            with pytest.raises(TypeError, match="HistoryLimits"):
                await hub.publish("room", "x")

    trio.run(main)
