"""`ReaderStarts`: a server's connections' readers started one scheduler pass late, by one
task for all of them.

Where a `recv()` may read the socket itself, a connection needs a reader task only while
its handler is elsewhere. Most handlers go straight to `recv()`. So a new connection does
not start its reader: it asks this task to look one pass later (after the step in which
the handler began), and by then most handlers are reading, and no reader is ever started.
A handler that does anything else first (sends, sleeps, awaits a database) gets its reader
then, one pass late, as it would have had it anyway. One task woken once per pass in which
connections began costs less than a task per connection that starts only to end.
"""

from __future__ import annotations

from typing import Protocol

from .wakeup import Wakeup

__all__ = ["NeedsReader", "ReaderStarts"]


class NeedsReader(Protocol):
    """What the task asks of a connection."""

    def ensure_reader(self) -> None:
        """Start the reader, unless someone reads the socket already (or it is closed)."""


class ReaderStarts:
    """Connections waiting for their look, and the task that takes them in turn."""

    def __init__(self) -> None:
        self._due: list[NeedsReader] = []
        self._added = Wakeup()

    def add(self, connection: NeedsReader) -> None:
        """Look at `connection` in the next scheduler pass, not in this one: the task that
        calls this has yet to reach its first wait, where the handler may be in `recv()`."""
        self._due.append(connection)
        self._added.wake()

    async def run(self) -> None:
        """Until cancelled: wait for connections, and start the readers they need."""
        while True:
            if not self._due:
                await self._added.wait()
                continue
            due, self._due = self._due, []
            for connection in due:
                connection.ensure_reader()
            # Not held while this waits: a connection closed meanwhile is freed at once.
            del due, connection  # (`due` is never empty here, so `connection` is bound)
