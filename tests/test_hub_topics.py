"""Any topic a client can name, through the hub in every mode: in one process, through Redis
and through a real 3-primary Redis Cluster, with and without history. Every publication
reaches exactly its topic's subscribers, or the one call is refused with ValueError; the
hub and its backend go on either way. The shares of examples reaching each kind of topic
are printed and checked, so a strategy that stops reaching one fails the test; every batch
holds one topic of each kind besides its random ones."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.topics import MAX_TOPIC_BYTES, PRESENCE_SUFFIX

from .conftest import RedisCluster, RedisServer
from .strategies import examples

pytestmark = pytest.mark.timeout(300)

#: Characters that broke or could break something: hash tags, our escape, RESP and log lines.
TRICKY = "{}%#:\x00\n\r $*-é\u2028\U0001f600"

topic_names = st.one_of(
    st.text(alphabet=TRICKY, min_size=1, max_size=12),  # braces, escapes, control characters
    st.text(max_size=30),  # anything, lone surrogates included
    st.text(alphabet=TRICKY, max_size=6).map(lambda t: t + PRESENCE_SUFFIX),
    st.sampled_from(["", "}", "{", "{}", "%7D", "%", "x" * MAX_TOPIC_BYTES, "x" * (MAX_TOPIC_BYTES + 1)]),
    st.integers(MAX_TOPIC_BYTES - 2, MAX_TOPIC_BYTES + 2).map(lambda n: "é" * (n // 2)),
)

#: One topic of each kind, drawn afresh: every batch reaches every kind, and its other
#: topics (`topic_names`) mix them at random.
one_of_each_kind = st.tuples(
    st.text(max_size=5).map(lambda t: t + "\udc80"),  # what json.loads makes of "\\udc80"
    st.just(""),
    st.integers(MAX_TOPIC_BYTES + 1, MAX_TOPIC_BYTES + 64).map(lambda n: "x" * n),
    st.text(alphabet=TRICKY, max_size=6).map(lambda t: t + PRESENCE_SUFFIX),
    st.text(alphabet="{}%", min_size=1, max_size=6),
    st.text(alphabet="\x00\n\r", min_size=1, max_size=4),
    st.text(alphabet="abc é", min_size=1, max_size=8),
)


def batches_of(min_size: int, max_size: int) -> st.SearchStrategy[list[str]]:
    return st.tuples(st.lists(topic_names, min_size=min_size, max_size=max_size), one_of_each_kind).map(
        lambda drawn: [*drawn[0], *drawn[1]]
    )


def kind_of(topic: str) -> str:
    try:
        size = len(topic.encode())
    except UnicodeEncodeError:
        return "refused: lone surrogate"
    if not topic:
        return "refused: empty"
    if topic.endswith(PRESENCE_SUFFIX) and len(topic) > len(PRESENCE_SUFFIX):
        return "presence topic"
    if size > MAX_TOPIC_BYTES:
        return "refused: too long"
    if "{" in topic or "}" in topic or "%" in topic:
        return "braces or escapes"
    if any(c in topic for c in "\x00\n\r"):
        return "control characters"
    return "other"


async def check_topics(hub: trio_ws.Hub, topics: list[str], seen: Counter[str]) -> None:
    """Subscribe a channel to each distinct valid topic at once, publish to each, and check
    that every channel got exactly its own publication (no two topics alike in Redis)."""
    valid: list[str] = []
    for topic in dict.fromkeys(topics):
        kind = kind_of(topic)
        seen[kind] += 1
        if kind.startswith("refused"):
            with pytest.raises(ValueError, match="topic"):
                await hub.publish(topic, "m")
            with pytest.raises(ValueError, match="topic"):
                async with hub.open_channel(topic):
                    pass
        else:
            valid.append(topic)
    async with trio.open_nursery() as nursery:
        channels: dict[str, trio_ws.PublicationChannel] = {}

        async def hold(topic: str, *, task_status: trio.TaskStatus[None]) -> None:
            async with hub.open_channel(topic, queue_size=len(valid) + 1) as channel:
                channels[topic] = channel
                task_status.started()
                await trio.sleep_forever()

        for topic in valid:
            await nursery.start(hold, topic)
        for n, topic in enumerate(valid):
            await hub.publish(topic, f"{n}")
        with trio.fail_after(10):
            for n, topic in enumerate(valid):
                publication = await channels[topic].receive()
                assert (publication.topic, publication.data) == (topic, f"{n}")
        for channel in channels.values():
            with pytest.raises(trio.WouldBlock):  # nothing of another topic's
                channel.receive_nowait()
        nursery.cancel_scope.cancel()


def check_shares(seen: Counter[str], mode: str) -> None:
    total = sum(seen.values())
    print(
        f"{mode}: {total} topics; " + ", ".join(f"{kind} {n / total:.0%}" for kind, n in sorted(seen.items()))
    )
    for kind in ("refused: lone surrogate", "refused: empty", "refused: too long", "presence topic",
                 "braces or escapes", "control characters", "other"):  # fmt: skip
        assert seen[kind] > 0, f"no example reached {kind!r}"


@settings(
    max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(batches_of(0, 25), min_size=1, max_size=4))
def test_any_topic_in_one_process(batches: list[list[str]]) -> None:
    for history_size in (0, 5):

        async def run(history_size: int) -> None:
            async with trio_ws.open_hub(history_size=history_size) as hub:
                for batch in batches:
                    await check_topics(hub, batch, SEEN["in process"])
                assert not hub.topics

        trio.run(run, history_size)


@settings(
    max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches_of(0, 30))
def test_any_topic_through_redis(redis_server: RedisServer, batch: list[str]) -> None:
    for history_size in (0, 5):

        async def run(history_size: int) -> None:
            backend = trio_ws.RedisBackend(redis_server.url)
            async with trio_ws.open_hub(backend, history_size=history_size) as hub:
                await check_topics(hub, batch, SEEN["redis"])
            assert backend.rejected == 0 and backend.undelivered == 0

        trio.run(run, history_size)


SEEN: dict[str, Counter[str]] = {"in process": Counter(), "redis": Counter(), "cluster": Counter()}


def test_any_topic_through_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(batch=batches_of(0, 30))
    def through_cluster(batch: list[str]) -> None:
        async def run() -> None:
            backend = trio_ws.RedisClusterBackend(redis_cluster.url)
            async with trio_ws.open_hub(backend, history_size=5) as hub:
                await check_topics(hub, batch, SEEN["cluster"])
            assert backend.rejected == 0 and backend.undelivered == 0

        trio.run(run)

    through_cluster()
    check_shares(SEEN["cluster"], "cluster")


def test_the_shares_of_topic_kinds_reached() -> None:
    """Runs after the two above (file order): each kind was reached in both modes."""
    for mode in ("in process", "redis"):
        if not SEEN[mode]:
            pytest.skip(f"run with the {mode} property test")
        check_shares(SEEN[mode], mode)
