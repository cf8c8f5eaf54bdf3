"""`SubscriberQueue`: the publications waiting for one backed-up hub subscriber, bounded
by count and by bytes, with the policy that decides what an overflow does."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import trio

__all__ = ["SubscriberQueue", "OverflowPolicy", "DEFAULT_QUEUE_BYTES", "POLICIES"]

OverflowPolicy = Literal["drop_oldest", "disconnect", "latest"]
"""What a full queue does: drop its oldest, disconnect the client (1013), or keep only the newest
publication of each topic (conflation)."""
POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "disconnect", "latest")

DEFAULT_QUEUE_BYTES = 4 * 2**20
"""Payload bytes a subscriber's queue holds at most, by default (as `max_queue_bytes`)."""

Item = TypeVar("Item")


class SubscriberQueue(Generic[Item]):
    """A backed-up subscriber's items, oldest first: at most `size` of them and `max_bytes`
    of payload (a single larger one is still kept alone), each put with its payload size.
    Past either limit, `"drop_oldest"` drops the oldest, `"disconnect"` refuses, and
    `"latest"` keeps only the newest item of each topic (in the place of the one it
    replaces), then drops the oldest if it must."""

    __slots__ = (
        "_bytes",
        "_closed",
        "_items",
        "_next_key",
        "_ready",
        "dropped",
        "max_bytes",
        "policy",
        "size",
    )

    def __init__(self, size: int, max_bytes: int, policy: OverflowPolicy) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.policy = policy
        self.dropped = 0
        """Items dropped (or, under "latest", replaced by a newer one)."""
        self._items: dict[object, tuple[Item, int]] = {}  # by topic under "latest"
        self._next_key = 0
        self._bytes = 0
        self._closed = False
        self._ready: trio.Event | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        """The payload bytes queued."""
        return self._bytes

    def is_full(self) -> bool:
        """Whether the next item would overflow (the last limit reached: count or bytes)."""
        return len(self._items) >= self.size or self._bytes >= self.max_bytes

    def put(self, topic: str, item: Item, size: int) -> bool:
        """Queue `item` (of `size` payload bytes); False (having queued nothing) if it
        would overflow under "disconnect"."""
        items = self._items
        full = items and (len(items) >= self.size or self._bytes + size > self.max_bytes)
        if full and self.policy == "disconnect":
            return False
        key: object = topic
        if self.policy == "latest":
            replaced = items.get(topic)
            if replaced is not None:
                self._bytes -= replaced[1]
                self.dropped += 1
        else:
            key = self._next_key
            self._next_key += 1
        items[key] = (item, size)
        self._bytes += size
        while len(items) > 1 and (len(items) > self.size or self._bytes > self.max_bytes):
            oldest = next(iter(items))
            if oldest == key:  # never the one just queued: it goes behind the others
                items[key] = items.pop(key)
                continue
            self._bytes -= items.pop(oldest)[1]
            self.dropped += 1
        if self._ready is not None:
            self._ready.set()
        return True

    def peek(self) -> Item | None:
        """The oldest item, left in place, or None if there is none."""
        if not self._items:
            return None
        return self._items[next(iter(self._items))][0]

    def get_nowait(self) -> Item | None:
        """The oldest item, or None if there is none."""
        if not self._items:
            return None
        item, size = self._items.pop(next(iter(self._items)))
        self._bytes -= size
        return item

    async def get(self) -> Item | None:
        """The oldest item, waiting for one; None once closed."""
        while not self._items:
            if self._closed:
                return None
            self._ready = trio.Event()
            await self._ready.wait()
        return self.get_nowait()

    def close(self) -> None:
        """Drop what is queued and end `get()`."""
        self._closed = True
        self._items.clear()
        self._bytes = 0
        if self._ready is not None:
            self._ready.set()
