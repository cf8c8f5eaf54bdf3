"""Positions and bounded history of a topic's publications, for resuming a subscription.

Every publication to a topic gets the next offset (1, 2, 3, ...) in an epoch: a token that
changes whenever the history is lost, so that a position from before the loss is never
mistaken for one after it. A topic keeps its latest publications, bounded by count and by
age; `since(position)` returns every publication after `position` only if all of them are
still kept, and None otherwise: recovery is whole or not at all. No I/O, no clock of its
own: callers pass the time.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "StreamPosition",
    "Publication",
    "HistoryLimits",
    "TopicHistory",
    "HistoryStore",
    "new_epoch",
    "check_history_limits",
    "MAX_OFFSET",
    "MAX_EPOCH_LENGTH",
    "MAX_IDLE_STREAMS",
]

MAX_OFFSET = 2**63 - 1
"""The largest offset a position may have (Redis counts offsets in a signed 64-bit integer)."""
MAX_EPOCH_LENGTH = 64
"""The longest epoch a position may have, in characters (the hub's are 16 to 32)."""
MAX_IDLE_STREAMS = 10_000
"""Streams kept, per hub in one process, for topics that keep nothing and have no subscriber, beyond those
younger than their ttl: past it, the longest idle goes."""


def new_epoch() -> str:
    """A fresh epoch token: different from every earlier one."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a subscriber is in a topic's stream: the last offset it saw, in an epoch.
    Offset 0 is the position before the first publication.

    Apps build positions from what clients send, so both fields are checked: `offset` an
    int (not a bool, not a float) from 0 to `MAX_OFFSET`, `epoch` a str of at most
    `MAX_EPOCH_LENGTH` characters; anything else raises ValueError. A well-formed position
    that a hub never gave (another epoch, an offset past the latest) resumes nothing:
    `recovered` is False.
    """

    offset: int
    epoch: str

    def __post_init__(self) -> None:
        offset, epoch = self.offset, self.epoch
        if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"a position's offset is an int from 0 to {MAX_OFFSET}, not {offset!r:.40}")
        if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH:
            raise ValueError(
                f"a position's epoch is a str of at most {MAX_EPOCH_LENGTH} characters, not {epoch!r:.80}"
            )


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication to a topic, with its position (`offset`, `epoch`). From a hub that
    keeps no history (`history_size=0`), and on a presence topic, `offset` is None and
    `epoch` "". `data` is what was published: a str, or (for bytes-like) an immutable copy.
    """

    topic: str
    data: str | bytes
    offset: int | None
    epoch: str

    @property
    def position(self) -> StreamPosition | None:
        """The position just after this publication, or None without one."""
        return None if self.offset is None else StreamPosition(self.offset, self.epoch)


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """What one topic's history keeps: at most `size` publications, none older than `ttl`
    seconds (None: no age limit). `open_hub(history_limits=...)` gives some topics their own."""

    size: int
    ttl: float | None

    def __post_init__(self) -> None:
        check_history_limits(self.size, self.ttl)


class TopicHistory:
    """One topic's next offset and its latest publications: at most `size` of them, none
    older than `ttl` seconds (None: no age limit)."""

    __slots__ = ("_kept", "_last", "epoch", "size", "topic", "touched", "ttl")

    def __init__(self, topic: str, epoch: str, size: int, ttl: float | None) -> None:
        check_history_limits(size, ttl)
        self.topic = topic
        self.epoch = epoch
        self.size = size
        self.ttl = ttl
        self._last = 0  # the offset of the latest publication
        # (when published, payload bytes, publication), oldest first
        self._kept: deque[tuple[float, int, Publication]] = deque()
        self.touched = 0.0
        """When a publication or a subscriber last used this stream (`HistoryStore`)."""

    @property
    def position(self) -> StreamPosition:
        """The position of the latest publication (offset 0 before the first)."""
        return StreamPosition(self._last, self.epoch)

    def append(self, data: str | bytes, now: float, size: int | None = None) -> Publication:
        """Give `data` (of `size` payload bytes: its length by default) the next offset
        and keep it, dropping what falls out of the limits."""
        self._last += 1
        publication = Publication(self.topic, data, self._last, self.epoch)
        if self.size:
            self._kept.append((now, len(data) if size is None else size, publication))
            if len(self._kept) > self.size:
                self._kept.popleft()
        self._expire(now)
        return publication

    def since(self, position: StreamPosition, now: float) -> list[Publication] | None:
        """Every publication after `position`, oldest first, if all are still kept; None if
        some are lost (another epoch, too old, or an offset this stream never gave)."""
        self._expire(now)
        if position.epoch != self.epoch or not 0 <= position.offset <= self._last:
            return None
        return self.read(position.offset, len(self._kept), 2**63, now)

    def read(self, after: int, max_count: int, max_bytes: int, now: float) -> list[Publication] | None:
        """The publications after offset `after`, oldest first: at most `max_count` of
        them and `max_bytes` of payload (but at least one), [] if `after` is the latest,
        None if the one after it is no longer kept (or was never given)."""
        self._expire(now)
        if not 0 <= after <= self._last:
            return None
        kept = self._kept
        first_kept = kept[0][2].offset if kept else self._last + 1
        assert first_kept is not None
        if after + 1 < first_kept:
            return None
        batch: list[Publication] = []
        total = 0
        for index in range(after + 1 - first_kept, len(kept)):
            _, size, publication = kept[index]
            if batch and (len(batch) >= max_count or total + size > max_bytes):
                break
            batch.append(publication)
            total += size
        return batch

    def is_empty(self, now: float) -> bool:
        """Whether nothing is kept any more: a stream without subscribers can then go, and
        the topic's next publication starts a new one, in a new epoch."""
        self._expire(now)
        return not self._kept

    def _expire(self, now: float) -> None:
        if self.ttl is None:
            return
        kept = self._kept
        while kept and kept[0][0] <= now - self.ttl:
            kept.popleft()


class HistoryStore:
    """A hub's topic streams in one process, by topic, the least recently used first.

    A stream stays while it keeps a publication, has a subscriber, or was used (published
    to, or a position handed out) within its ttl: so a subscriber that saw a quiet topic
    resumes from its position whole, as long as Redis would keep that topic's position
    too. Without a ttl, at most `MAX_IDLE_STREAMS` streams that keep nothing and have no
    subscriber stay. Each use looks at the two least recently used streams and drops those
    that may go: what the store holds is bounded by the topics used within their ttl.
    """

    def __init__(self, limits_of: Callable[[str], HistoryLimits], in_use: Callable[[str], bool]) -> None:
        self._limits_of = limits_of
        self._in_use = in_use
        self._streams: dict[str, TopicHistory] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def get(self, topic: str) -> TopicHistory | None:
        """`topic`'s stream if it has one, unchanged."""
        return self._streams.get(topic)

    def use(self, topic: str, now: float) -> TopicHistory:
        """`topic`'s stream (a new one, in a new epoch, if it has none), moved to the end."""
        streams = self._streams
        stream = streams.pop(topic, None)
        if stream is None:
            limits = self._limits_of(topic)
            stream = TopicHistory(topic, new_epoch(), limits.size, limits.ttl)
        streams[topic] = stream
        stream.touched = now
        for _ in range(2):
            oldest = next(iter(streams))
            if oldest == topic:
                break
            if not self.forget_if_idle(oldest, now):  # still needed: look again after the others
                streams[oldest] = streams.pop(oldest)
        return stream

    def forget_if_idle(self, topic: str, now: float) -> bool:
        """Drop `topic`'s stream if it may go (see the class docstring); whether it did."""
        stream = self._streams.get(topic)
        if stream is None or self._in_use(topic) or not stream.is_empty(now):
            return False
        idle_long = stream.ttl is not None and stream.touched <= now - stream.ttl
        if not idle_long and (stream.ttl is not None or len(self._streams) <= MAX_IDLE_STREAMS):
            return False
        del self._streams[topic]
        return True


def check_history_limits(size: int, ttl: float | None) -> None:
    """Raise ValueError for a negative `size` or a `ttl` that is not positive."""
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"history_size must be an int of at least 0, not {size!r}")
    if ttl is not None and not ttl > 0:
        raise ValueError(f"history_ttl must be more than 0 seconds (or None), not {ttl!r}")
