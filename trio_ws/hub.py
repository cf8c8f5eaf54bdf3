"""`Hub`: publish/subscribe by topic within a process, optionally across processes.

`open_hub` picks how the hub delivers once (`delivery`: in this process or through a
backend, with or without history). The hub keeps the subscribers by topic and their
presence; each subscription (`subscription`) owns its phase, its bounded queue and its
forwarder task, which runs in the hub's nursery. `publish` frames the message once (per
compression group) and hands it to every subscriber without waiting: straight to one that
has room, else to its queue, where an overflow drops the oldest, keeps only the newest per
topic, or disconnects the slow subscriber (close code 1013), as its policy says.

Everything a client may choose is checked where it enters: topics (`topics.check_topic`),
positions (`StreamPosition`), `info` (JSON, at most `MAX_INFO_BYTES`). A bad one is refused
to its caller with ValueError; nothing a subscriber does ends the hub or reaches another
subscriber. With history, a resume reads the topic's shared history through a cursor, so
it costs its subscriber no more than its queue, whatever position it asks for.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Unpack

import trio

from .connection import WebSocket
from .counters import HubStats, Snapshot, StatsSource
from .counters import register as register_stats
from .counters import unregister as unregister_stats
from .delivery import Delivery, choose_delivery
from .history import HistoryLimits, Publication, StreamPosition
from .hub_backend import Backend, PresenceBackend
from .hub_config import HubConfig, HubOptions, check_queue_options
from .messages import Data
from .prepared import PreparedMessage
from .subscriber_queue import POLICIES, OverflowPolicy, SubscriberQueue
from .subscription import ChannelSink, Fanout, Formatter, Phase, Sink, Subscription, WebSocketSink
from .tasks import open_nursery_unwrapped
from .topics import check_topic, presence_topic

__all__ = [
    "Hub",
    "Subscription",
    "PublicationChannel",
    "Backend",
    "HubConfig",
    "open_hub",
    "current_hub",
    "OverflowPolicy",
    "Formatter",
    "presence_topic",
    "MAX_INFO_BYTES",
]

_current_hub: contextvars.ContextVar[Hub] = contextvars.ContextVar("trio_ws_hub")
logger = logging.getLogger("trio_ws.hub")

MAX_INFO_BYTES = 16384
"""The largest `info` a subscriber may have, in bytes of JSON."""
CLOSE_GRACE = 1.0
"""Seconds a closing hub waits for its leaves to reach the other processes, at most."""

FirstMessage = Callable[[Subscription], Data | Awaitable[Data]]
"""What `subscribe(first=...)` is: a function of the subscription, plain or async."""


def _info_json(info: object) -> str:
    """`info` as JSON text, or ValueError: it is shown to every process's `presence()`."""
    try:
        text = json.dumps(info, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"info must be JSON (no NaN or infinity): {exc}") from None
    if len(text) > MAX_INFO_BYTES:
        raise ValueError(f"info is at most {MAX_INFO_BYTES} bytes of JSON, not {len(text)}")
    return text


def _check_topics(topics: tuple[str, ...]) -> frozenset[str]:
    if not topics:
        raise ValueError("subscribe to at least one topic")
    return frozenset(check_topic(topic) for topic in topics)


class PublicationChannel(trio.abc.ReceiveChannel[Publication]):
    """The receiving end of `hub.open_channel()`: a Trio channel of `Publication`s.

    Iterate it, or `await channel.receive()`. It ends (EndOfChannel) when the hub closes;
    a subscriber dropped for being too slow (`on_overflow="disconnect"`) gets
    `trio.BrokenResourceError` instead. `subscription` says where it started
    (`position`, `recovered`) and what it missed (`dropped`).
    """

    def __init__(
        self, receive: trio.MemoryReceiveChannel[Publication], sink: ChannelSink, subscription: Subscription
    ) -> None:
        self._receive = receive
        self._sink = sink
        self.subscription = subscription

    async def receive(self) -> Publication:
        """The next publication, in order."""
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            why = self._sink.dropped_because
            if why is not None:
                raise trio.BrokenResourceError(
                    f"this subscriber was too slow ({why}) and was dropped"
                ) from None
            raise

    def receive_nowait(self) -> Publication:
        """The next publication if one is waiting, else `trio.WouldBlock`."""
        return self._receive.receive_nowait()

    async def aclose(self) -> None:
        """Stop receiving (the subscription ends with its `open_channel` block)."""
        await self._receive.aclose()


class Hub:
    """Topics to subscribers. Made by `open_hub`; not built directly."""

    def __init__(self, nursery: trio.Nursery, config: HubConfig) -> None:
        self._nursery = nursery
        self.config = config
        """The hub's options."""
        self._topics: dict[str, dict[Subscription, None]] = {}
        self._members: dict[str, dict[str, str]] = {}  # presence here: topic, member id, info (JSON)
        backend = config.backend
        self._presence_backend = backend if isinstance(backend, PresenceBackend) else None
        self._delivery: Delivery = choose_delivery(self, backend, config.history_size > 0, config.limits_of)
        self._member_numbers = itertools.count(1)
        self._closed = False
        self._background = 0  # tasks started by _in_background and not finished
        self._idle: trio.Event | None = None  # set when they are all done
        self.counts = HubStats()
        """What it counts as it goes (read with `stats()`)."""

    def stats(self) -> Snapshot:
        """Its figures now, with its backend's, by metric name (see `trio_ws.stats()`)."""
        counts = self.counts
        live = {
            subscription
            for subscriptions in self._topics.values()
            for subscription in subscriptions
            if subscription.phase is not Phase.ENDED
        }
        dropped = dict(counts.dropped)
        for subscription in live:  # what the living dropped so far; the ended added theirs
            policy = subscription.queue.policy
            dropped[policy] = dropped.get(policy, 0) + subscription.queue.dropped
        figures: Snapshot = {
            "trio_ws_hub_publications_total": {(): counts.publications},
            "trio_ws_hub_deliveries_total": {(): counts.deliveries},
            "trio_ws_hub_dropped_total": {(policy,): dropped.get(policy, 0) for policy in POLICIES},
            "trio_ws_hub_overflow_disconnects_total": {(): counts.overflow_disconnects},
            "trio_ws_hub_subscriptions": {(): len(live)},
            "trio_ws_hub_resumes_total": {(outcome,): n for outcome, n in counts.resumes.items()},
            "trio_ws_hub_replayed_publications": {(): counts.replayed.read()},
            "trio_ws_hub_history_topics": {(): self._delivery.history_topics},
        }
        backend = self.config.backend
        if isinstance(backend, StatsSource):
            figures.update(backend.stats())
        return figures

    # ---- options ----------------------------------------------------------------------

    @property
    def delivery(self) -> Delivery:
        """How this hub delivers (chosen once from its backend and history)."""
        return self._delivery

    @property
    def queue_size(self) -> int:
        """Publications a subscriber's queue holds at most, by default."""
        return self.config.queue_size

    @property
    def queue_bytes(self) -> int:
        """Payload bytes a subscriber's queue holds at most, by default."""
        return self.config.queue_bytes

    @property
    def on_overflow(self) -> OverflowPolicy:
        """What a full queue does, by default."""
        return self.config.on_overflow

    @property
    def history_size(self) -> int:
        """Publications each topic keeps for resuming (0: none)."""
        return self.config.history_size

    @property
    def history_ttl(self) -> float | None:
        """Seconds a publication is kept at most (None: no age limit)."""
        return self.config.history_ttl

    def limits_of(self, topic: str) -> HistoryLimits:
        """The history `topic` keeps: the hub's, unless `history_limits` says otherwise."""
        return self.config.limits_of(topic)

    # ---- subscribing -------------------------------------------------------------------

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
        first: FirstMessage | None = None,
        info: object = None,
    ) -> AsyncIterator[Subscription]:
        """Deliver publishes to `topics` to `ws` while the block runs.

        `queue_size`, `queue_bytes` and `on_overflow` default to the hub's. `format` turns each
        `Publication` into what is sent (default: its data). With history, a subscription to
        one topic has a `position`: every publication after it is delivered. With `since`
        (one topic only), every publication after that position is sent first if the
        history still has them all (`subscription.recovered` is True), else none is and
        only live ones follow (False). `first(subscription)`, plain or async, gives a
        message sent before any other. With `info` (JSON), the subscriber is in
        `presence()` of its topics. A topic, position or `info` that is not valid raises
        ValueError here. With a backend, returns once the backend is subscribed to every
        topic that had no local subscriber yet (and, with history, once the position is
        known: a round trip to Redis).
        """
        wanted = _check_topics(topics)
        sink = WebSocketSink(ws, format, self._nursery)
        async with self._subscribed(
            sink, wanted, queue_size, on_overflow, queue_bytes, since, info, format, ws
        ) as (subscription):
            if first is not None:
                message = first(subscription)
                if inspect.isawaitable(message):
                    message = await message
                PreparedMessage(message)  # what cannot be sent is a TypeError here, not later
                subscription.send_first(message)
            await self._run(subscription, info is not None)
            yield subscription

    @asynccontextmanager
    async def open_channel(
        self,
        topic: str,
        *,
        queue_size: int | None = None,
        on_overflow: OverflowPolicy | None = None,
        queue_bytes: int | None = None,
        since: StreamPosition | None = None,
        info: object = None,
    ) -> AsyncIterator[PublicationChannel]:
        """A Trio channel of `topic`'s `Publication`s for a task of this process (a bot, a
        bridge, an audit log), while the block runs.

        The same bounds, overflow policies, history, `since` and guarantees as a WebSocket
        subscriber's: the channel has no buffer of its own, its subscription's queue is
        the buffer. `channel.subscription` has `position`, `recovered` and `dropped`.
        """
        wanted = _check_topics((topic,))
        send, receive = trio.open_memory_channel[Publication](0)
        sink = ChannelSink(send, f"channel-{uuid.uuid4().hex[:16]}")  # unique across processes
        async with self._subscribed(sink, wanted, queue_size, on_overflow, queue_bytes, since, info) as (
            subscription
        ):
            await self._run(subscription, info is not None)
            async with receive:
                yield PublicationChannel(receive, sink, subscription)

    @asynccontextmanager
    async def _subscribed(
        self,
        sink: Sink,
        topics: frozenset[str],
        queue_size: int | None,
        on_overflow: OverflowPolicy | None,
        queue_bytes: int | None,
        since: StreamPosition | None,
        info: object,
        format: Formatter | None = None,
        ws: WebSocket | None = None,
    ) -> AsyncIterator[Subscription]:
        """Check the options, register a subscription and start it; remove it at the end."""
        size = self.queue_size if queue_size is None else queue_size
        policy = self.on_overflow if on_overflow is None else on_overflow
        max_bytes = self.queue_bytes if queue_bytes is None else queue_bytes
        check_queue_options(size, policy, max_bytes)
        positioned = self._delivery.positioned(topics)
        if since is not None:
            self._check_since(topics, since, positioned)
        info_json = None if info is None else _info_json(info)
        subscription = Subscription(
            sink,
            topics,
            SubscriberQueue(size, max_bytes, policy),
            member=f"{sink.id}.{next(self._member_numbers)}",
            info=None if info_json is None else json.loads(info_json),
            format=format,
            ws=ws,
            positioned=positioned,
            stats=self.counts,
        )
        new_topics = [topic for topic in topics if topic not in self._topics]
        for topic in topics:
            self._topics.setdefault(topic, {})[subscription] = None
        try:
            await self._delivery.start(subscription, since, new_topics)
            if since is not None:
                self.counts.resumed(bool(subscription.recovered))
            yield subscription
        finally:
            self._remove(subscription)

    async def _run(self, subscription: Subscription, present: bool) -> None:
        """Start the forwarder, then join the presence of each topic (with `info`)."""
        self._nursery.start_soon(self._run_forwarder, subscription)
        if present:
            info_json = json.dumps(subscription.info, separators=(",", ":"))
            for topic in sorted(subscription.topics):
                await self._join(topic, subscription, info_json)

    def _check_since(self, topics: frozenset[str], since: StreamPosition, positioned: bool) -> None:
        if not isinstance(since, StreamPosition):
            raise TypeError(f"since must be a StreamPosition, not {type(since).__name__}")
        if len(topics) != 1:
            raise ValueError(f"since= resumes one topic, not {len(topics)}: subscribe to each on its own")
        if not self.history_size:
            raise ValueError(
                "since= needs history: give the hub history_size > 0 (HubConfig(history_size=N), "
                "ServerConfig(hub=...), or serve --history-size N)"
            )
        if not positioned:
            raise ValueError(f"since= needs a topic with history; a presence topic keeps none: {since!r}")

    async def _run_forwarder(self, subscription: Subscription) -> None:
        try:
            await subscription.forward()
        except Exception:  # a bug of ours must not end the hub, nor reach anyone else
            logger.exception("a subscription's forwarder failed; it ends")
        finally:
            self._remove(subscription)  # a subscriber that leaves leaves no trace

    def _remove(self, subscription: Subscription) -> None:
        subscription.end()
        for topic in subscription.topics:
            subscribers = self._topics.get(topic)
            if subscribers is None or subscription not in subscribers:
                continue
            del subscribers[subscription]
            members = self._members.get(topic)
            if members is not None and members.pop(subscription.member, None) is not None:
                if not members:
                    del self._members[topic]
                self._in_background(self._leave, topic, subscription.member, subscription.info)
            if not subscribers:
                del self._topics[topic]
                self._in_background(self._forget, topic)

    def _in_background(self, task: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run `task(*args)` in the hub's nursery, unless the hub is closed."""
        if not self._closed:
            self._background += 1
            self._nursery.start_soon(self._logged, task, *args)

    async def _logged(self, task: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await task(*args)
        except Exception:  # a backend's failure must not end the hub
            logger.exception("the hub's background task %s failed", getattr(task, "__name__", task))
        finally:
            self._background -= 1
            if not self._background and self._idle is not None:
                self._idle.set()

    async def _forget(self, topic: str) -> None:
        if topic not in self._topics:  # nobody subscribed again meanwhile
            await self._delivery.forget(topic)

    # ---- presence ----------------------------------------------------------------------

    async def _join(self, topic: str, subscription: Subscription, info_json: str) -> None:
        if subscription.phase is Phase.ENDED:
            return
        self._members.setdefault(topic, {})[subscription.member] = info_json
        if self._presence_backend is not None:
            await self._presence_backend.join(topic, subscription.member, info_json)
        await self._announce(topic, "join", subscription.member, subscription.info)

    async def _leave(self, topic: str, member: str, info: object) -> None:
        if self._presence_backend is not None:
            await self._presence_backend.leave(topic, member)
        await self._announce(topic, "leave", member, info)

    async def _announce(self, topic: str, kind: str, member: str, info: object) -> None:
        event = json.dumps({"type": kind, "id": member, "info": info}, separators=(",", ":"))
        await self._delivery.publish(presence_topic(topic), PreparedMessage(event))

    async def presence(self, topic: str) -> dict[str, object]:
        """Who is subscribed to `topic` with `info`, as member id to info: in every process
        with a backend that keeps presence (`RedisBackend`: a member of a process that died
        is gone within its `presence_ttl`; ConnectionError if Redis cannot be asked), else
        in this one. Each subscription with `info` is a member of its own."""
        check_topic(topic)
        if self._presence_backend is None:
            await trio.lowlevel.checkpoint()
            members = dict(self._members.get(topic, {}))
        else:
            members = await self._presence_backend.members(topic)
        present: dict[str, object] = {}
        for member, info in members.items():
            try:
                present[member] = json.loads(info)
            except (ValueError, RecursionError):
                continue  # not ours in form: any Redis client can write there
        return present

    # ---- publishing --------------------------------------------------------------------

    async def publish(self, topic: str, message: Data) -> int:
        """Send `message` to every subscriber of `topic`, here and (with a backend) in
        every other process; return how many local subscribers it was queued for.

        With history through a backend, local subscribers get it back from the backend
        like every other process's, so that all see one order: the number returned is how
        many it will reach here (0 if the backend could not take it). An invalid topic
        raises ValueError."""
        if topic not in self._topics:  # a subscribed topic was checked when subscribed
            check_topic(topic)
        self.counts.publications += 1
        return await self._delivery.publish(topic, PreparedMessage(message))

    def deliver_locally(self, topic: str, message: Data, publication: Publication | None = None) -> int:
        """Offer a message to the local subscribers only (for backends), with its
        `publication` (and position) if the backend gave it one."""
        if publication is None:
            frames = PreparedMessage(message)
            publication = Publication(topic, frames.message, None, "")
        else:
            frames = PreparedMessage(publication.data)
        return self.deliver(topic, Fanout(publication, frames))

    def deliver(self, topic: str, fanout: Fanout) -> int:
        """Offer `fanout` to each local subscriber of `topic`; how many took it."""
        subscriptions = self._topics.get(topic)
        if not subscriptions:
            return 0
        reached = 0
        for subscription in list(subscriptions):
            if subscription.offer(fanout):
                reached += 1
            elif subscription.phase is Phase.ENDED:
                self._remove(subscription)  # too slow under "disconnect"
        self.counts.deliveries += reached
        return reached

    def subscriber_count(self, topic: str) -> int:
        """How many local subscriptions `topic` has."""
        return len(self._topics.get(topic, ()))

    def position(self, topic: str) -> StreamPosition:
        """The position of `topic`'s latest publication in this process (offset 0 before
        the first): a subscriber that saw everything so far resumes from here."""
        return self._delivery.position(check_topic(topic))

    def subscribers(self, topic: str) -> frozenset[WebSocket]:
        """The connections subscribed to `topic` in this process."""
        return frozenset(
            subscription.ws for subscription in self._topics.get(topic, ()) if subscription.ws is not None
        )

    @property
    def topics(self) -> frozenset[str]:
        """The topics with at least one local subscriber."""
        return frozenset(self._topics)

    async def aclose(self, grace: float = CLOSE_GRACE) -> None:
        """End: for at most `grace` seconds, let the leaves and unsubscriptions already
        under way finish and make the members still here leave, so that other processes
        see them go now rather than a `presence_ttl` later; then start nothing more."""
        with trio.move_on_after(grace, shield=True):
            while self._background:
                self._idle = trio.Event()
                await self._idle.wait()
            for topic, members in list(self._members.items()):
                for member, info_json in list(members.items()):
                    await self._leave(topic, member, json.loads(info_json))
                    members.pop(member, None)
            await self._delivery.flush()
        self._closed = True


@asynccontextmanager
async def open_hub(
    config: HubConfig | Backend | None = None, **options: Unpack[HubOptions]
) -> AsyncIterator[Hub]:
    """A hub whose tasks live in this block; leaving it cancels them.

    Give a `HubConfig`, or its options as keywords (which replace a config's), or a
    backend alone. Each subscriber's queue holds at most `queue_size` publications and
    `queue_bytes` of payload; past either, `on_overflow` decides: "drop_oldest",
    "disconnect" (1013), or "latest" (only the newest of each topic is kept: conflation).

    `history_size` publications per topic (none older than `history_ttl` seconds) are
    kept for `subscribe(..., since=position)`, and publications get positions: in this
    process, or in Redis with a backend that keeps history (`RedisBackend`,
    `RedisClusterBackend`). `history_limits(topic)` may give a topic limits of its own (a
    `HistoryLimits`; None: the hub's). In process, a topic's stream stays while it keeps a
    publication, has a subscriber or was used within its ttl.

    Inside the block (and in every task started from it, such as a server's handlers),
    `current_hub()` returns this hub.
    """
    if config is None:
        config = HubConfig(**options)
    elif isinstance(config, HubConfig):
        config = config.replace(**options) if options else config
    else:
        config = HubConfig(backend=config).replace(**options)
    async with open_nursery_unwrapped() as nursery:
        hub = Hub(nursery, config)
        if config.backend is not None:
            await nursery.start(_run_backend, config.backend, hub)
        token = _current_hub.set(hub)
        register_stats(hub)
        try:
            yield hub
        finally:
            unregister_stats(hub)
            _current_hub.reset(token)
            await hub.aclose()
            nursery.cancel_scope.cancel()


async def _run_backend(backend: Backend, hub: Hub, *, task_status: trio.TaskStatus[None]) -> None:
    await backend.run(hub, task_status=task_status)


def current_hub() -> Hub:
    """The hub of the enclosing `open_hub` block (or of `python -m trio_ws serve`)."""
    try:
        return _current_hub.get()
    except LookupError:
        raise LookupError("no hub here: call this inside `async with trio_ws.open_hub()`") from None
