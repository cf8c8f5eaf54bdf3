"""Steady numbered traffic and what became of it: for outage tests, which must measure
under load, not at rest."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Delivery:
    """Messages 0, 1, 2... sent one way: when each was sent, and when each arrived."""

    sent_at: list[float] = field(default_factory=list)
    arrived_at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    out_of_order: int = 0
    highest: int = -1

    def send(self, now: float) -> int:
        """Record a send; returns the number the message carries."""
        self.sent_at.append(now)
        return len(self.sent_at) - 1

    def arrive(self, number: int, now: float) -> None:
        if number in self.arrived_at:
            self.duplicates += 1
            return
        if number < self.highest:
            self.out_of_order += 1
        self.highest = max(self.highest, number)
        self.arrived_at[number] = now

    def lost(self) -> list[int]:
        return [n for n in range(len(self.sent_at)) if n not in self.arrived_at]

    def recovery_after(self, usable_at: float, until: float) -> float:
        """Seconds from `usable_at` until delivery resumed for good: the arrival of the
        first message after the last one lost among those sent in [usable_at, until)."""
        window = [n for n, t in enumerate(self.sent_at) if usable_at <= t < until]
        if not window:
            raise AssertionError(f"nothing was sent between {usable_at:.2f} and {until:.2f}")
        lost = [n for n in window if n not in self.arrived_at]
        first_good = lost[-1] + 1 if lost else window[0]
        if first_good not in self.arrived_at:
            first, last = self.sent_at[lost[0]], self.sent_at[lost[-1]]
            raise AssertionError(
                f"delivery never resumed after {usable_at:.2f} (until {until:.2f}): "
                f"{len(lost)} of {len(window)} lost, sent {first:.2f}..{last:.2f}; "
                f"arrived in the window: {sorted(n for n in window if n in self.arrived_at)[:10]}"
            )
        return self.arrived_at[first_good] - usable_at

    def lost_outside(self, outages: list[tuple[float, float]]) -> list[int]:
        """The messages lost that were sent outside every (start, end) window."""
        return [n for n in self.lost() if not any(a <= self.sent_at[n] < b for a, b in outages)]
