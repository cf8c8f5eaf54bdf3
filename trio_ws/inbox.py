"""`Inbox`: the messages a connection received and `recv()` has not taken yet.

The reader puts what the protocol parsed; `recv()` takes it. The inbox holds the limits
(`max_queue` messages, `max_queue_bytes`) that pause the reader, and the two kinds of
waiter: a `recv()` waiting for a message, and the reader waiting for room. Its parking lots
are made on first use: most connections never need the reader's.
"""

from __future__ import annotations

import sys
from collections import deque

import trio

from .messages import Fragment

__all__ = ["Inbox", "Item", "queue_marks"]

Item = str | bytes | Fragment
"""What the inbox holds: a whole message (`str` or `bytes`), or a `Fragment` of one that arrived while the
application streamed."""


class Inbox:
    """Received messages in order, bounded by high- and low-water marks."""

    __slots__ = (
        "_getters",
        "_high",
        "_high_bytes",
        "_items",
        "_low",
        "_low_bytes",
        "_room",
        "closed",
        "discarded",
        "size",
    )

    def __init__(self, max_queue: int | tuple[int, int | None] | None, max_queue_bytes: int | None) -> None:
        self._items: deque[Item] | None = None  # made on the first message: 0.6 KiB empty
        self.size = 0
        """len() of the items held: bytes, or characters of text."""
        self.discarded = 0
        """Messages dropped past `max_queue` while our close frame was out."""
        self.closed = False
        """No message will come any more: the protocol is done."""
        self._high, self._low = queue_marks(max_queue)
        self._high_bytes = sys.maxsize if max_queue_bytes is None else max_queue_bytes
        self._low_bytes = self._high_bytes // 4
        self._getters: trio.lowlevel.ParkingLot | None = None  # recv() waiting for a message
        self._room: trio.lowlevel.ParkingLot | None = None  # the reader waiting for room

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    @property
    def full(self) -> bool:
        """At a high mark: the reader stops parsing until `recv()` makes room."""
        items = self._items
        return items is not None and (len(items) >= self._high or self.size >= self._high_bytes)

    @property
    def low(self) -> bool:
        """At or below both low marks: from here every `take_nowait()` wakes the reader."""
        return len(self) <= self._low and self.size <= self._low_bytes

    def put(self, item: Item, *, closing: bool = False) -> None:
        """Add a received item. While `closing` (our close frame is out) an item past
        `max_queue` is dropped instead, so that the closing handshake is not stuck behind
        messages the handler chose not to read."""
        items = self._items
        if items is None:
            items = self._items = deque()
        elif closing and len(items) >= self._high:
            self.discarded += 1
            return
        items.append(item)
        self.size += len(item)

    def wake_getters(self) -> bool:
        """Wake every waiting `recv()`: after a batch of `put()`s, or to hand over the socket.
        Whether one was."""
        getters = self._getters
        if not getters:  # none made yet, or nobody parked in it
            return False
        getters.unpark_all()
        return True

    def take_nowait(self) -> Item | None:
        """The first item, or None if there is none; wakes the reader below the low marks."""
        items = self._items
        if not items:  # None or empty
            return None
        item = items.popleft()
        self.size -= len(item)
        room = self._room
        if room and len(items) <= self._low and self.size <= self._low_bytes:  # one is parked
            room.unpark_all()
        return item

    async def wait(self) -> None:
        """`recv()`'s wait: until a message comes, the inbox closes, or the reader hands
        the socket over (`wake_getters`). A cancelled wait takes nothing."""
        if self._getters is None:
            self._getters = trio.lowlevel.ParkingLot()
        await self._getters.park()

    async def wait_for_room(self) -> None:
        """The reader's wait while the inbox is full (or until `wake_reader()`)."""
        if self._room is None:
            self._room = trio.lowlevel.ParkingLot()
        await self._room.park()

    def wake_reader(self) -> None:
        """Let the reader look again: our close frame went out, so it must read the peer's."""
        if self._room:  # a lot with the reader parked
            self._room.unpark_all()

    def close(self) -> None:
        """No more messages will come: wake every waiter; `take()` drains what is left."""
        self.closed = True
        self.wake_getters()
        self.wake_reader()


def queue_marks(max_queue: int | tuple[int, int | None] | None) -> tuple[int, int]:
    """The (high, low) water marks for `max_queue`, as `websockets` reads it: an int is
    the high mark with a quarter of it as the low one; None means no limit."""
    if max_queue is None:
        return sys.maxsize, sys.maxsize
    high, low = (max_queue, None) if isinstance(max_queue, int) else max_queue
    low = high // 4 if low is None else low
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"max_queue needs 1 <= high and 0 <= low <= high, not {max_queue!r}")
    return high, low
