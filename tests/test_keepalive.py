"""`KeepaliveTimers`: many connections' pings from one task, on Trio's MockClock, and over
real sockets with one server task timing every connection."""

from __future__ import annotations

import trio
import trio.testing

import trio_ws
from trio_ws.keepalive import KeepaliveTimers

from .conftest import RawClient


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
