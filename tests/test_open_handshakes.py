"""`OpenHandshakes`: every opening handshake cut off at `open_timeout` by one task, on
Trio's MockClock (a model over arbitrary steps, and the bound of its queue), and over real
sockets while healthy handshakes go on."""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.open_handshakes import OpenHandshakes, Opening

from .conftest import HANDSHAKE, RawClient
from .strategies import examples

TIMEOUT = 4.25  # steps come at whole seconds plus a half: no due time ties with a step

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("begin"), st.just(0)),
        st.tuples(st.just("end"), st.integers(0, 40)),
        st.tuples(st.just("sleep"), st.integers(1, 6)),
        st.tuples(st.just("cancel all"), st.just(0)),
    ),
    max_size=50,
)


@dataclass
class Handshake:
    """The model's view of one handshake."""

    began: float
    scope: trio.CancelScope
    opening: Opening
    ended: float | None = None  # when its task called end()
    cut: float | None = None  # when it should have been cancelled, if it should

    def ends(self, now: float, handshakes: OpenHandshakes) -> None:
        """Its task leaves the handshake (done, or cancelled) and says so."""
        if self.ended is None:
            self.ended = now
            handshakes.end(self.opening)


@settings(max_examples=examples(100), deadline=None)
@given(steps=STEPS)
def test_each_handshake_is_cut_off_at_its_timeout_unless_it_ended_first(steps: list[tuple[str, int]]) -> None:
    """The model: a handshake begun at t is cancelled at t + TIMEOUT, unless it ended
    before; `cancel_all` cancels every one not ended. A cancelled handshake's task ends it
    at the next step, as the server's does. Checked after every step: which scopes are
    cancelled, how many are in progress, and the bound on what the queue holds."""

    async def main() -> None:
        handshakes = OpenHandshakes(TIMEOUT)
        model: list[Handshake] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshakes.run)
            await trio.sleep(0.5)
            for kind, value in steps:
                now = trio.current_time()
                for handshake in model:  # the tasks of cancelled handshakes have left
                    if handshake.cut is not None:
                        handshake.ends(now, handshakes)
                if kind == "begin":
                    scope = trio.CancelScope()
                    model.append(Handshake(now, scope, handshakes.begin(scope)))
                elif kind == "end" and model:
                    model[value % len(model)].ends(now, handshakes)
                elif kind == "sleep":
                    await trio.sleep(value)
                elif kind == "cancel all":
                    handshakes.cancel_all()
                    for handshake in model:
                        if handshake.ended is None and handshake.cut is None:
                            handshake.cut = now
                await trio.lowlevel.checkpoint()  # the task looks at the queue
                now = trio.current_time()
                for handshake in model:
                    due = handshake.began + TIMEOUT
                    if (
                        handshake.cut is None
                        and due <= now
                        and (handshake.ended is None or handshake.ended > due)
                    ):
                        handshake.cut = due
                    assert handshake.scope.cancel_called == (handshake.cut is not None), (handshake, now)
                assert len(handshakes) == sum(h.ended is None for h in model)
                assert handshakes.held <= 2 * len(handshakes) + 65
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_handshake_stuck_at_the_front_holds_back_no_more_than_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a timeout, one handshake that never ends sits at the front of the queue for
    good; thousands that end behind it must not pile up there."""
    handshakes = OpenHandshakes(None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handshakes.run)
        stuck = trio.CancelScope()
        handshakes.begin(stuck)
        most = 0
        for _ in range(5000):
            handshakes.end(handshakes.begin(trio.CancelScope()))
            most = max(most, handshakes.held)
            if _ % 100 == 0:
                await trio.sleep(1)
        assert len(handshakes) == 1 and not stuck.cancel_called
        assert most <= 2 * 2 + 65, most
        nursery.cancel_scope.cancel()


async def test_silent_connections_are_cut_off_on_time_while_others_handshake() -> None:
    """Twenty connections that never send a byte, among a hundred that upgrade: each silent
    one is dropped at open_timeout (not before, not much after), and every upgrade works."""
    async with trio_ws.open_server(lambda ws: ws.wait_closed(), "127.0.0.1", 0, open_timeout=0.5) as server:
        started = trio.current_time()
        silent = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(20)]
        for _ in range(100):
            raw = await RawClient.connect(server.port)
            await raw.stream.aclose()
        assert len(server.handshakes) >= 20
        dropped_at = []
        with trio.fail_after(3):
            for stream in silent:
                assert await stream.receive_some() == b""  # closed by the server
                dropped_at.append(trio.current_time() - started)
        assert min(dropped_at) >= 0.5 and max(dropped_at) < 1.5, dropped_at
        assert len(server.handshakes) == 0
        for stream in silent:
            await stream.aclose()


async def test_a_handshake_cancelled_after_its_last_checkpoint_never_sends_its_101() -> None:
    """The race lost on purpose: the cancel (as `aclose()` or the timeout would give it)
    comes once the upgrade is decided, with no checkpoint left before the answer is
    written. No 101 goes out, no handler runs, and nothing is left counted."""
    handlers: list[trio_ws.WebSocket] = []
    servers: list[trio_ws.WebSocketServer] = []

    def cancel_then_upgrade(request: trio_ws.Request, response: trio_ws.Response) -> None:
        servers[0].handshakes.cancel_all()  # no checkpoint between this and the answer

    async def handler(ws: trio_ws.WebSocket) -> None:
        handlers.append(ws)

    async with trio_ws.open_server(handler, "127.0.0.1", 0, process_response=cancel_then_upgrade) as server:
        servers.append(server)
        for _ in range(3):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(HANDSHAKE)
            answer = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some():
                    answer += chunk
            await stream.aclose()
            assert answer == b""  # dropped: neither a 101 nor any other answer
        assert not handlers and not server.connections and len(server.handshakes) == 0
        assert server.stats()["trio_ws_handshakes_total"] == {}
