"""`KeepaliveTimers`: the keepalive pings of many connections from one task.

A sleeping task per connection costs its memory whether or not it ever wakes; here each
connection is one entry in a heap, and the task sleeps until the earliest is due. What is
due (a ping, or the check that its pong came in time) is the connection's to say:
`ConnectionCore.keepalive(now)` does it and answers when to call again. A closing connection
discards its entry, so nothing of it stays behind until its next ping would have been due.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol

import trio

__all__ = ["KeepaliveTimers", "Pinged", "TimerEntry"]


class Pinged(Protocol):
    """What the timers ask of a connection."""

    def keepalive(self, now: float) -> float | None:
        """Do what is due at `now`; when to be called next, or None to be dropped."""


class TimerEntry:
    """One connection's place in the heap: when it is due, and in which order it came."""

    __slots__ = ("connection", "due", "order")

    def __init__(self, due: float, order: int, connection: Pinged | None) -> None:
        self.due, self.order, self.connection = due, order, connection

    def __lt__(self, other: TimerEntry) -> bool:
        return (self.due, self.order) < (other.due, other.order)


class KeepaliveTimers:
    """One heap of timer entries; `run` calls each connection's keepalive on time."""

    def __init__(self) -> None:
        self._heap: list[TimerEntry] = []
        self._order = itertools.count()  # ties never compare the connections
        self._discarded = 0  # entries in the heap whose connection is gone
        self._changed = trio.lowlevel.ParkingLot()  # run() waiting for an earlier entry
        # When run() wakes by itself (inf: it waits for an entry). An entry due later needs
        # no wake-up: run() looks at the heap again when it wakes, so a stream of short
        # connections costs the task no step each.
        self._wakes_at = float("inf")

    def __len__(self) -> int:
        """Connections with a timer."""
        return len(self._heap) - self._discarded

    def add(self, connection: Pinged, due: float) -> TimerEntry:
        """Call `connection.keepalive` at `due`, and whenever it asks after that; the
        entry returned is what `discard` takes."""
        entry = TimerEntry(due, next(self._order), connection)
        heapq.heappush(self._heap, entry)
        if due < self._wakes_at:
            self._changed.unpark_all()
        return entry

    def discard(self, entry: TimerEntry) -> None:
        """Forget a connection's timer (it is closing). The heap is rebuilt once half of
        it is discarded entries, so it stays within twice the connections it times."""
        if entry.connection is None:
            return
        entry.connection = None
        self._discarded += 1
        if self._discarded * 2 > len(self._heap):
            self._heap = [live for live in self._heap if live.connection is not None]
            heapq.heapify(self._heap)
            self._discarded = 0

    async def run(self) -> None:
        """Until cancelled: wait for the earliest entry, run it, put it back if it asks."""
        while True:
            heap = self._heap  # discard() may rebuild it while this waits
            if not heap:
                self._wakes_at = float("inf")
                await self._changed.park()
                continue
            entry = heap[0]
            now = trio.current_time()
            if entry.due > now:
                self._wakes_at = entry.due  # an entry discarded meanwhile still wakes it, harmlessly
                with trio.move_on_at(entry.due):
                    await self._changed.park()
                continue
            heapq.heappop(heap)
            connection = entry.connection
            if connection is None:
                self._discarded -= 1
                continue
            again = connection.keepalive(now)
            if again is None:
                entry.connection = None  # out of the heap: a later discard() changes nothing
            else:
                entry.due, entry.order = again, next(self._order)
                heapq.heappush(heap, entry)
