"""recv() reading the socket itself. Two ways lead there: once the reader has delivered a
message to a waiting recv(), it stands by and the handler's next recv() reads and parses
the socket in its own task; and a server's connection whose handler is in recv() when
the server's `ReaderStarts` looks (one pass after it began) gets no reader at all (a
client's first reader leaves at its first step instead). Each
test reaches one of these states on purpose (checked), then loses a race against it: the
handler leaves recv() for good, a recv() is cancelled, the keepalive gives up, the peer
closes TCP, another task closes, and two tasks receive at once. Nothing may stop being
read, answered, closed or delivered."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.frames import Frame, Opcode, serialize_frame
from trio_ws.handshake import accept_key

from .conftest import RawClient, tls_contexts, ws_url
from .strategies import examples
from .test_connection import recording_close

pytestmark = pytest.mark.timeout(60)


def client_frame(opcode: Opcode, payload: bytes = b"") -> bytes:
    return serialize_frame(Frame(opcode, payload), mask=True)


async def reading_itself(ws: trio_ws.WebSocket) -> None:
    """Wait until the handler's recv() reads the socket itself (the state under test)."""
    with trio.fail_after(5):
        while not ws._core.receiving:
            await trio.sleep(0.001)


async def reader_tasks() -> int:
    """How many connection reader tasks exist in this run, once every task is blocked
    (a reader just started has had its first step)."""
    await trio.testing.wait_all_tasks_blocked()
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        assert task is not None
        count += task.coro.cr_code.co_name == "_reader"
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return count


async def recv_beside(
    ws: trio_ws.WebSocket, beside: Callable[[], Awaitable[None]], outcome: list[trio_ws.ConnectionClosed]
) -> None:
    """One recv() while `beside` runs in a task of its own; the close it ends with goes to
    `outcome`."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beside)
        try:
            await ws.recv()
        except trio_ws.ConnectionClosed as closed:
            outcome.append(closed)


def first_round_trip_then(then: trio_ws.server.Handler) -> trio_ws.server.Handler:
    async def handler(ws: trio_ws.WebSocket) -> None:
        await ws.send(await ws.recv())  # the reader delivers to a waiting recv(): handed over
        await then(ws)

    return handler


def reaching(reach: str, handler: trio_ws.server.Handler) -> trio_ws.server.Handler:
    """`handler`, whose recv() reads the socket itself from the start, or only after a
    first round trip (the reader then stands by)."""
    return first_round_trip_then(handler) if reach == "after_a_round_trip" else handler


async def raw_peer_in_the_state(server: trio_ws.WebSocketServer, reach: str) -> RawClient:
    """A raw peer, once its connection's recv() reads the socket itself (from the start:
    with no reader task at all)."""
    raw = await RawClient.connect(server.port)
    if reach == "after_a_round_trip":
        await raw.stream.send_all(client_frame(Opcode.TEXT, b"hi"))
    (conn,) = server.connections
    await reading_itself(conn)
    if reach == "from_the_start":
        assert await reader_tasks() == 0
    return raw


@pytest.mark.parametrize("leave", ["sleeps", "cancelled"])
async def test_a_handler_that_leaves_recv_still_has_pings_answered_and_closes_seen(leave: str) -> None:
    """The handler reads the socket itself, then stops calling recv() (or its recv() is
    cancelled mid-wait) and does something else: the reader takes the socket back, so the
    peer's pings are answered and its close frame is seen."""
    states: list[bool] = []
    done = trio.Event()

    async def then(ws: trio_ws.WebSocket) -> None:
        if leave == "cancelled":
            with trio.move_on_after(0.3):
                states.append(True)
                await ws.recv()
        else:
            await trio.lowlevel.checkpoint()
        await done.wait()  # elsewhere, never in recv() again
        assert ws.state is trio_ws.State.CLOSED

    async with trio_ws.open_server(first_round_trip_then(then), "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await trio.sleep(0.4)
            with trio.fail_after(2):
                latency = await ws.ping()
            assert latency < 1
        assert ws.close_code == 1000
        with trio.fail_after(2):
            while server.connections:
                await trio.sleep(0.01)
        done.set()


@pytest.mark.parametrize("reach", ["after_a_round_trip", "from_the_start"])
async def test_the_keepalive_closes_a_connection_whose_handler_reads_the_socket_itself(reach: str) -> None:
    """A peer that stops answering pings while the handler's recv() waits on the socket
    itself: the keepalive fails the connection, recv() raises 1011 and TCP is closed."""
    outcome: list[trio_ws.ConnectionClosed] = []
    handler = reaching(reach, recording_close(outcome))
    async with trio_ws.open_server(handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2) as server:
        raw = await raw_peer_in_the_state(server, reach)
        with trio.fail_after(3):
            await raw.read_to_eof()  # never answers a ping
    assert len(outcome) == 1 and outcome[0].code == 1011


@pytest.mark.parametrize("reach", ["after_a_round_trip", "from_the_start"])
async def test_a_peer_that_drops_tcp_ends_a_recv_reading_the_socket_itself(reach: str) -> None:
    outcome: list[trio_ws.ConnectionClosed] = []
    handler = reaching(reach, recording_close(outcome))
    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        raw = await raw_peer_in_the_state(server, reach)
        await raw.stream.aclose()
        with trio.fail_after(3):
            while server.connections:
                await trio.sleep(0.01)
    assert len(outcome) == 1 and outcome[0].code == 1006


async def test_another_task_closing_while_recv_reads_the_socket_itself() -> None:
    """The handler's recv() waits on the socket; another task closes with 4000: the peer's
    answer is read by that recv(), which then raises, and the close completes."""
    outcome: list[trio_ws.ConnectionClosed] = []

    async def then(ws: trio_ws.WebSocket) -> None:
        async def close_soon() -> None:
            await reading_itself(ws)
            await ws.close(4000, "bye")

        await recv_beside(ws, close_soon, outcome)

    async with trio_ws.open_server(first_round_trip_then(then), "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            with trio.fail_after(3), pytest.raises(trio_ws.ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 4000
    assert len(outcome) == 1 and outcome[0].code == 4000


async def test_two_tasks_receiving_at_once_get_every_message_once() -> None:
    """One task's recv() reads the socket itself, another's waits on the queue: every
    message reaches exactly one of them, and each sees its messages in order."""
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def then(ws: trio_ws.WebSocket) -> None:
        async def take(name: str) -> None:
            try:
                while True:
                    got[name].append(int(await ws.recv()))
                    await trio.lowlevel.checkpoint()
            except trio_ws.ConnectionClosed:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "a")
            nursery.start_soon(take, "b")

    async with trio_ws.open_server(first_round_trip_then(then), "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            await ws.send("-1")
            assert await ws.recv() == "-1"
            for i in range(300):
                await ws.send(str(i))
                if i % 3 == 0:
                    await trio.sleep(0.001)  # let a recv() wait, so the socket is handed over
        with trio.fail_after(3):
            while server.connections:
                await trio.sleep(0.01)
    assert sorted(got["a"] + got["b"]) == list(range(300))
    assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])


async def test_request_response_reaches_the_state() -> None:
    """The state the other tests race against is the usual one for request and response:
    after each answer, the handler's recv() waits on the socket itself."""

    async def echo(ws: trio_ws.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            for i in range(20):
                await ws.send(str(i))
                assert await ws.recv() == str(i)
                (conn,) = server.connections
                await reading_itself(conn)


Action = tuple[str, float]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("recv"), st.sampled_from([0.0, 0.001, 0.005, 10.0])),  # the timeout
        st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.001, 0.003])),
        st.tuples(st.just("ping"), st.just(0.0)),
    ),
    min_size=1,
    max_size=6,
)


async def wander(plan: list[Action], count: int, pause: list[float]) -> None:
    """A handler that goes in and out of recv() by `plan` (recv() with a timeout that may
    cancel it, sleeps, pings of its own) while the client sends `count` messages, pausing
    as `pause` says, and pings between them."""
    received: list[int] = []
    plan = [*plan, ("recv", 10.0)]  # a recv() that waits, so that every message is taken

    async def handler(ws: trio_ws.WebSocket) -> None:
        step = 0
        while len(received) < count:
            kind, value = plan[step % len(plan)]
            step += 1
            if kind == "recv":
                with trio.move_on_after(value):
                    received.append(int(await ws.recv()))
            elif kind == "sleep":
                await trio.sleep(value)
            else:
                with trio.fail_after(2):
                    await ws.ping()
        await ws.send("done")
        await ws.wait_closed()

    # No queue limit: with one, a handler that stops reading rightly stops the reading of
    # pongs too (backpressure); here every ping must be answered.
    async with trio_ws.open_server(handler, "127.0.0.1", 0, max_queue=None) as server:
        async with trio_ws.connect(ws_url(server), max_queue=None) as ws:
            for i in range(count):
                await ws.send(str(i))
                wait = pause[i % len(pause)] if pause else 0
                if wait:
                    await trio.sleep(wait)
                if i % 5 == 0:
                    with trio.fail_after(2):  # answered whatever the handler is doing
                        await ws.ping()
            with trio.fail_after(5):
                assert await ws.recv() == "done"
    assert received == list(range(count))


@settings(max_examples=examples(40), deadline=None)
@given(
    plan=actions, count=st.integers(1, 30), pause=st.lists(st.sampled_from([0.0, 0.0005, 0.002]), max_size=4)
)
def test_a_handler_that_wanders_in_and_out_of_recv_loses_nothing(
    plan: list[Action], count: int, pause: list[float]
) -> None:
    """Every message once and in order, and every ping answered, however the handler's
    recv() calls (some cancelled mid-wait, some while it reads the socket itself) interleave
    with its sleeps and pings and with what the client sends."""
    trio.run(wander, plan, count, pause)


async def test_over_tls_the_reader_keeps_the_socket_and_a_cancelled_recv_loses_nothing() -> None:
    """A TLS read cancelled during a renegotiation breaks the stream, so over TLS the
    reader never hands the socket over: recv() waits on the queue, and recv() calls
    cancelled mid-wait, again and again, leave every message to come."""
    server_ctx, client_ctx = tls_contexts()
    got: list[str] = []

    handed: list[bool] = []

    async def watch(ws: trio_ws.WebSocket) -> None:
        while True:
            handed.append(ws._core.receiving)
            await trio.sleep(0.0005)

    async def cancelled_often(ws: trio_ws.WebSocket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, ws)
            await ws.send(await ws.recv())
            while len(got) < 20:
                with trio.move_on_after(0.002):
                    got.append(str(await ws.recv()))
            nursery.cancel_scope.cancel()
        await ws.send("done")
        await ws.wait_closed()

    async with trio_ws.open_server(cancelled_often, "127.0.0.1", 0, ssl_context=server_ctx) as server:
        async with trio_ws.connect(f"wss://127.0.0.1:{server.port}/", ssl_context=client_ctx) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            for i in range(20):
                await ws.send(str(i))
                await trio.sleep(0.003)
            with trio.fail_after(5):
                assert await ws.recv() == "done"
    assert got == [str(i) for i in range(20)]
    assert len(handed) > 20 and not any(handed), "a TLS socket was handed to recv()"


async def test_an_idle_connection_holds_no_reader_task_until_its_handler_leaves_recv() -> None:
    """A handler that goes straight to recv(): its connection has no reader task while it
    waits, its recv() answers pings; after the first message a reader stands by, and the
    close completes the usual way (the server closes TCP first)."""

    async def echo(ws: trio_ws.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server)) as ws:
            (conn,) = server.connections
            await reading_itself(conn)
            assert await reader_tasks() == 1  # the client's own
            with trio.fail_after(2):
                assert await ws.ping() < 1
            assert await reader_tasks() == 1
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await reading_itself(conn)
            assert await reader_tasks() == 2  # the server's stands by while recv() reads
        assert ws.close_code == 1000
        with trio.fail_after(2):
            while server.connections:
                await trio.sleep(0.01)


async def test_an_idle_handler_whose_recv_is_cancelled_again_and_again_has_its_socket_read() -> None:
    """The race against the handover at the first step: the handler's recv() is cancelled
    before, during and after it, and the handler then works elsewhere. Whoever holds the
    socket when recv() leaves, somebody reads it afterwards: every ping is answered, and
    the peer's close frame is seen."""
    states: list[bool] = []
    lefts: list[trio.Event] = []
    done = trio.Event()

    async def handler(ws: trio_ws.WebSocket) -> None:
        left = trio.Event()
        lefts.append(left)
        for i in range(40):
            with trio.move_on_after(0.0005 * (1 + i % 8)):
                await ws.recv()
            states.append(ws._core.receiving)
            if i % 3:
                await trio.sleep(0.001)
        left.set()
        await done.wait()  # elsewhere, never in recv() again
        assert ws.state is trio_ws.State.CLOSED

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        for _ in range(3):
            async with trio_ws.connect(ws_url(server), close_timeout=2) as ws:
                for _ in range(20):  # while the handler goes in and out of recv()
                    with trio.fail_after(2):
                        assert await ws.ping() < 1
                    await trio.sleep(0.002)
                await lefts[-1].wait()
                with trio.fail_after(2):
                    assert await ws.ping() < 1  # and once it has left for good
            assert ws.close_code == 1000
            with trio.fail_after(3):
                while server.connections:
                    await trio.sleep(0.01)
        done.set()
    assert states and not any(states)  # recv() never still reading once it left


@pytest.mark.parametrize("reach", ["after_a_round_trip", "from_the_start"])
async def test_the_server_closing_drops_connections_whose_recv_reads_the_socket(reach: str) -> None:
    """Shutting the server down while every handler's recv() reads its socket (some with
    no reader task at all): each connection closes with 1001, and nothing is left."""
    outcome: list[trio_ws.ConnectionClosed] = []
    handler = reaching(reach, recording_close(outcome))
    clients: list[int | None] = []
    async with trio.open_nursery() as nursery:
        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:

            async def client() -> None:
                async with trio_ws.connect(ws_url(server)) as ws:
                    if reach == "after_a_round_trip":
                        await ws.send("hi")
                        await ws.recv()
                    with pytest.raises(trio_ws.ConnectionClosed):
                        await ws.recv()
                clients.append(ws.close_code)

            for _ in range(5):
                nursery.start_soon(client)
            with trio.fail_after(3):
                while len(server.connections) < 5 or not all(c._core.receiving for c in server.connections):
                    await trio.sleep(0.005)
            if reach == "from_the_start":
                assert await reader_tasks() == 0  # the clients wait in recv() too: none either
    assert clients == [1001] * 5
    assert [c.code for c in outcome] == [1001] * 5


async def test_the_keepalive_gives_up_on_a_peer_that_reads_nothing_while_recv_waits_on_the_socket() -> None:
    """The slow way to close, lost on purpose: the handler's recv() waits on the socket
    while another of its tasks fills the kernel's buffers toward a peer that reads nothing
    and answers no ping. The keepalive fails the connection with output still held, so TCP
    cannot be closed at once: the reader flushes until `close_timeout`, then drops TCP,
    and that wakes the recv(). Nothing hangs, and the connection is gone."""
    outcome: list[trio_ws.ConnectionClosed] = []
    waited: list[bool] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        async def flood() -> None:
            with contextlib.suppress(trio_ws.ConnectionClosed):
                while True:
                    await ws.send(b"x" * 65536)

        await recv_beside(ws, flood, outcome)
        waited.append(ws.state is trio_ws.State.CLOSED)

    async with trio_ws.open_server(
        handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2, close_timeout=0.5
    ) as server:
        raw = await RawClient.connect(server.port)  # reads nothing from here on
        (conn,) = server.connections
        await reading_itself(conn)
        with trio.fail_after(3):
            while not conn._core.buffered:
                await trio.sleep(0.01)  # the flood fills the kernel's buffers
        with trio.fail_after(5):
            while server.connections:
                await trio.sleep(0.01)
        await raw.stream.aclose()
    assert len(outcome) == 1 and outcome[0].code == 1011
    assert waited == [True]


async def test_a_client_whose_keepalive_gives_up_while_recv_waits_on_the_socket() -> None:
    """On the client, whose body's recv() reads the socket with no reader task: the server
    never answers a ping, so the client's own keepalive fails the connection (1011) from
    its timer task. Having failed it, the client closes TCP first, at once, which wakes the
    recv(): it raises 1011, and the connection is CLOSED well before the server would
    have closed TCP itself."""

    async def mute_server(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some()
        key = head.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0].decode()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        received = b""
        while b"\x88" not in received:  # the client's close frame (masked, opcode 8)
            received += await stream.receive_some()
        await trio.sleep(2)  # it would close TCP only now
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(functools.partial(trio.serve_tcp, mute_server, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        with trio.fail_after(1):
            async with trio_ws.connect(
                f"ws://127.0.0.1:{port}/", ping_interval=0.1, ping_timeout=0.1, close_timeout=3
            ) as ws:
                with pytest.raises(trio_ws.ConnectionClosedError) as closed:
                    await ws.recv()
        assert closed.value.code == 1011
        assert ws.state is trio_ws.State.CLOSED
        nursery.cancel_scope.cancel()
