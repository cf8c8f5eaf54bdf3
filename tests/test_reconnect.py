"""reconnect(): a new connection after each drop, back-off measured on Trio's MockClock,
what is retried and what is raised, Retry-After, cancellation, and a clean exit."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws.reconnection import default_process_exception

from .conftest import echo, free_port


class Attempts:
    """A process_exception hook that records when each attempt failed (and lets it retry
    until `fail_after` failures)."""

    def __init__(self, fail_after: int = 1000) -> None:
        self.failed_at: list[float] = []
        self.errors: list[Exception] = []
        self.fail_after = fail_after

    def __call__(self, exc: Exception) -> Exception | None:
        self.failed_at.append(trio.current_time())
        self.errors.append(exc)
        if len(self.failed_at) >= self.fail_after:
            return RuntimeError(f"gave up after {len(self.failed_at)} attempts")
        return default_process_exception(exc)

    def delays(self) -> list[float]:
        return [b - a for a, b in zip(self.failed_at, self.failed_at[1:], strict=False)]


class Switchable:
    """An echo server on a fixed port that the test turns on and off."""

    def __init__(self, nursery: trio.Nursery, **options: object) -> None:
        self.nursery = nursery
        self.port = free_port()
        self.options = options
        self.scope: trio.CancelScope | None = None
        self.upgrades = 0

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def on(self) -> None:
        self.scope = trio.CancelScope()
        await self.nursery.start(self._serve, self.scope)

    def off(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    async def _serve(self, scope: trio.CancelScope, task_status: trio.TaskStatus[None]) -> None:
        def count(request: trio_ws.Request) -> None:
            self.upgrades += 1

        with scope:
            async with trio_ws.open_server(
                echo, "127.0.0.1", self.port, process_request=count, **self.options
            ):  # type: ignore[arg-type]
                task_status.started()
                await trio.sleep_forever()


async def test_a_server_restarted_on_the_same_port_gives_a_new_connection() -> None:
    seen = []
    async with trio.open_nursery() as nursery:
        server = Switchable(nursery)
        await server.on()
        async with trio_ws.reconnect(server.uri, initial_delay=0.05, max_delay=0.5) as connections:
            async for ws in connections:
                await ws.send(f"hello {connections.opened}")
                seen.append(await ws.recv())
                if connections.opened == 2:
                    break
                server.off()  # the server goes away...
                with pytest.raises(trio_ws.ConnectionClosed):
                    await ws.recv()
                await trio.sleep(0.3)  # (the loop is not asking yet)
                await server.on()  # ...and comes back on the same port
        nursery.cancel_scope.cancel()
    assert seen == ["hello 1", "hello 2"]
    assert server.upgrades == 2


async def test_backoff_grows_with_jitter_up_to_its_cap(autojump_clock: trio.testing.MockClock) -> None:
    """Every attempt against a closed port fails at once; the MockClock measures the waits."""
    attempts = Attempts(fail_after=12)
    uri = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(RuntimeError, match="gave up after 12"):
        async with trio_ws.reconnect(
            uri, initial_delay=1.0, max_delay=16.0, process_exception=attempts, open_timeout=None
        ) as connections:
            async for _ in connections:
                raise AssertionError("nothing listens there")
    delays = attempts.delays()
    steps = [min(2.0**n, 16.0) for n in range(len(delays))]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step + 1e-6, (delays, steps)
    assert len({round(d, 6) for d in delays[-6:]}) > 1, "capped delays are jittered, not all equal"
    assert max(delays) <= 16.0 + 1e-6
    assert all(isinstance(error, OSError) for error in attempts.errors)


async def test_backoff_resets_after_a_connection_that_stayed_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Four failures grow the delay; a connection that lasts max_delay resets it, one that
    drops sooner does not."""
    attempts = Attempts(fail_after=9)  # 4 failures, a long connection, 4, a short one, 1
    options = dict(initial_delay=1.0, max_delay=16.0, process_exception=attempts, open_timeout=None)
    ended_at = []
    async with trio.open_nursery() as nursery:
        server = Switchable(nursery, ping_interval=None)
        with pytest.raises(RuntimeError, match="gave up after 9"):
            async with trio_ws.reconnect(server.uri, ping_interval=None, **options) as connections:  # type: ignore[arg-type]
                nursery.start_soon(turn_on_after_failures, server, attempts, 4)
                async for ws in connections:
                    await trio.sleep(20.0 if connections.opened == 1 else 2.0)  # past max_delay, then not
                    server.off()
                    with pytest.raises(trio_ws.ConnectionClosed):
                        await ws.recv()
                    ended_at.append(trio.current_time())
                    if connections.opened == 1:
                        nursery.start_soon(turn_on_after_failures, server, attempts, 8)
        nursery.cancel_scope.cancel()
    after_long = attempts.failed_at[4] - ended_at[0]  # the first failure after the long one
    assert 0.5 <= after_long <= 1.0 + 0.01, after_long  # back to initial_delay
    growth = attempts.delays()[4:7]
    assert [1.0 <= growth[0] <= 2.0, 2.0 <= growth[1] <= 4.0, 4.0 <= growth[2] <= 8.0] == [True] * 3
    after_short = attempts.failed_at[8] - ended_at[1]
    assert after_short >= 8.0, after_short  # not reset: the step had reached 16


async def turn_on_after_failures(server: Switchable, attempts: Attempts, failures: int) -> None:
    while len(attempts.failed_at) < failures:
        await trio.sleep(0.001)
    await server.on()


def refusing(status: int, headers: dict[str, str], refusals: int = 1_000) -> object:
    """A process_request that answers `status` to the first `refusals` requests."""
    answered = []

    def process_request(request: trio_ws.Request) -> trio_ws.Response | None:
        answered.append(trio.current_time())
        if len(answered) <= refusals:
            return trio_ws.Response(status, headers, "not now\n")
        return None

    process_request.answered = answered  # type: ignore[attr-defined]
    return process_request


async def test_403_raises_at_once() -> None:
    hook = refusing(403, {})
    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_request=hook) as server:  # type: ignore[arg-type]
        with pytest.raises(trio_ws.InvalidHandshake) as info:
            async with trio_ws.reconnect(f"ws://127.0.0.1:{server.port}/", initial_delay=0.01) as connections:
                async for _ in connections:
                    raise AssertionError("refused")
    assert info.value.status == 403
    assert len(hook.answered) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_honoured(status: int, autojump_clock: trio.testing.MockClock) -> None:
    hook = refusing(status, {"Retry-After": "2"}, refusals=1)
    async with trio_ws.open_server(echo, "127.0.0.1", 0, process_request=hook, ping_interval=None) as server:  # type: ignore[arg-type]
        uri = f"ws://127.0.0.1:{server.port}/"
        async with trio_ws.reconnect(
            uri, initial_delay=0.1, open_timeout=None, ping_interval=None
        ) as connections:
            async for ws in connections:
                await ws.send("in")
                assert await ws.recv() == "in"
                break
    first, second = hook.answered  # type: ignore[attr-defined]
    assert second - first == pytest.approx(2.0, abs=0.01)


async def test_an_http_date_retry_after_and_the_cap() -> None:
    import email.utils

    from trio_ws.reconnection import retry_after

    soon = email.utils.formatdate(__import__("time").time() + 5, usegmt=True)
    for value, expected in [("2", 2.0), ("0", 0.0), ("soon", None), (soon, 5.0)]:
        answer = trio_ws.InvalidHandshake("x", status=503, headers=trio_ws.Headers({"Retry-After": value}))
        got = retry_after(answer)
        assert got == expected if expected is None else got == pytest.approx(expected, abs=1.5), (value, got)


async def test_cancelling_during_backoff_returns_at_once() -> None:
    uri = f"ws://127.0.0.1:{free_port()}/"
    with trio.move_on_after(0.3) as scope:  # the first attempt fails; the back-off is 50-100 s
        async with trio_ws.reconnect(uri, initial_delay=100, max_delay=100) as connections:
            async for _ in connections:
                raise AssertionError("nothing listens there")
    returned_after = trio.current_time() - scope.deadline
    assert scope.cancelled_caught
    assert returned_after < 0.010, returned_after


async def test_leaving_the_block_closes_the_connection_cleanly() -> None:
    closed = []

    async def record(ws: trio_ws.WebSocket) -> None:
        await ws.wait_closed()
        closed.append(ws.close_code)

    async with trio_ws.open_server(record, "127.0.0.1", 0) as server:
        async with trio_ws.reconnect(f"ws://127.0.0.1:{server.port}/") as connections:
            async for ws in connections:
                assert ws.state is trio_ws.State.OPEN
                break
        with trio.fail_after(5):
            while not closed:
                await trio.sleep(0.01)
    assert closed == [1000] and ws.close_code == 1000


async def test_a_hook_decides_and_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    uri = f"ws://127.0.0.1:{free_port()}/"
    decisions = []

    def give_up_on_the_third(exc: Exception) -> Exception | None:
        decisions.append(type(exc).__name__)
        return ValueError("enough") if len(decisions) == 3 else None

    with pytest.raises(ValueError, match="enough"):
        async with trio_ws.reconnect(uri, initial_delay=0.01, process_exception=give_up_on_the_third) as c:
            async for _ in c:
                pass
    assert decisions == ["OSError"] * 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2 and all(uri in m and "OSError" in m and " s" in m for m in retries)


async def test_async_for_over_connect_points_to_reconnect() -> None:
    with pytest.raises(TypeError, match=r"trio_ws\.reconnect\(uri\)"):
        async for _ in trio_ws.connect("ws://127.0.0.1:1/"):  # type: ignore[attr-defined]
            pass


def test_bad_delays_and_uris_fail_before_connecting() -> None:
    async def main() -> None:
        for options, match in [
            ({"initial_delay": 0}, "first"),
            ({"initial_delay": 5, "max_delay": 1}, "cap"),
        ]:
            with pytest.raises(ValueError, match=match):
                async with trio_ws.reconnect("ws://127.0.0.1/", **options):  # type: ignore[arg-type]
                    pass
        with pytest.raises(trio_ws.InvalidURI):
            async with trio_ws.reconnect("http://127.0.0.1/"):
                pass

    trio.run(main)
