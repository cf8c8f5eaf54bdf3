"""`HubConfig`: every option of a hub in one frozen value, checked when built.

config = trio_ws.HubConfig(backend=trio_ws.RedisBackend(url), history_size=1000)
async with trio_ws.open_hub(config, queue_size=16) as hub:  # keywords replace its values
    ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypedDict, Unpack

from .history import HistoryLimits, check_history_limits
from .hub_backend import Backend
from .subscriber_queue import DEFAULT_QUEUE_BYTES, POLICIES, OverflowPolicy

__all__ = ["HubConfig", "HubOptions", "check_queue_options"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class HubConfig:
    """What a hub runs with: its backend and the defaults of its subscriptions."""

    backend: Backend | None = None
    """Reaches other processes (`RedisBackend`, `RedisClusterBackend`); None: this one only."""
    queue_size: int = 64
    """Publications a backed-up subscriber's queue holds at most."""
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    """Payload bytes it holds at most; a replay costs no more than this either."""
    on_overflow: OverflowPolicy = "drop_oldest"
    """What a full queue does: "drop_oldest", "disconnect" (1013) or "latest"."""
    history_size: int = 0
    """Publications each topic keeps for resuming (0: none, and no positions)."""
    history_ttl: float | None = 300.0
    """Seconds a publication is kept at most (None: no age limit)."""
    history_limits: Callable[[str], HistoryLimits | None] | None = None
    """`f(topic)` may give a topic a `HistoryLimits` of its own (None: the hub's)."""

    def __post_init__(self) -> None:
        check_queue_options(self.queue_size, self.on_overflow, self.queue_bytes)
        check_history_limits(self.history_size, self.history_ttl)
        if self.history_limits is not None and not callable(self.history_limits):
            raise TypeError(f"history_limits must be callable, not {self.history_limits!r}")

    def replace(self, **options: Unpack[HubOptions]) -> HubConfig:
        """A copy with `options` changed; an unknown option is a TypeError naming it."""
        unknown = sorted(set(options) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown hub option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **options)

    def limits_of(self, topic: str) -> HistoryLimits:
        """The history `topic` keeps: the hub's, unless `history_limits` says otherwise."""
        limits = self.history_limits(topic) if self.history_limits is not None else None
        if limits is None:
            return HistoryLimits(self.history_size, self.history_ttl)
        if not isinstance(limits, HistoryLimits):
            raise TypeError(f"history_limits must return a HistoryLimits or None, not {limits!r}")
        return limits


class HubOptions(TypedDict, total=False):
    """`HubConfig`'s fields, as keywords of `open_hub` and `HubConfig.replace`."""

    backend: Backend | None
    queue_size: int
    queue_bytes: int
    on_overflow: OverflowPolicy
    history_size: int
    history_ttl: float | None
    history_limits: Callable[[str], HistoryLimits | None] | None


def check_queue_options(queue_size: int, on_overflow: str, queue_bytes: int) -> None:
    """Raise ValueError for a queue bound below 1 or an unknown overflow policy."""
    if type(queue_size) is not int or queue_size < 1:
        raise ValueError(f"queue_size must be an int of at least 1, not {queue_size!r}")
    if type(queue_bytes) is not int or queue_bytes < 1:
        raise ValueError(f"queue_bytes must be an int of at least 1, not {queue_bytes!r}")
    if on_overflow not in POLICIES:
        raise ValueError(f"on_overflow must be one of {', '.join(POLICIES)}, not {on_overflow!r}")
