"""What a hub needs from a backend that reaches other processes, and what a backend may
call on the hub (`RedisBackend` and `RedisClusterBackend` are the backends trio_ws has)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from .history import Publication, StreamPosition
from .messages import Data

__all__ = ["Receiver", "Backend", "HistoryBackend", "PresenceBackend"]


class Receiver(Protocol):
    """The hub, as a backend sees it."""

    def deliver_locally(self, topic: str, message: Data, publication: Publication | None = None) -> int:
        """Offer a publication from another process to this process's subscribers."""


class Backend(Protocol):
    """What a hub needs to reach other processes (see `RedisBackend`). Topics reach it
    checked (`trio_ws.topics.check_topic`)."""

    async def run(self, hub: Receiver, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Connect (raising a clear error if that fails), call `task_status.started()`,
        then deliver remote publishes with `hub.deliver_locally` until cancelled."""

    async def subscribe(self, topic: str) -> None:
        """Receive publishes to `topic` from now on (returns once that is in force)."""

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving publishes to `topic`."""

    async def publish(self, topic: str, message: Data) -> None:
        """Send a publish to the other processes; never raises for a lost connection."""

    async def flush(self) -> None:
        """Return once the publishes sent so far have left this process (or cannot)."""


@runtime_checkable
class HistoryBackend(Backend, Protocol):
    """A backend that keeps each topic's history and positions for every process (Redis
    Streams in `RedisBackend`); a hub with `history_size` needs one."""

    async def append(self, topic: str, message: Data, size: int, ttl: float | None) -> Publication | None:
        """Give `message` the topic's next position, keep it in the history and publish it
        to every process, this one included (`hub.deliver_locally` with the publication);
        None if that could not be done (counted by the backend, never raised)."""

    async def position(
        self, topic: str, since: StreamPosition | None, ttl: float | None
    ) -> tuple[StreamPosition, bool]:
        """The topic's position now, and whether every publication after `since` is still
        kept (False without `since`); raises ConnectionError if the backend cannot tell."""

    async def read(
        self, topic: str, after: StreamPosition, max_count: int, max_bytes: int, ttl: float | None
    ) -> tuple[StreamPosition, list[Publication] | None]:
        """The topic's position now, and the publications after `after`, oldest first: at
        most `max_count` and `max_bytes` (but at least one); [] if `after` is the latest;
        None if the one after it is no longer kept or the epoch is another. Raises
        ConnectionError if it cannot tell."""


@runtime_checkable
class PresenceBackend(Backend, Protocol):
    """A backend that knows who is subscribed where, across processes (`RedisBackend`)."""

    async def join(self, topic: str, member: str, info: str) -> None:
        """Add `member`, with `info` (JSON), to `topic`'s presence until `leave`."""

    async def leave(self, topic: str, member: str) -> None:
        """Remove `member` from `topic`'s presence."""

    async def members(self, topic: str) -> dict[str, str]:
        """Every process's members of `topic`, to their info (JSON)."""
