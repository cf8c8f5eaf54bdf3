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
from dataclasses import dataclass

from .protocol import Data

__all__ = [
    "StreamPosition",
    "Publication",
    "HistoryLimits",
    "TopicHistory",
    "new_epoch",
    "check_history_limits",
]


def new_epoch() -> str:
    """A fresh epoch token: different from every earlier one."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a subscriber is in a topic's stream: the last offset it saw, in an epoch.
    Offset 0 is the position before the first publication."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication to a topic, with its position (`offset`, `epoch`). From a hub that
    keeps no history (`history_size=0`, or a backend), `offset` is None and `epoch` "".
    """

    topic: str
    data: Data
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

    __slots__ = ("_kept", "_last", "epoch", "size", "topic", "ttl")

    def __init__(self, topic: str, epoch: str, size: int, ttl: float | None) -> None:
        check_history_limits(size, ttl)
        self.topic = topic
        self.epoch = epoch
        self.size = size
        self.ttl = ttl
        self._last = 0  # the offset of the latest publication
        self._kept: deque[tuple[float, Publication]] = deque()

    @property
    def position(self) -> StreamPosition:
        """The position of the latest publication (offset 0 before the first)."""
        return StreamPosition(self._last, self.epoch)

    def append(self, data: Data, now: float) -> Publication:
        """Give `data` the next offset and keep it, dropping what falls out of the limits."""
        self._last += 1
        publication = Publication(self.topic, data, self._last, self.epoch)
        if self.size:
            self._kept.append((now, publication))
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
        first_kept = self._kept[0][1].offset if self._kept else self._last + 1
        assert first_kept is not None
        if position.offset + 1 < first_kept:
            return None
        skip = position.offset + 1 - first_kept
        return [publication for _, publication in list(self._kept)[skip:]]

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


def check_history_limits(size: int, ttl: float | None) -> None:
    """Raise ValueError for a negative `size` or a `ttl` that is not positive."""
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"history_size must be an int of at least 0, not {size!r}")
    if ttl is not None and not ttl > 0:
        raise ValueError(f"history_ttl must be more than 0 seconds (or None), not {ttl!r}")
