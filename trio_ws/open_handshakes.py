"""`OpenHandshakes`: a server's opening handshakes in progress, each cut off at
`open_timeout`, by one task.

A trio deadline per handshake (`move_on_after`) costs the scheduler a heap entry per
connection, and a stale one to clear away once the handshake is done: with its cancel
scope, about a twentieth of a short connection's whole cost. A server's handshakes all
have the same timeout, so they fall due in the order they began: here each is an entry at
the end of a queue, and one task sleeps until the oldest is due. The same queue is what
`cancel_all()` (the server's `aclose()`) cancels: every handshake still in progress.
"""

from __future__ import annotations

import collections

import trio

from .wakeup import Wakeup

__all__ = ["OpenHandshakes", "Opening"]


class Opening:
    """One handshake in the queue: when it is due, and the scope that cancels it (None
    once it has ended)."""

    __slots__ = ("due", "scope")

    def __init__(self, due: float, scope: trio.CancelScope) -> None:
        self.due = due
        self.scope: trio.CancelScope | None = scope


class OpenHandshakes:
    """The handshakes in progress, oldest first, and the task that cuts them off."""

    def __init__(self, timeout: float | None) -> None:
        self._timeout = float("inf") if timeout is None else timeout
        self._queue: collections.deque[Opening] = collections.deque()
        self._live = 0  # entries in the queue that have not ended
        self._added = Wakeup()  # run() waiting for a first handshake

    def __len__(self) -> int:
        """Handshakes in progress (a cancelled one until its task has left it)."""
        return self._live

    @property
    def held(self) -> int:
        """Entries the queue holds, ended ones included: never more than twice the
        handshakes in progress, plus 65."""
        return len(self._queue)

    def begin(self, scope: trio.CancelScope) -> Opening:
        """A handshake begins in `scope`: cancelled at the timeout, unless `end` comes first."""
        queue = self._queue
        while queue and queue[0].scope is None:  # ended already: most end in the order they began
            queue.popleft()
        if len(queue) > 2 * self._live + 64:
            # One slow handshake at the front holds back the ended ones behind it (for up to
            # open_timeout, or for good without one): dropped here, so that the queue stays
            # within twice the handshakes in progress.
            live = [opening for opening in queue if opening.scope is not None]
            queue.clear()
            queue.extend(live)
        opening = Opening(trio.current_time() + self._timeout, scope)
        queue.append(opening)
        self._live += 1
        self._added.wake()
        return opening

    def end(self, opening: Opening) -> None:
        """The handshake is over, one way or another: it is no longer cut off."""
        if opening.scope is not None:
            opening.scope = None
            self._live -= 1

    def cancel_all(self) -> None:
        """Cancel every handshake in progress (the server is closing)."""
        for opening in self._queue:
            if opening.scope is not None:
                opening.scope.cancel()

    async def run(self) -> None:
        """Until cancelled: cancel each handshake still in progress when it falls due.

        Waits for the oldest entry, which is the first due (all have the same timeout).
        """
        queue = self._queue
        while True:
            self._cut_off(trio.current_time())
            if queue:
                await trio.sleep_until(queue[0].due)
            else:
                await self._added.wait()

    def _cut_off(self, now: float) -> None:
        """Cancel the handshakes due by `now`, and let go of every entry at the front that
        is due or has ended."""
        queue = self._queue
        while queue and (queue[0].scope is None or queue[0].due <= now):
            opening = queue.popleft()
            if opening.scope is not None:
                opening.scope.cancel()  # its task ends it, as it leaves
