"""`Hub`: publish/subscribe by topic within a process, optionally across processes.

Each subscription owns a bounded queue (`SubscriberQueue`: by count and by bytes) and a
forwarder task in the hub's nursery. `publish` frames the message once (per compression
group) and hands it to every subscriber without waiting: straight to a connection that has
room, else to its queue, where an overflow drops the oldest, keeps only the newest per
topic, or disconnects the slow client (close code 1013), as the subscription's policy
says. A backend (`RedisBackend`) carries publishes to the hubs of other processes.

With `history_size`, in one process, every publication gets a position (offset and epoch,
see `history`) and the topic keeps a bounded history of them: `subscribe(ws, topic,
since=position)` replays what the subscriber missed, then the live publications, with no
gap and no duplicate between them (the replay is taken and the subscription registered
with no await in between).
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

import trio

from .connection import WebSocket
from .exceptions import CloseCode, ConnectionClosed
from .history import (
    HistoryLimits,
    Publication,
    StreamPosition,
    TopicHistory,
    check_history_limits,
    new_epoch,
)
from .prepared import PreparedMessage
from .protocol import Data
from .subscriber_queue import DEFAULT_QUEUE_BYTES, OverflowPolicy, SubscriberQueue
from .tasks import open_nursery_unwrapped

__all__ = [
    "Hub",
    "Subscription",
    "Backend",
    "open_hub",
    "current_hub",
    "OverflowPolicy",
    "Formatter",
    "presence_topic",
]

_POLICIES = ("drop_oldest", "disconnect", "latest")
_current_hub: contextvars.ContextVar[Hub] = contextvars.ContextVar("trio_ws_hub")
logger = logging.getLogger("trio_ws.hub")

#: What a subscription sends for a publication (default: its data as it was published).
Formatter = Callable[[Publication], Data]


class Backend(Protocol):
    """What a hub needs to reach other processes (see `RedisBackend`)."""

    async def run(self, hub: Hub, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Connect (raising a clear error if that fails), call `task_status.started()`,
        then deliver remote publishes with `hub.deliver_locally` until cancelled."""

    async def subscribe(self, topic: str) -> None:
        """Receive publishes to `topic` from now on (returns once that is in force)."""

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving publishes to `topic`."""

    async def publish(self, topic: str, message: Data) -> None:
        """Send a publish to the other processes; never raises for a lost connection."""


@runtime_checkable
class HistoryBackend(Backend, Protocol):
    """A backend that keeps each topic's history and positions for every process (Redis
    Streams in `RedisBackend`); a hub with `history_size` needs one."""

    async def append(self, topic: str, message: Data, size: int, ttl: float | None) -> Publication | None:
        """Give `message` the topic's next position, keep it in the history and publish it
        to every process, this one included (`hub.deliver_locally` with the publication);
        None if that could not be done (counted by the backend, never raised)."""

    async def position(
        self, topic: str, since: StreamPosition | None, ttl: float | None
    ) -> tuple[StreamPosition, list[Publication] | None]:
        """The topic's position now, and every publication after `since` if the history has
        them all (else None); raises ConnectionError if the backend cannot tell."""


@runtime_checkable
class PresenceBackend(Backend, Protocol):
    """A backend that knows who is subscribed where, across processes (`RedisBackend`)."""

    async def join(self, topic: str, member: str, info: str) -> None:
        """Add `member`, with `info` (JSON), to `topic`'s presence until `leave`."""

    async def leave(self, topic: str, member: str) -> None:
        """Remove `member` from `topic`'s presence."""

    async def members(self, topic: str) -> dict[str, str]:
        """Every process's members of `topic`, to their info (JSON)."""


def presence_topic(topic: str) -> str:
    """The topic on which joins and leaves of `topic` are published, as JSON:
    {"type": "join" | "leave", "id", "info"}; subscribe to it to watch them."""
    return f"{topic}#presence"


class Subscription:
    """One connection's subscription to some topics, with its queue and policy."""

    def __init__(
        self,
        ws: WebSocket,
        topics: frozenset[str],
        queue: SubscriberQueue,
        format: Formatter | None = None,
        info: object = None,
    ) -> None:
        self.ws = ws
        self.topics = topics
        #: With `info`, the subscriber is in `hub.presence()` of its topics under this id.
        self.member = str(ws.id)
        self.info = info
        self._joined: set[str] = set()  # the topics whose presence it is in
        #: The publications waiting for a backed-up client, with their limits and policy.
        self.queue = queue
        self.format = format
        #: For a subscription made with `since`: whether every publication after it was
        #: still in the history (and is replayed first); None for one made without.
        self.recovered: bool | None = None
        #: With history, for a subscription to one topic: the position it starts after
        #: (what is replayed and every live publication come after it); else None.
        self.position: StreamPosition | None = None
        self._replay: deque[PreparedMessage] = deque()  # sent before any live publication
        # Through a backend, live publications wait here until the position is known...
        self._pending: deque[tuple[str, Publication | None, PreparedMessage]] | None = None
        # ...and those up to it are dropped (they are in the replay, or before the start).
        self._after: StreamPosition | None = None
        self._forwarder = trio.CancelScope()
        self._forwarding = False  # the forwarder holds a message it has not queued yet

    @property
    def queue_size(self) -> int:
        """At most this many publications wait for the client."""
        return self.queue.size

    @property
    def on_overflow(self) -> OverflowPolicy:
        """What a full queue does."""
        return self.queue.policy

    @property
    def dropped(self) -> int:
        """Publications dropped for this subscriber by its overflow policy."""
        return self.queue.dropped

    def _hold(self, topic: str, publication: Publication | None, frames: PreparedMessage, limit: int) -> None:
        """Keep a live publication until the start is known; past `limit`, the oldest goes."""
        assert self._pending is not None
        self._pending.append((topic, publication, frames))
        if len(self._pending) > limit:
            self._pending.popleft()
            self.queue.dropped += 1

    def _is_stale(self, publication: Publication | None) -> bool:
        """Whether a live publication is at or before `_after` (once one is past it, all are)."""
        after = self._after
        if after is None or publication is None or publication.offset is None:
            return False
        if publication.epoch == after.epoch and publication.offset <= after.offset:
            return True
        self._after = None
        return False

    def _offer(self, topic: str, frames: PreparedMessage) -> bool:
        """Queue without waiting; False if the queue is full under "disconnect".

        While nothing older is waiting and the connection has room, the message goes
        straight to the connection: the forwarder task only runs for a backed-up client.
        """
        if not self._forwarding and not self.queue and not self._replay and self.ws.try_send_nowait(frames):
            return True
        return self.queue.put(topic, frames)

    async def _forward(self) -> None:
        """Move queued messages to the connection, at the pace the client reads."""
        with self._forwarder:
            while True:
                frames = self._replay.popleft() if self._replay else await self.queue.get()
                if frames is None:
                    return
                self._forwarding = True  # a live publication must not overtake this one
                try:
                    await self.ws.send(frames)
                except ConnectionClosed:
                    return
                finally:
                    self._forwarding = False

    def __repr__(self) -> str:
        return f"<Subscription {self.ws!r} {sorted(self.topics)}>"


class Hub:
    """Topics to subscribers. Made by `open_hub`; not built directly."""

    def __init__(
        self,
        nursery: trio.Nursery,
        backend: Backend | None,
        queue_size: int,
        on_overflow: OverflowPolicy,
        history_size: int = 0,
        history_ttl: float | None = 300.0,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        history_limits: Callable[[str], HistoryLimits | None] | None = None,
    ) -> None:
        _check_options(queue_size, on_overflow, queue_bytes)
        check_history_limits(history_size, history_ttl)
        if history_size and backend is not None and not isinstance(backend, HistoryBackend):
            raise ValueError(f"history_size needs a backend that keeps history, which {backend!r} does not")
        self._nursery = nursery
        self._backend = backend
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.on_overflow: OverflowPolicy = on_overflow
        #: Publications each topic keeps for resuming (0: none), and for how long (seconds).
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._history_limits = history_limits
        self._topics: dict[str, dict[Subscription, None]] = {}
        self._streams: dict[str, TopicHistory] = {}
        self._members: dict[str, dict[str, object]] = {}  # presence here: topic, member id, info
        self._presence_backend = backend if isinstance(backend, PresenceBackend) else None
        # Positions and history live in the backend (Redis Streams) rather than here.
        self._history_backend = backend if history_size and isinstance(backend, HistoryBackend) else None

    @asynccontextmanager
    async def subscribe(
        self,
        ws: WebSocket,
        *topics: str,
        queue_size: int | None = None,
        on_overflow: OverflowPolicy | None = None,
        queue_bytes: int | None = None,
        since: StreamPosition | None = None,
        format: Formatter | None = None,
        first: Callable[[Subscription], Data] | None = None,
        info: object = None,
    ) -> AsyncIterator[Subscription]:
        """Deliver publishes to `topics` to `ws` while the block runs.

        `queue_size`, `queue_bytes` and `on_overflow` default to the hub's. `format` turns each
        `Publication` into what is sent (default: its data). With history, a subscription to
        one topic has a `position`: every publication after it is delivered. With `since`
        (one topic only), every publication after that position is sent first if the
        history still has them all (`subscription.recovered` is True), else none is and
        only live ones follow (False). With a backend, returns once the backend is
        subscribed to every topic that had no local subscriber yet (and, with history, once
        the position is known: a round trip to Redis).
        """
        size = self.queue_size if queue_size is None else queue_size
        policy = self.on_overflow if on_overflow is None else on_overflow
        max_bytes = self.queue_bytes if queue_bytes is None else queue_bytes
        _check_options(size, policy, max_bytes)
        info_json = None if info is None else json.dumps(info)  # refused here if it is not JSON
        queue = SubscriberQueue(size, max_bytes, policy)
        subscription = Subscription(ws, frozenset(topics), queue, format, info)
        if since is not None:
            self._check_since(topics, since)
        positioned_by_backend = self._history_backend is not None and len(topics) == 1
        if positioned_by_backend or (first is not None and self._backend is not None):
            subscription._pending = deque()  # live publications wait for what goes first
        elif self.history_size and self._backend is None and len(topics) == 1:
            self._recover(subscription, topics[0], since)
        new_topics = [topic for topic in subscription.topics if topic not in self._topics]
        for topic in subscription.topics:
            self._topics.setdefault(topic, {})[subscription] = None
        try:
            if self._backend is not None:
                for topic in new_topics:
                    await self._backend.subscribe(topic)
            if positioned_by_backend:
                await self._recover_through_backend(subscription, topics[0], since)
            if first is not None:
                subscription._replay.appendleft(PreparedMessage(first(subscription)))
            self._release_held(subscription)
            self._nursery.start_soon(self._run_forwarder, subscription)
            if info_json is not None:
                for topic in subscription.topics:
                    subscription._joined.add(topic)
                    await self._join(topic, subscription.member, info, info_json)
            yield subscription
        finally:
            self._remove(subscription)

    def _check_since(self, topics: tuple[str, ...], since: StreamPosition) -> None:
        if len(topics) != 1:
            raise ValueError(f"since= resumes one topic, not {len(topics)}: subscribe to each on its own")
        if not self.history_size:
            raise ValueError("since= needs history: open the hub with history_size > 0")
        if not isinstance(since, StreamPosition):
            raise TypeError(f"since must be a StreamPosition, not {type(since).__name__}")

    def _recover(self, subscription: Subscription, topic: str, since: StreamPosition | None) -> None:
        """In one process: queue the publications after `since` for replay, if the history
        has them all. No await between this and the subscription's registration."""
        stream = self._stream(topic)
        subscription.position = stream.position
        if since is None:
            return
        missed = stream.since(since, trio.current_time())
        subscription.recovered = missed is not None
        for publication in missed or ():
            if (prepared := self._prepared_for(subscription, publication)) is not None:
                subscription._replay.append(prepared)

    async def _recover_through_backend(
        self, subscription: Subscription, topic: str, since: StreamPosition | None
    ) -> None:
        """Ask the backend (already subscribed) for the position and what came after
        `since`, and replay that (`_release_held` then offers the live publications held
        meanwhile that come after the position). Asking after subscribing leaves no gap;
        dropping what is not after the position leaves no duplicate."""
        assert self._history_backend is not None and subscription._pending is not None
        try:
            ttl = self.limits_of(topic).ttl
            position, missed = await self._history_backend.position(topic, since, ttl)
        except ConnectionError as exc:
            logger.warning("cannot read the position of topic %r (%s): live publications only", topic, exc)
            position, missed = None, None
        subscription.position = position
        if since is not None:
            subscription.recovered = missed is not None
        for publication in missed or ():
            if (prepared := self._prepared_for(subscription, publication)) is not None:
                subscription._replay.append(prepared)
        subscription._after = position

    def _release_held(self, subscription: Subscription) -> None:
        """Offer the live publications held while the subscription started, but those not
        after its position (they are in the replay, or from before it started)."""
        held, subscription._pending = subscription._pending, None
        for topic, live, frames in held or ():
            if not subscription._is_stale(live) and not subscription._offer(topic, frames):
                self._disconnect_slow(subscription)
                return

    @staticmethod
    def _prepared_for(subscription: Subscription, publication: Publication) -> PreparedMessage | None:
        if subscription.format is None:
            return PreparedMessage(publication.data)
        return _formatted(subscription.format, publication)

    def limits_of(self, topic: str) -> HistoryLimits:
        """The history `topic` keeps: the hub's, unless `history_limits` says otherwise."""
        limits = self._history_limits(topic) if self._history_limits is not None else None
        if limits is None:
            return HistoryLimits(self.history_size, self.history_ttl)
        if not isinstance(limits, HistoryLimits):
            raise TypeError(f"history_limits must return a HistoryLimits or None, not {limits!r}")
        return limits

    def _check_history(self, what: str) -> None:
        if self._backend is not None:
            raise ValueError(f"{what} is for a hub in one process; with a backend, see subscription.position")
        if not self.history_size:
            raise ValueError(f"{what} needs history: open the hub with history_size > 0")

    def _stream(self, topic: str) -> TopicHistory:
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = self._new_stream(topic)
        return stream

    def _new_stream(self, topic: str) -> TopicHistory:
        limits = self.limits_of(topic)
        return TopicHistory(topic, new_epoch(), limits.size, limits.ttl)

    def _append(self, topic: str, message: Data) -> Publication:
        """Give `message` its position in `topic`'s stream, which moves to the end of the
        streams; then look at the two at the front (published longest ago) and drop those
        that keep nothing any more, so that streams of topics no longer published go too."""
        now = trio.current_time()
        streams = self._streams
        stream = streams.pop(topic) if topic in streams else self._new_stream(topic)
        streams[topic] = stream
        publication = stream.append(message, now)
        for _ in range(2):
            oldest = next(iter(streams))
            if oldest == topic:
                break
            if not self._forget_if_idle(oldest):  # still needed: look again after the others
                streams[oldest] = streams.pop(oldest)
        return publication

    def _forget_if_idle(self, topic: str) -> bool:
        """Drop a topic's stream once it has no subscriber here and keeps nothing: what the
        hub holds is bounded by the topics published to within `history_ttl`. Whether it
        was dropped."""
        stream = self._streams.get(topic)
        if stream is None or topic in self._topics or not stream.is_empty(trio.current_time()):
            return False
        del self._streams[topic]
        return True

    async def _join(self, topic: str, member: str, info: object, info_json: str) -> None:
        self._members.setdefault(topic, {})[member] = info
        if self._presence_backend is not None:
            await self._presence_backend.join(topic, member, info_json)
        await self.publish(presence_topic(topic), json.dumps({"type": "join", "id": member, "info": info}))

    async def _leave(self, topic: str, member: str, info: object) -> None:
        if self._presence_backend is not None:
            await self._presence_backend.leave(topic, member)
        await self.publish(presence_topic(topic), json.dumps({"type": "leave", "id": member, "info": info}))

    async def presence(self, topic: str) -> dict[str, object]:
        """Who is subscribed to `topic` with `info`, as member id to info: in every process
        with a backend that keeps presence (`RedisBackend`: a member of a process that died
        is gone within its `presence_ttl`), else in this one."""
        if self._presence_backend is None:
            await trio.lowlevel.checkpoint()
            return dict(self._members.get(topic, {}))
        members = await self._presence_backend.members(topic)
        present: dict[str, object] = {}
        for member, info in members.items():
            try:
                present[member] = json.loads(info)
            except ValueError:
                continue  # not ours in form: any Redis client can write there
        return present

    def position(self, topic: str) -> StreamPosition:
        """The position of `topic`'s latest publication in this process (offset 0 before
        the first): a subscriber that saw everything so far resumes from here."""
        self._check_history("position()")
        return self._stream(topic).position

    async def _run_forwarder(self, subscription: Subscription) -> None:
        try:
            await subscription._forward()
        finally:
            self._remove(subscription)  # a subscriber that disconnects leaves no trace

    def _remove(self, subscription: Subscription) -> None:
        subscription._forwarder.cancel()
        subscription.queue.close()
        for topic in subscription.topics:
            subscribers = self._topics.get(topic)
            if subscribers is None or subscription not in subscribers:
                continue
            del subscribers[subscription]
            if topic in subscription._joined:
                self._forget_member(topic, subscription.member)
                self._nursery.start_soon(self._leave, topic, subscription.member, subscription.info)
            if not subscribers:
                del self._topics[topic]
                self._forget_if_idle(topic)
                if self._backend is not None:
                    self._nursery.start_soon(self._unsubscribe_backend, topic)

    def _forget_member(self, topic: str, member: str) -> None:
        members = self._members.get(topic)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._members[topic]

    async def _unsubscribe_backend(self, topic: str) -> None:
        if topic not in self._topics and self._backend is not None:
            await self._backend.unsubscribe(topic)

    async def publish(self, topic: str, message: Data) -> int:
        """Send `message` to every subscriber of `topic`, here and (with a backend) in
        every other process; return how many local subscribers it was queued for.

        With history through a backend, local subscribers get it back from the backend
        like every other process's, so that all see one order: the number returned is how
        many it will reach here (0 if the backend could not take it)."""
        frames = PreparedMessage(message)  # captures the message now, before any await
        if self._history_backend is not None:
            limits = self.limits_of(topic)
            appended = await self._history_backend.append(topic, frames.message, limits.size, limits.ttl)
            return len(self._topics.get(topic, ())) if appended is not None else 0
        publication = None
        if self.history_size and self._backend is None:
            publication = self._append(topic, frames.message)
        reached = self._deliver(topic, frames, publication)
        if self._backend is not None:
            await self._backend.publish(topic, frames.message)
        else:
            await trio.lowlevel.checkpoint()
        return reached

    def deliver_locally(self, topic: str, message: Data, publication: Publication | None = None) -> int:
        """Queue a message for the local subscribers only (for backends), with its
        `publication` (and position) if the backend gave it one."""
        return self._deliver(topic, PreparedMessage(message), publication)

    def _deliver(self, topic: str, frames: PreparedMessage, publication: Publication | None = None) -> int:
        """Offer `frames` to each subscriber of `topic`; a subscription with a formatter
        gets `publication` formatted, once per formatter (and framed once)."""
        subscriptions = self._topics.get(topic)
        if not subscriptions:
            return 0
        reached = 0
        formatted: dict[Formatter, PreparedMessage | None] | None = None
        for subscription in list(subscriptions):
            offered: PreparedMessage | None = frames
            format = subscription.format
            if format is not None:
                if publication is None:
                    publication = Publication(topic, frames.message, None, "")
                if formatted is None:
                    formatted = {}
                if format not in formatted:
                    formatted[format] = _formatted(format, publication)
                offered = formatted[format]
            if offered is None:
                continue  # its formatter failed on this publication (logged)
            if subscription._pending is not None:
                subscription._hold(topic, publication, offered, subscription.queue.size + self.history_size)
            elif subscription._after is not None and subscription._is_stale(publication):
                continue
            elif subscription._offer(topic, offered):
                reached += 1
            else:
                self._disconnect_slow(subscription)
        return reached

    def _disconnect_slow(self, subscription: Subscription) -> None:
        queue = subscription.queue
        limit = f"{queue.size}" if len(queue) >= queue.size else f"{queue.max_bytes} bytes"
        subscription.ws.logger.warning("subscriber too slow (queue of %s full); closing with 1013", limit)
        self._remove(subscription)
        self._nursery.start_soon(subscription.ws.close, CloseCode.TRY_AGAIN_LATER, "subscriber too slow")

    def subscribers(self, topic: str) -> frozenset[WebSocket]:
        """The connections subscribed to `topic` in this process."""
        return frozenset(subscription.ws for subscription in self._topics.get(topic, ()))

    @property
    def topics(self) -> frozenset[str]:
        """The topics with at least one local subscriber."""
        return frozenset(self._topics)


def _formatted(format: Formatter, publication: Publication) -> PreparedMessage | None:
    """`format(publication)`, framed; None (and logged) if the formatter raised: one bad
    publication, or one bad formatter, must not stop delivery to everyone else."""
    try:
        return PreparedMessage(format(publication))
    except Exception:
        logger.exception(
            "a subscription's formatter failed on a publication to %r; skipped", publication.topic
        )
        return None


def _check_options(queue_size: int, on_overflow: str, queue_bytes: int) -> None:
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, not {queue_size}")
    if not isinstance(queue_bytes, int) or queue_bytes < 1:
        raise ValueError(f"queue_bytes must be an int of at least 1, not {queue_bytes!r}")
    if on_overflow not in _POLICIES:
        raise ValueError(f"on_overflow must be one of {', '.join(_POLICIES)}, not {on_overflow!r}")


@asynccontextmanager
async def open_hub(
    backend: Backend | None = None,
    queue_size: int = 64,
    on_overflow: OverflowPolicy = "drop_oldest",
    history_size: int = 0,
    history_ttl: float | None = 300.0,
    queue_bytes: int = DEFAULT_QUEUE_BYTES,
    history_limits: Callable[[str], HistoryLimits | None] | None = None,
) -> AsyncIterator[Hub]:
    """A hub whose tasks live in this block; leaving it cancels them.

    Each subscriber's queue holds at most `queue_size` publications and `queue_bytes` of
    payload; past either, `on_overflow` decides: "drop_oldest", "disconnect" (1013), or
    "latest" (only the newest of each topic is kept: conflation).

    `history_size` publications per topic (none older than `history_ttl` seconds) are
    kept for `subscribe(..., since=position)`, and publications get positions: in this
    process, or in Redis with a backend that keeps history (`RedisBackend`,
    `RedisClusterBackend`). `history_limits(topic)` may give a topic limits of its own (a
    `HistoryLimits`; None: the hub's). In process, the hub holds a stream for each topic
    published to within its ttl (or ever, with no ttl), and each subscribed topic.

    Inside the block (and in every task started from it, such as a server's handlers),
    `current_hub()` returns this hub.
    """
    async with open_nursery_unwrapped() as nursery:
        hub = Hub(
            nursery, backend, queue_size, on_overflow, history_size, history_ttl, queue_bytes, history_limits
        )
        if backend is not None:
            await nursery.start(_run_backend, backend, hub)
        token = _current_hub.set(hub)
        try:
            yield hub
        finally:
            _current_hub.reset(token)
            nursery.cancel_scope.cancel()


async def _run_backend(backend: Backend, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
    await backend.run(hub, task_status=task_status)


def current_hub() -> Hub:
    """The hub of the enclosing `open_hub` block (or of `python -m trio_ws serve`)."""
    try:
        return _current_hub.get()
    except LookupError:
        raise LookupError("no hub here: call this inside `async with trio_ws.open_hub()`") from None
