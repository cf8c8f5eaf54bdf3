"""`Wakeup`: one task waits until another wakes it, at trio's lowest level."""

from __future__ import annotations

import trio

__all__ = ["Wakeup"]


class Wakeup:
    """A wait for one task, woken by any other: a ParkingLot or an Event costs about twice
    as much per wake, and the tasks that use this are woken up to once per scheduler pass."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        """Wait until `wake()` is called (cancellation ends the wait, as at any checkpoint)."""
        self._waiting = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def wake(self) -> None:
        """Wake the task waiting, if one is."""
        task = self._waiting
        if task is not None:
            self._waiting = None
            trio.lowlevel.reschedule(task)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiting = None
        return trio.lowlevel.Abort.SUCCEEDED
