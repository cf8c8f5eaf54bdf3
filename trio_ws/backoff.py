"""`Backoff`: how long to wait before the next reconnection attempt."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays doubling from `first` up to `cap`, each drawn from [half, all] of the current
    step, so that processes that lost the same server do not come back in lockstep."""

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"the back-off must satisfy 0 < first <= cap, not {first} and {cap}")
        self.first = first
        self.cap = cap
        self._step = first

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the step (up to `cap`)."""
        delay = self._step * random.uniform(0.5, 1.0)
        self._step = min(self._step * 2, self.cap)
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next failure starts from `first` again."""
        self._step = self.first
