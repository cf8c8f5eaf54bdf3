"""`Subscription`: one subscriber of a hub, its phase, its queue, and its forwarder.

How a subscription moves, and who moves it:

- **HELD** from the moment the hub registers it: its start (the position its stream starts
  after, and what `first` sends) is not known yet. A subscription that will have a position
  keeps the live publications offered meanwhile in a small held buffer (half its
  `queue_bytes`, dropping the oldest: they can be read again from the history); one
  without queues them as it will when live. The hub then calls `start()`.
- **REPLAYING** once started from a position with publications after it (a resume): its
  forwarder reads them from the topic's shared history through a `ReplaySource`, a batch
  at a time, at the pace the subscriber takes them. It holds a cursor, never a copy of the
  history: what it holds is one batch (half its `queue_bytes`) and the held buffer.
- **LIVE** once the cursor reached the latest publication and the held buffer continues it
  without a hole (else the forwarder reads on). A live publication goes straight to the
  subscriber if nothing older waits and it has room, else to its queue, where its overflow
  policy applies. A publication at or before the start position is dropped (it was
  replayed, or precedes the start): through a backend the listener may deliver it late.
- **ENDED** when the subscriber leaves, the hub closes, or the subscriber is too slow
  under "disconnect" (its sink is told, then: 1013 for a WebSocket).

The forwarder (`forward`) runs in the hub's nursery; everything else happens in the hub's
calls, with no await between a decision and what it decides. A subscriber is a `Sink`: a
WebSocket (`WebSocketSink`) or a Trio memory channel (`ChannelSink`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Protocol

import trio

from .connection import WebSocket
from .counters import HubStats
from .exceptions import CloseCode, ConnectionClosed
from .history import Publication, StreamPosition
from .messages import Data
from .prepared import PreparedMessage
from .subscriber_queue import OverflowPolicy, SubscriberQueue

__all__ = [
    "Phase",
    "Fanout",
    "Formatter",
    "Sink",
    "WebSocketSink",
    "ChannelSink",
    "ReplaySource",
    "Subscription",
    "REPLAY_BATCH",
]

logger = logging.getLogger("trio_ws.hub")

Formatter = Callable[[Publication], Data]
"""What a subscription sends for a publication (default: its data as it was published)."""

REPLAY_BATCH = 256
"""Publications a replay reads from the history at once, at most (and half `queue_bytes`)."""


class Phase(enum.Enum):
    """Where a subscription is in its life (see the module docstring)."""

    HELD = "held"
    REPLAYING = "replaying"
    LIVE = "live"
    ENDED = "ended"


class Fanout:
    """One publication on its way to a hub's local subscribers: framed once as published
    (`raw`), and once per formatter, on first need."""

    __slots__ = ("_formatted", "_raw", "publication")

    def __init__(self, publication: Publication, raw: PreparedMessage | None = None) -> None:
        self.publication = publication
        self._raw = raw
        self._formatted: dict[int, tuple[Formatter, PreparedMessage | None]] | None = None

    @property
    def raw(self) -> PreparedMessage:
        """The publication's data, framed."""
        if self._raw is None:
            self._raw = PreparedMessage(self.publication.data)
        return self._raw

    @property
    def size(self) -> int:
        """Payload bytes, as published: what a queue counts."""
        return len(self.raw.payload)

    def formatted(self, format: Formatter | None) -> PreparedMessage | None:
        """What `format` makes of the publication, framed; None (logged once) if it failed.

        Kept per formatter by identity, so an unhashable formatter (a dataclass with
        `__call__`) works, and each formatter runs once per publication however many
        subscribers share it."""
        if format is None:
            return self.raw
        cache = self._formatted
        if cache is None:
            cache = self._formatted = {}
        entry = cache.get(id(format))
        if entry is None or entry[0] is not format:
            entry = cache[id(format)] = (format, _format(format, self.publication))
        return entry[1]


def _format(format: Formatter, publication: Publication) -> PreparedMessage | None:
    """`format(publication)`, framed; None (and logged) if the formatter raised or gave
    something that cannot be sent: one bad publication, or one bad formatter, must not
    stop delivery to anyone else."""
    try:
        return PreparedMessage(format(publication))
    except Exception:
        logger.exception(
            "a subscription's formatter failed on a publication to %r; skipped", publication.topic
        )
        return None


class Sink(Protocol):
    """Where a subscription's publications go."""

    @property
    def id(self) -> str:
        """Names the subscriber (a member id starts with it)."""

    def try_send_nowait(self, fanout: Fanout) -> bool:
        """Hand over a publication at once if the subscriber has room; False (nothing
        sent) if not. A publication this subscriber skips (its formatter failed) is True."""

    async def send(self, fanout: Fanout) -> bool:
        """Hand over a publication, waiting for room; False once the subscriber is gone."""

    async def send_first(self, message: Data) -> bool:
        """Send the subscription's `first` message; False once the subscriber is gone."""

    def too_slow(self, why: str) -> None:
        """Tell the subscriber it was dropped for being too slow (never waits)."""

    def close(self) -> None:
        """The subscription ended: nothing more comes (never waits)."""


class WebSocketSink:
    """A WebSocket subscriber: publications formatted by `format`, framed once per group."""

    __slots__ = ("format", "nursery", "ws")

    def __init__(self, ws: WebSocket, format: Formatter | None, nursery: trio.Nursery) -> None:
        self.ws = ws
        self.format = format
        self.nursery = nursery  # where the close of a too slow subscriber runs

    @property
    def id(self) -> str:
        return str(self.ws.id)

    def try_send_nowait(self, fanout: Fanout) -> bool:
        frames = fanout.formatted(self.format)
        return frames is None or self.ws.try_send_nowait(frames)

    async def send(self, fanout: Fanout) -> bool:
        frames = fanout.formatted(self.format)
        if frames is None:
            await trio.lowlevel.checkpoint()
            return True
        return await self._send(frames)

    async def send_first(self, message: Data) -> bool:
        return await self._send(PreparedMessage(message))

    async def _send(self, frames: PreparedMessage) -> bool:
        try:
            await self.ws.send(frames)
        except ConnectionClosed:
            return False
        return True

    def too_slow(self, why: str) -> None:
        self.ws.logger.warning("subscriber too slow (%s); closing with 1013", why)
        self.nursery.start_soon(self.ws.close, CloseCode.TRY_AGAIN_LATER, "subscriber too slow")

    def close(self) -> None:
        pass  # the connection is the handler's: it outlives its subscriptions


class ChannelSink:
    """A task's subscriber: publications into a Trio memory channel without a buffer of its
    own (the subscription's queue is the buffer, with its bounds and policy)."""

    __slots__ = ("_id", "channel", "dropped_because")

    def __init__(self, channel: trio.MemorySendChannel[Publication], id: str) -> None:
        self.channel = channel
        self._id = id
        self.dropped_because: str | None = None
        """Why the subscription was dropped (too slow), once it was."""

    @property
    def id(self) -> str:
        return self._id

    def try_send_nowait(self, fanout: Fanout) -> bool:
        try:
            self.channel.send_nowait(fanout.publication)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the receiving task is gone: its block is ending the subscription
        return True

    async def send(self, fanout: Fanout) -> bool:
        try:
            await self.channel.send(fanout.publication)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def send_first(self, message: Data) -> bool:
        await trio.lowlevel.checkpoint()
        return True  # a channel has no first message: the task reads its subscription

    def too_slow(self, why: str) -> None:
        logger.warning("channel subscriber %s too slow (%s); dropped", self._id, why)
        self.dropped_because = why
        self.channel.close()

    def close(self) -> None:
        self.channel.close()


class ReplaySource(Protocol):
    """Where a replay reads a topic's history: the hub's own, or Redis's."""

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int
    ) -> list[Publication] | None:
        """The publications after `after`, oldest first: at most `max_count` and
        `max_bytes` (but at least one); [] if `after` is the latest; None if the one after
        it is no longer kept, or the topic's epoch is another."""


class Subscription:
    """One subscriber's subscription to some topics, with its queue and policy.

    Made by `Hub.subscribe` and `Hub.open_channel`; the attributes are for the subscriber
    to read. See the module docstring for its phases.
    """

    def __init__(
        self,
        sink: Sink,
        topics: frozenset[str],
        queue: SubscriberQueue[Fanout],
        *,
        member: str,
        info: object = None,
        format: Formatter | None = None,
        ws: WebSocket | None = None,
        positioned: bool = False,
        stats: HubStats,
    ) -> None:
        self.sink = sink
        self.stats = stats
        """Where it counts its hub's figures (disconnects, drops, replays)."""
        self.ws = ws
        """The WebSocket subscribed (None for `open_channel`)."""
        self.topics = topics
        self.member = member
        """With `info`, the subscriber is in `hub.presence()` of its topics under this id (the
        connection's id, then a number: each subscription is a member of its own)."""
        self.info = info
        """What this subscriber shows in `hub.presence()` (as JSON gives it back), or None."""
        self.queue = queue
        """The publications waiting for a backed-up subscriber, with their limits and policy."""
        self.format = format
        self.recovered: bool | None = None
        """For a subscription made with `since`: whether every publication after it was still in the
        history when it started (and is replayed first); None without `since`. A replay that then falls
        behind the history (a subscriber slower than the history is long) drops what it missed, as a full
        queue does: see `dropped`."""
        self.position: StreamPosition | None = None
        """With history, for a subscription to one topic: the position it starts after (what is replayed
        and every live publication come after it). None without history, for several topics or a presence
        topic, and while the position cannot be read (a backend that cannot reach Redis: live publications
        only, then)."""
        self.phase = Phase.HELD
        # While held or replaying, with a position to come: the live publications offered
        # meanwhile (half of queue_bytes; the oldest go, as the history still has them).
        self._held: SubscriberQueue[Fanout] | None = (
            SubscriberQueue(queue.size, max(1, queue.max_bytes // 2), "drop_oldest") if positioned else None
        )
        self._after: StreamPosition | None = None  # live publications up to it are stale
        self._source: ReplaySource | None = None
        self._batch: list[Publication] = []  # read from the history, not sent yet
        self._first: Data | None = None
        self._forwarder = trio.CancelScope()
        self._replayed = 0  # publications sent by the replay
        self._replay_counted = False  # in its hub's replay histogram, once
        self._forwarding = False  # the forwarder is sending one: a live one must not overtake it

    @property
    def queue_size(self) -> int:
        """At most this many publications wait for the subscriber."""
        return self.queue.size

    @property
    def on_overflow(self) -> OverflowPolicy:
        """What a full queue does."""
        return self.queue.policy

    @property
    def dropped(self) -> int:
        """Publications dropped for this subscriber by its overflow policy (including
        those a replay fell behind on)."""
        return self.queue.dropped

    @property
    def held(self) -> int:
        """Live publications held while the subscription starts or replays."""
        return 0 if self._held is None else len(self._held)

    @property
    def held_bytes(self) -> int:
        """Their payload bytes (at most half of `queue_bytes`)."""
        return 0 if self._held is None else self._held.queued_bytes

    def replay_batch_limits(self) -> tuple[int, int]:
        """How much a replay reads at once: publications (`REPLAY_BATCH`: a batch of small
        ones costs little, and each through Redis is a round trip), and payload bytes (half
        of `queue_bytes`; the held buffer has the other half)."""
        return REPLAY_BATCH, max(1, self.queue.max_bytes // 2)

    # ---- what the hub calls ----------------------------------------------------------

    def start(
        self,
        position: StreamPosition | None,
        *,
        since: StreamPosition | None = None,
        recovered: bool | None = None,
        source: ReplaySource | None = None,
        replay: list[Publication] | None = None,
    ) -> None:
        """Set where the subscription starts: after `position`; if `recovered` (and
        `since` is before `position`), replaying from `since` first: `replay`, the first
        batch read with the decision (so that what was vouched for is in hand), then the
        rest through `source`, a batch at a time."""
        self.position = position
        self.recovered = recovered
        self._after = position
        self._source = source  # also for reading what the held buffer dropped
        if recovered and since is not None and position is not None and since.offset < position.offset:
            self._after = since  # the replay's cursor
            self._batch = replay or []
            self.phase = Phase.REPLAYING

    def send_first(self, message: Data) -> None:
        """Send `message` before anything else."""
        self._first = message

    def offer(self, fanout: Fanout) -> bool:
        """Take a live publication without waiting; whether it was taken for the
        subscriber (False: stale, or the subscriber is gone or too slow)."""
        phase = self.phase
        if phase is Phase.LIVE:
            if self._after is not None and self._is_stale(fanout.publication):
                return False
            if not self._forwarding and not self.queue and self.sink.try_send_nowait(fanout):
                return True
            if self.queue.put(fanout.publication.topic, fanout, fanout.size):
                return True
            self.drop_too_slow()
            return False
        if phase is Phase.ENDED:
            return False
        if self._held is not None:
            self._held.put(fanout.publication.topic, fanout, fanout.size)
            return True
        if self.queue.put(fanout.publication.topic, fanout, fanout.size):
            return True
        self.drop_too_slow()
        return False

    def drop_too_slow(self) -> None:
        """End the subscription because its queue is full under "disconnect"."""
        queue = self.queue
        limit = f"queue of {queue.size}" if len(queue) >= queue.size else f"queue of {queue.max_bytes} bytes"
        self.stats.overflow_disconnects += 1
        self.sink.too_slow(f"{limit} full")
        self.end()

    def end(self) -> None:
        """Stop: nothing more is delivered, and the forwarder returns. What it dropped is
        added to its hub's count (once: ending again does nothing)."""
        if self.phase is Phase.ENDED:
            return
        self._count_replay()  # a replay cut short counts what it sent
        dropped = self.stats.dropped
        dropped[self.queue.policy] = dropped.get(self.queue.policy, 0) + self.queue.dropped
        self.phase = Phase.ENDED
        self._forwarder.cancel()
        self.queue.close()
        if self._held is not None:
            self._held.close()
        self.sink.close()

    async def forward(self) -> None:
        """The forwarder: `first`, the replay, then what waits in the queue, at the pace
        the subscriber takes them; returns when the subscription ends."""
        with self._forwarder:
            if self._first is not None and not await self.sink.send_first(self._first):
                return
            if self.phase is Phase.HELD:
                self._go_live()
            while self.phase is Phase.REPLAYING:
                if not await self._replay_batch():
                    return
            while self.phase is Phase.LIVE:
                fanout = await self.queue.get()
                if fanout is None:
                    return
                self._forwarding = True
                try:
                    if not await self.sink.send(fanout):
                        return
                finally:
                    self._forwarding = False

    # ---- inside -----------------------------------------------------------------------

    async def _replay_batch(self) -> bool:
        """Send the batch in hand, or read the next, or go live; False once the subscriber
        is gone."""
        if self._batch:
            batch, self._batch = self._batch, []
            for publication in batch:
                if not await self.sink.send(Fanout(publication)):
                    return False
                self._replayed += 1
                self._after = publication.position
            return True
        source, cursor = self._source, self._after
        assert source is not None and cursor is not None
        queue = self.queue
        topic = next(iter(self.topics))
        more = await source.read(topic, cursor, *self.replay_batch_limits())
        if self.phase is not Phase.REPLAYING:
            return False  # ended meanwhile
        if more is None:  # the history moved past the cursor: missed, as from a full queue
            queue.dropped += 1
            if queue.policy == "disconnect":
                self.stats.overflow_disconnects += 1
                self.sink.too_slow("the replay fell behind the history")
                self.end()
                return False
            self._go_live(accept_gap=True)
        elif more:
            self._batch = more
        else:
            self._go_live()  # no await since the read: nothing can come between
        return True

    def _go_live(self, *, accept_gap: bool = False) -> None:
        """Become live: offer what was held, but what is not after the cursor. If what was
        held does not continue the cursor (its buffer dropped some), replay on instead."""
        held = self._held
        after = self._after
        if held is not None:
            while (first := held.peek()) is not None and self._is_stale_for(first.publication, after):
                held.get_nowait()
            if (
                first is not None
                and not accept_gap
                and self._source is not None
                and after is not None
                and first.publication.epoch == after.epoch
                and first.publication.offset != after.offset + 1
            ):
                self.phase = Phase.REPLAYING  # the history has what the buffer dropped
                return
        self._held = None
        self.phase = Phase.LIVE
        self._count_replay()
        while held is not None and (fanout := held.get_nowait()) is not None:
            if not self.offer(fanout) and self.phase is Phase.ENDED:
                return

    def _count_replay(self) -> None:
        """Add a recovered resume's replay to the hub's histogram, once: when it goes live,
        or ends first."""
        if self.recovered and not self._replay_counted:
            self._replay_counted = True
            self.stats.replayed.observe(self._replayed)

    @staticmethod
    def _is_stale_for(publication: Publication, after: StreamPosition | None) -> bool:
        """Whether `publication` is at or before `after`, in its epoch."""
        return (
            after is not None
            and publication.offset is not None
            and publication.epoch == after.epoch
            and publication.offset <= after.offset
        )

    def _is_stale(self, publication: Publication) -> bool:
        """A live publication at or before the start (once one is past it, all are)."""
        if self._is_stale_for(publication, self._after):
            return True
        if publication.offset is not None:
            self._after = None
        return False

    def __repr__(self) -> str:
        return f"<Subscription {self.sink.id} {sorted(self.topics)} {self.phase.value}>"
