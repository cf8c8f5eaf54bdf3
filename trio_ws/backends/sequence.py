"""Numbered publishes: each process numbers its publishes per topic, so that a receiving
process can tell a publish it missed (a gap) from one it already has (a duplicate).

Both sides keep bounded state. A publisher numbers at most `MAX_NUMBERED_TOPICS` topics;
past that it starts over under a fresh origin, which receivers see as a new publisher. A
receiver follows at most `MAX_ORIGINS_PER_TOPIC` publishers per topic; past that it starts
over, and the first publish from each after that is taken as it comes.
"""

from __future__ import annotations

import os

__all__ = ["Numbering", "GapTracker", "ORIGIN_SIZE", "MAX_NUMBERED_TOPICS", "MAX_ORIGINS_PER_TOPIC"]

ORIGIN_SIZE = 16  # hex characters naming a publishing process
MAX_NUMBERED_TOPICS = 2**16
MAX_ORIGINS_PER_TOPIC = 1024


def _new_origin() -> bytes:
    return os.urandom(ORIGIN_SIZE // 2).hex().encode()


class Numbering:
    """The publishing side: the publishes to each topic are numbered 1, 2, 3... under `origin`."""

    def __init__(self) -> None:
        self.origin = _new_origin()
        self._former_origin = b""
        self._next: dict[str, int] = {}

    def next_number(self, topic: str) -> int:
        """The number the next publish to `topic` carries (the same until `consume`)."""
        number = self._next.get(topic)
        if number is None:
            if len(self._next) >= MAX_NUMBERED_TOPICS:
                self._former_origin, self.origin = self.origin, _new_origin()
                self._next.clear()
            number = self._next[topic] = 1
        return number

    def consume(self, topic: str) -> None:
        """The publish numbered `next_number(topic)` went out (or may have): move on."""
        self._next[topic] = self.next_number(topic) + 1

    def is_own(self, origin: bytes) -> bool:
        """Whether `origin` is this process's (now or before it started over)."""
        return origin == self.origin or origin == self._former_origin


class GapTracker:
    """The receiving side: the last number seen per topic and origin."""

    def __init__(self) -> None:
        self._last: dict[str, dict[bytes, int]] = {}

    def check(self, topic: str, origin: bytes, number: int) -> int | None:
        """How many publishes from `origin` to `topic` were missed just before this one, or
        None if this one was seen already (a duplicate, to be dropped)."""
        last_of = self._last.setdefault(topic, {})
        last = last_of.get(origin)
        if last is not None and number <= last:
            return None
        if last is None and len(last_of) >= MAX_ORIGINS_PER_TOPIC:
            last_of.clear()
        last_of[origin] = number
        return 0 if last is None else number - last - 1

    def forget(self, topic: str) -> None:
        """Nobody here wants `topic` any more: what arrives later starts afresh."""
        self._last.pop(topic, None)
