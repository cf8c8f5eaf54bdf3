"""How a hub delivers, chosen once by `open_hub`: one small class per mode.

| mode                  | positions and history     | other processes             |
| --------------------- | ------------------------- | --------------------------- |
| `LocalDelivery`       | none                      | none                        |
| `LocalHistory`        | in this process           | none                        |
| `Relay`               | none                      | a backend carries publishes |
| `RelayHistory`        | in the backend (Redis)    | the backend, in offset order |

Each has `publish(topic, frames)` and `start(subscription, since, new_topics)`, and says
which subscriptions get a position (`positioned`). A presence topic keeps no history in
any mode: its joins and leaves are published as in the mode without history. The hub
hands each mode a `LocalFanout`: its subscribers by topic, which the mode delivers to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from .history import HistoryLimits, HistoryStore, Publication, StreamPosition
from .hub_backend import Backend, HistoryBackend
from .prepared import PreparedMessage
from .subscription import Fanout, Subscription
from .topics import is_presence_topic

logger = logging.getLogger("trio_ws.hub")

__all__ = [
    "Delivery",
    "LocalFanout",
    "LocalDelivery",
    "LocalHistory",
    "Relay",
    "RelayHistory",
    "choose_delivery",
]


class LocalFanout(Protocol):
    """The hub's subscribers, as a delivery mode sees them."""

    def deliver(self, topic: str, fanout: Fanout) -> int:
        """Offer `fanout` to the local subscribers of `topic`; how many took it."""

    def subscriber_count(self, topic: str) -> int:
        """How many local subscriptions `topic` has."""


class Delivery(Protocol):
    """One way of delivering publications (see the module docstring)."""

    def positioned(self, topics: frozenset[str]) -> bool:
        """Whether a subscription to `topics` gets a position (and may resume)."""

    async def publish(self, topic: str, frames: PreparedMessage) -> int:
        """Publish; how many local subscribers it reached (or will reach)."""

    async def start(
        self, subscription: Subscription, since: StreamPosition | None, new_topics: list[str]
    ) -> None:
        """Start a registered subscription: where it starts, what it replays;
        `new_topics` had no local subscriber before it."""

    async def forget(self, topic: str) -> None:
        """No local subscriber wants `topic` any more."""

    def position(self, topic: str) -> StreamPosition:
        """The position of `topic`'s latest publication, where this process knows it."""

    @property
    def history_topics(self) -> int:
        """Topics whose history this process keeps in memory (0 where Redis keeps it)."""

    async def flush(self) -> None:
        """Return once what was published has left this process (or cannot)."""


def _unpositioned(topic: str, frames: PreparedMessage) -> Fanout:
    return Fanout(Publication(topic, frames.message, None, ""), frames)


class LocalDelivery:
    """One process, no history."""

    def __init__(self, local: LocalFanout) -> None:
        self.local = local

    def positioned(self, topics: frozenset[str]) -> bool:
        return False

    @property
    def history_topics(self) -> int:
        return 0

    async def publish(self, topic: str, frames: PreparedMessage) -> int:
        reached = self.local.deliver(topic, _unpositioned(topic, frames))
        await trio.lowlevel.checkpoint()
        return reached

    async def start(
        self, subscription: Subscription, since: StreamPosition | None, new_topics: list[str]
    ) -> None:
        subscription.start(None)
        await trio.lowlevel.checkpoint()

    async def forget(self, topic: str) -> None:
        await trio.lowlevel.checkpoint()

    def position(self, topic: str) -> StreamPosition:
        raise ValueError("position() needs history: open the hub with history_size > 0")

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


class LocalHistory(LocalDelivery):
    """One process, with each topic's positions and history kept here (`HistoryStore`);
    a replay reads that history (it is its `ReplaySource`)."""

    def __init__(self, local: LocalFanout, limits_of: Callable[[str], HistoryLimits]) -> None:
        super().__init__(local)
        self.store = HistoryStore(limits_of, lambda topic: local.subscriber_count(topic) > 0)

    @property
    def history_topics(self) -> int:
        return len(self.store)

    def position(self, topic: str) -> StreamPosition:
        if is_presence_topic(topic):
            raise ValueError(f"a presence topic keeps no history: {topic!r}")
        return self.store.use(topic, trio.current_time()).position

    async def forget(self, topic: str) -> None:
        self.store.forget_if_idle(topic, trio.current_time())
        await trio.lowlevel.checkpoint()

    def positioned(self, topics: frozenset[str]) -> bool:
        return len(topics) == 1 and not is_presence_topic(next(iter(topics)))

    async def publish(self, topic: str, frames: PreparedMessage) -> int:
        if is_presence_topic(topic):
            return await super().publish(topic, frames)
        now = trio.current_time()
        publication = self.store.use(topic, now).append(frames.message, now, len(frames.payload))
        reached = self.local.deliver(topic, Fanout(publication, frames))
        await trio.lowlevel.checkpoint()
        return reached

    async def start(
        self, subscription: Subscription, since: StreamPosition | None, new_topics: list[str]
    ) -> None:
        if not self.positioned(subscription.topics):
            await super().start(subscription, since, new_topics)
            return
        # No await from the registration to the start: no publication can come between.
        now = trio.current_time()
        stream = self.store.use(next(iter(subscription.topics)), now)
        recovered, replay = None, None
        if since is not None:
            if since.epoch == stream.epoch:
                replay = stream.read(since.offset, *subscription.replay_batch_limits(), now)
            recovered = replay is not None
        subscription.start(stream.position, since=since, recovered=recovered, source=self, replay=replay)
        await trio.lowlevel.checkpoint()

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int
    ) -> list[Publication] | None:
        """From this process's history (see `ReplaySource`)."""
        await trio.lowlevel.checkpoint()
        stream = self.store.get(topic)
        if stream is None or stream.epoch != after.epoch:
            return None
        return stream.read(after.offset, max_count, max_bytes, trio.current_time())


class Relay:
    """Several processes through a backend, no history: a publish reaches this process's
    subscribers at once and the others' through the backend."""

    def __init__(self, local: LocalFanout, backend: Backend) -> None:
        self.local = local
        self.backend = backend

    def positioned(self, topics: frozenset[str]) -> bool:
        return False

    @property
    def history_topics(self) -> int:
        return 0

    async def publish(self, topic: str, frames: PreparedMessage) -> int:
        reached = self.local.deliver(topic, _unpositioned(topic, frames))
        await self.backend.publish(topic, frames.message)
        return reached

    async def start(
        self, subscription: Subscription, since: StreamPosition | None, new_topics: list[str]
    ) -> None:
        for topic in new_topics:
            await self.backend.subscribe(topic)
        subscription.start(None)
        await trio.lowlevel.checkpoint()

    async def forget(self, topic: str) -> None:
        await self.backend.unsubscribe(topic)

    def position(self, topic: str) -> StreamPosition:
        raise ValueError("position() is for a hub in one process; with a backend, see subscription.position")

    async def flush(self) -> None:
        await self.backend.flush()


class RelayHistory(Relay):
    """Several processes, with positions and history in the backend: every publication,
    this process's too, reaches the subscribers here through the backend, in offset order.
    A replay reads the backend's history (it is its `ReplaySource`)."""

    def __init__(
        self, local: LocalFanout, backend: HistoryBackend, limits_of: Callable[[str], HistoryLimits]
    ) -> None:
        super().__init__(local, backend)
        self.history = backend
        self.limits_of = limits_of

    def positioned(self, topics: frozenset[str]) -> bool:
        return len(topics) == 1 and not is_presence_topic(next(iter(topics)))

    async def publish(self, topic: str, frames: PreparedMessage) -> int:
        if is_presence_topic(topic):
            return await super().publish(topic, frames)
        limits = self.limits_of(topic)
        appended = await self.history.append(topic, frames.message, limits.size, limits.ttl)
        return self.local.subscriber_count(topic) if appended is not None else 0

    async def start(
        self, subscription: Subscription, since: StreamPosition | None, new_topics: list[str]
    ) -> None:
        for topic in new_topics:
            await self.backend.subscribe(topic)
        if not self.positioned(subscription.topics):
            subscription.start(None)
            return
        # Subscribed first, then the position read: what is published after it comes live
        # (held until now), what came before is at or before it (dropped as stale).
        # With `since`, the position and the first batch of the replay come in one read.
        topic = next(iter(subscription.topics))
        ttl = self.limits_of(topic).ttl
        replay = None
        try:
            if since is None:
                position, _ = await self.history.position(topic, None, ttl)
            else:
                position, replay = await self.history.read(
                    topic, since, *subscription.replay_batch_limits(), ttl
                )
        except ConnectionError as exc:
            logger.warning("cannot read the position of topic %r (%s): live publications only", topic, exc)
            subscription.start(None, recovered=None if since is None else False)
            return
        recovered = None if since is None else replay is not None
        subscription.start(position, since=since, recovered=recovered, source=self, replay=replay)

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int
    ) -> list[Publication] | None:
        """From the backend's history (see `ReplaySource`); a backend that cannot answer
        counts as a history that lost the rest (the subscriber goes live, with a gap)."""
        try:
            _, batch = await self.history.read(topic, after, max_count, max_bytes, self.limits_of(topic).ttl)
            return batch
        except ConnectionError as exc:
            logger.warning("cannot read the history of topic %r (%s): the replay stops", topic, exc)
            return None


def choose_delivery(
    local: LocalFanout,
    backend: Backend | None,
    history: bool,
    limits_of: Callable[[str], HistoryLimits],
) -> Delivery:
    """The mode for a hub with `backend` (or none), with or without `history`."""
    if backend is None:
        return LocalHistory(local, limits_of) if history else LocalDelivery(local)
    if not history:
        return Relay(local, backend)
    if not isinstance(backend, HistoryBackend):
        raise ValueError(f"history_size needs a backend that keeps history, which {backend!r} does not")
    return RelayHistory(local, backend, limits_of)
