"""`KeepaliveTimers`: many connections' pings from one task, on Trio's MockClock, and over
real sockets with one server task timing every connection."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.keepalive import KeepaliveTimers, TimerEntry

from .conftest import RawClient
from .strategies import examples


class Recorder:
    """A connection that wants to be called every `every` seconds, `times` times."""

    def __init__(self, every: float, times: int) -> None:
        self.every, self.times, self.calls = every, times, []

    def keepalive(self, now: float) -> float | None:
        self.calls.append(now)
        return now + self.every if len(self.calls) < self.times else None


async def test_each_entry_is_called_on_time_from_one_task(autojump_clock: trio.testing.MockClock) -> None:
    timers = KeepaliveTimers()
    fast, slow = Recorder(1.0, 5), Recorder(2.5, 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.add(slow, start + 2.5)
        timers.add(fast, start + 1.0)  # earlier than the entry the task sleeps on: wakes it
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert [round(t - start, 6) for t in fast.calls] == [1, 2, 3, 4, 5]
    assert [round(t - start, 6) for t in slow.calls] == [2.5, 5, 7.5]
    assert len(timers) == 0  # both asked to be dropped


async def test_a_discarded_entry_is_never_called_and_the_heap_stays_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = KeepaliveTimers()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        kept = Recorder(1.0, 100)
        timers.add(kept, trio.current_time() + 1)
        gone = []
        for _ in range(1000):  # churn: each connection closes before its first ping
            recorder = Recorder(1.0, 100)
            gone.append(recorder)
            timers.discard(timers.add(recorder, trio.current_time() + 10))
            assert len(timers._heap) <= 2 * len(timers) + 1
        await trio.sleep(15.5)  # past the 15th call: not a tie with it
        nursery.cancel_scope.cancel()
    assert all(not recorder.calls for recorder in gone)
    assert len(kept.calls) == 15 and len(timers) == 1


async def test_one_server_task_pings_every_idle_connection() -> None:
    """Raw peers answer nothing by themselves: each sees its pings, all from the server's
    one timer task; one that never answers is failed with 1011 after the timeout."""

    async def idle(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()

    from trio_ws.frames import Opcode

    async with trio_ws.open_server(idle, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.3) as server:
        peers = [await RawClient.connect(server.port) for _ in range(20)]
        with trio.fail_after(10):
            while len(server.connections) < 20:
                await trio.sleep(0.01)
        assert len(server.keepalive) == 20
        with trio.fail_after(10):
            for peer in peers:  # no pong from anyone: each sees a ping, then a 1011 close
                while not any(frame.opcode is Opcode.CLOSE for frame in peer.frames()):
                    peer.received += await peer.stream.receive_some()
                kinds = [frame.opcode for frame in peer.frames()]
                assert kinds[0] is Opcode.PING and kinds[-1] is Opcode.CLOSE, kinds
                assert peer.frames()[-1].payload[:2] == (1011).to_bytes(2, "big")
                await peer.stream.aclose()
            while server.connections:
                await trio.sleep(0.05)
        assert len(server.keepalive) == 0


class StepCounter(trio.abc.Instrument):
    """Counts the steps of one task."""

    def __init__(self, name: str) -> None:
        self.name, self.steps = name, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.name):
            self.steps += 1


async def test_entries_due_after_the_one_it_sleeps_on_do_not_wake_the_task(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A stream of short connections (each added, then discarded) must not cost the timer
    task a step each: only an entry due before its wake-up wakes it."""
    timers = KeepaliveTimers()
    counter = StepCounter("KeepaliveTimers.run")
    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timers.run)
            # The task sleeps until 5 s from now; the entry it sleeps on is discarded, and
            # each new entry is then alone in the heap.
            entry = timers.add(Recorder(1.0, 1), trio.current_time() + 5)
            await trio.testing.wait_all_tasks_blocked()
            timers.discard(entry)
            asleep = counter.steps
            for i in range(100):
                timers.discard(timers.add(Recorder(1.0, 1), trio.current_time() + 6 + i))
                await trio.lowlevel.checkpoint()
            assert counter.steps == asleep, "a later entry woke the timer task"
            late, early = Recorder(1.0, 1), Recorder(1.0, 1)
            timers.add(late, trio.current_time() + 7)
            timers.add(early, trio.current_time() + 1)  # before its wake-up: it must wake
            mock_clock.jump(2)
            await trio.testing.wait_all_tasks_blocked()
            assert len(early.calls) == 1 and not late.calls
            mock_clock.jump(6)
            await trio.testing.wait_all_tasks_blocked()
            assert len(late.calls) == 1
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)


# ---- a model over arbitrary adds, discards and sleeps ------------------------------------

TIMER_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 6), st.integers(1, 4), st.integers(1, 4)),
        st.tuples(st.just("discard"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("sleep"), st.integers(1, 5), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=examples(100), deadline=None)
@given(steps=TIMER_STEPS)
def test_every_live_entry_is_called_on_time_and_none_after_its_discard(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """Entries are due at whole seconds plus a quarter, and the test acts at whole seconds
    plus a half, so no call ties with an action. Each recorder's calls must be exactly
    its due time and each `every` after it, `times` in all, stopping at its discard."""

    async def main() -> None:
        clock_start = trio.current_time()
        timers = KeepaliveTimers()
        added: list[tuple[Recorder, float, float | None, TimerEntry]] = []  # recorder, due, discarded at
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timers.run)
            await trio.sleep(0.5)
            for kind, a, b, c in steps:
                now = trio.current_time()
                if kind == "add":
                    recorder = Recorder(float(b), c)
                    due = float(int(now - clock_start)) + a + 1.25 + clock_start  # in the future
                    added.append((recorder, due, None, timers.add(recorder, due)))
                elif kind == "discard" and added:
                    recorder, due, gone, entry = added[a % len(added)]
                    if gone is None:
                        timers.discard(entry)
                        added[a % len(added)] = (recorder, due, now, entry)
                elif kind == "sleep":
                    await trio.sleep(a)
            await trio.sleep(30)  # everything still live runs out
            end = trio.current_time()
            nursery.cancel_scope.cancel()
        for recorder, due, gone, _ in added:
            stop = end if gone is None else gone
            expected = [due + i * recorder.every for i in range(recorder.times)]
            expected = [t for t in expected if t < stop]
            assert [round(t, 6) for t in recorder.calls] == [round(t, 6) for t in expected]
        assert len(timers) == 0 or all(gone is not None or len(r.calls) < r.times for r, _, gone, _ in added)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
