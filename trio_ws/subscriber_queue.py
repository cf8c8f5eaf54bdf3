"""`SubscriberQueue`: the publications waiting for one backed-up hub subscriber, bounded
by count and by bytes, with the policy that decides what an overflow does."""

from __future__ import annotations

from typing import Literal

import trio

from .prepared import PreparedMessage

__all__ = ["SubscriberQueue", "OverflowPolicy", "DEFAULT_QUEUE_BYTES"]

#: What a full queue does: drop its oldest, disconnect the client (1013), or keep only the
#: newest publication of each topic (conflation).
OverflowPolicy = Literal["drop_oldest", "disconnect", "latest"]

#: Payload bytes a subscriber's queue holds at most, by default (as `max_queue_bytes`).
DEFAULT_QUEUE_BYTES = 4 * 2**20


class SubscriberQueue:
    """A backed-up subscriber's publications, oldest first: at most `size` of them and
    `max_bytes` of payload (a single larger one is still kept alone). Past either limit,
    `"drop_oldest"` drops the oldest, `"disconnect"` refuses, and `"latest"` keeps only the
    newest publication of each topic (in the place of the one it replaces), then drops the
    oldest if it must."""

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
        #: Publications dropped (or, under "latest", replaced by a newer one).
        self.dropped = 0
        self._items: dict[object, PreparedMessage] = {}  # by topic under "latest"
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

    def put(self, topic: str, frames: PreparedMessage) -> bool:
        """Queue `frames`; False (having queued nothing) if it would overflow under
        "disconnect"."""
        items = self._items
        size = len(frames.payload)
        full = items and (len(items) >= self.size or self._bytes + size > self.max_bytes)
        if full and self.policy == "disconnect":
            return False
        key: object = topic
        if self.policy == "latest":
            replaced = items.get(topic)
            if replaced is not None:
                self._bytes -= len(replaced.payload)
                self.dropped += 1
        else:
            key = self._next_key
            self._next_key += 1
        items[key] = frames
        self._bytes += size
        while len(items) > 1 and (len(items) > self.size or self._bytes > self.max_bytes):
            oldest = next(iter(items))
            if oldest == key:  # never the one just queued: it goes behind the others
                items[key] = items.pop(key)
                continue
            self._bytes -= len(items.pop(oldest).payload)
            self.dropped += 1
        if self._ready is not None:
            self._ready.set()
        return True

    async def get(self) -> PreparedMessage | None:
        """The oldest publication, waiting for one; None once closed."""
        while not self._items:
            if self._closed:
                return None
            self._ready = trio.Event()
            await self._ready.wait()
        key = next(iter(self._items))
        frames = self._items.pop(key)
        self._bytes -= len(frames.payload)
        return frames

    def close(self) -> None:
        """Drop what is queued and end `get()`."""
        self._closed = True
        self._items.clear()
        self._bytes = 0
        if self._ready is not None:
            self._ready.set()
