"""Fan-out at scale, slow consumers, and the hub's bookkeeping under random operations."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_ws
from trio_ws.frames import Opcode

from .conftest import ROOT, RawClient, raise_open_file_limit, readline_within, ws_url
from .strategies import examples

pytestmark = pytest.mark.timeout(600)  # 2,000 clients, twice

CLIENTS = 2000
BROADCASTS = 100


@pytest.mark.parametrize("via", ["broadcast", "hub"])
async def test_2000_clients_each_receive_100_broadcasts_in_order(via: str) -> None:
    raise_open_file_limit(CLIENTS + 500)  # the client process inherits it
    async with trio_ws.open_hub() as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            async with hub.subscribe(ws, "all"):
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0, compression=None, backlog=CLIENTS) as server:
            # The clients run in a process of their own: the server gets this one to itself.
            clients = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests" / "fanout_clients.py"),
                    ws_url(server),
                    str(CLIENTS),
                    str(BROADCASTS),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert clients.stdout is not None
                with trio.fail_after(120):
                    assert await trio.to_thread.run_sync(clients.stdout.readline) == "ready\n"
                    while len(hub.subscribers("all")) < CLIENTS or len(server.connections) < CLIENTS:
                        await trio.sleep(0.01)
                    for n in range(BROADCASTS):
                        if via == "broadcast":
                            assert trio_ws.broadcast(server.connections, f"broadcast {n}") == CLIENTS
                        else:
                            assert await hub.publish("all", f"broadcast {n}") == CLIENTS
                        await trio.sleep(0.001)
                    result = await trio.to_thread.run_sync(readline_within, clients.stdout, 120)
                assert result == f"complete {CLIENTS}\n"
            finally:
                if clients.poll() is None:
                    clients.kill()
                clients.wait()


MESSAGE_SIZE = 8192
MESSAGES = 2000  # 16 MiB: far more than the socket buffers of the client that does not read


@pytest.mark.parametrize("policy", ["drop_oldest", "latest", "disconnect"])
async def test_slow_subscriber_is_handled_by_policy_and_fast_ones_keep_up(policy: str) -> None:
    queue_size = 16
    write_limit = 2**16
    async with trio_ws.open_hub(queue_size=queue_size, on_overflow=policy) as hub:  # type: ignore[arg-type]
        subscriptions: dict[Any, trio_ws.Subscription] = {}

        async def handler(ws: trio_ws.WebSocket) -> None:
            async with hub.subscribe(ws, "feed") as subscription:
                subscriptions[ws.remote_address] = subscription
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0, write_limit=write_limit) as server:
            slow = await RawClient.connect(server.port)  # subscribes, never reads
            fast_counts = [0, 0, 0]
            async with trio.open_nursery() as nursery:

                async def fast(index: int) -> None:
                    async with trio_ws.connect(ws_url(server)) as ws:
                        for n in range(MESSAGES):
                            message = await ws.recv()
                            assert message[:8] == n.to_bytes(8, "big")
                            fast_counts[index] += 1

                for index in range(3):
                    nursery.start_soon(fast, index)
                with trio.fail_after(10):
                    while len(hub.subscribers("feed")) < 4:
                        await trio.sleep(0.01)
                slow_ws = next(
                    ws
                    for ws in server.connections
                    if ws.remote_address[1] == slow.stream.socket.getsockname()[1]
                )
                peak_buffered = 0
                with trio.fail_after(60):
                    for n in range(MESSAGES):
                        await hub.publish("feed", n.to_bytes(8, "big") + bytes(MESSAGE_SIZE - 8))
                        if slow_ws.state is trio_ws.State.OPEN:
                            peak_buffered = max(peak_buffered, slow_ws.buffered_amount)
                        while min(fast_counts) < n + 1 - queue_size // 2:  # pace to the fast readers
                            await trio.sleep(0.001)
            assert fast_counts == [MESSAGES] * 3
            for ws, subscription in ((ws, subscriptions[ws.remote_address]) for ws in server.connections):
                if ws is not slow_ws:
                    assert subscription.dropped == 0, "a fast subscriber lost messages"
            # What the server holds for the slow client is bounded: its queue plus write_limit.
            assert peak_buffered <= write_limit + MESSAGE_SIZE + 64
            slow_subscription = subscriptions[slow_ws.remote_address]
            assert len(slow_subscription.queue) <= queue_size
            if policy != "disconnect":
                assert slow_subscription.dropped > MESSAGES // 2
                assert slow_ws.state is trio_ws.State.OPEN
                await slow.stream.aclose()
            else:
                assert slow_ws not in hub.subscribers("feed")
                with trio.fail_after(10):
                    await slow.read_to_eof()
                close = slow.frames()[-1]
                assert close.opcode is Opcode.CLOSE and close.payload[:2] == (1013).to_bytes(2, "big")
    assert not hub.topics


def test_hub_options_are_checked() -> None:
    with pytest.raises(ValueError, match="on_overflow"):
        trio_ws.HubConfig(queue_size=8, on_overflow="block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_size"):
        trio_ws.HubConfig(queue_size=0)
    with pytest.raises(ValueError, match="queue_bytes"):
        trio_ws.HubConfig(queue_bytes=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="history_size"):
        trio_ws.HubConfig(history_size=-1)
    with pytest.raises(TypeError, match="unknown hub option"):
        trio_ws.HubConfig().replace(queue_sise=3)  # type: ignore[call-arg]


async def test_current_hub() -> None:
    with pytest.raises(LookupError):
        trio_ws.current_hub()
    async with trio_ws.open_hub() as hub:
        assert trio_ws.current_hub() is hub


# ---- the hub's bookkeeping under random operations ---------------------------------------

TOPICS = ["a", "b", "c"]
CLIENT_IDS = [0, 1, 2]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from(CLIENT_IDS), st.sampled_from(TOPICS)),
        st.tuples(st.just("unsubscribe"), st.sampled_from(CLIENT_IDS), st.sampled_from(TOPICS)),
        st.tuples(st.just("disconnect"), st.sampled_from(CLIENT_IDS), st.just("")),
        st.tuples(st.just("publish"), st.just(-1), st.sampled_from(TOPICS)),
    ),
    max_size=25,
)


@settings(max_examples=examples(40))
@given(operations)
def test_hub_bookkeeping_stays_exact(ops: list[tuple[str, int, str]]) -> None:
    trio.run(run_hub_operations, ops)


async def run_hub_operations(ops: list[tuple[str, int, str]]) -> None:
    """Apply `ops` to a real hub with real clients, and to a model; they must agree."""
    async with trio_ws.open_hub() as hub:

        async def handler(ws: trio_ws.WebSocket) -> None:
            subscriptions: dict[str, Any] = {}
            try:
                async for command in ws:
                    verb, topic = str(command).split()
                    if verb == "subscribe" and topic not in subscriptions:
                        manager = hub.subscribe(ws, topic)
                        await manager.__aenter__()
                        subscriptions[topic] = manager
                    elif verb == "unsubscribe" and topic in subscriptions:
                        await subscriptions.pop(topic).__aexit__(None, None, None)
                    await ws.send(f"ok {command}")
            finally:
                for manager in subscriptions.values():
                    await manager.__aexit__(None, None, None)

        async with trio_ws.open_server(handler, "127.0.0.1", 0, compression=None) as server:
            clients: dict[int, trio_ws.WebSocket] = {}
            server_side: dict[int, trio_ws.WebSocket] = {}
            got: dict[int, list[str]] = {c: [] for c in CLIENT_IDS}
            expected: dict[int, list[str]] = {c: [] for c in CLIENT_IDS}
            model: dict[str, set[int]] = {}
            async with contextlib.AsyncExitStack() as stack:
                for c in CLIENT_IDS:
                    clients[c] = await stack.enter_async_context(
                        trio_ws.connect(ws_url(server), ping_interval=None)
                    )
                    await clients[c].send("subscribe none")  # learn our server-side peer
                    assert await clients[c].recv() == "ok subscribe none"
                    server_side[c] = next(
                        ws for ws in server.connections if ws.remote_address[1] == clients[c].local_address[1]
                    )
                model["none"] = set(CLIENT_IDS)

                async def collect(c: int, until: str) -> None:
                    """Read client c's messages up to the reply `until`."""
                    while (message := str(await clients[c].recv())) != until:
                        got[c].append(message)

                for step, (verb, c, topic) in enumerate(ops):
                    if verb in ("subscribe", "unsubscribe") and c in clients:
                        await clients[c].send(f"{verb} {topic}")
                        await collect(c, f"ok {verb} {topic}")
                        members = model.setdefault(topic, set())
                        (members.add if verb == "subscribe" else members.discard)(c)
                    elif verb == "disconnect" and c in clients:
                        await clients.pop(c).close()
                        with trio.fail_after(5):
                            while any(server_side[c] in hub.subscribers(t) for t in [*TOPICS, "none"]):
                                await trio.sleep(0.001)
                        for members in model.values():
                            members.discard(c)
                    elif verb == "publish":
                        message = f"{topic} #{step}"
                        assert await hub.publish(topic, message) == len(model.get(topic, ()))
                        for member in model.get(topic, ()):
                            expected[member].append(message)
                    # The hub's bookkeeping matches the model after every step.
                    for t in [*TOPICS, "none"]:
                        assert hub.subscribers(t) == {server_side[m] for m in model.get(t, ())}
                    assert hub.topics == {t for t, members in model.items() if members}
                for c in list(clients):  # flush: everything published must have arrived
                    await clients[c].send("subscribe none")
                    await collect(c, "ok subscribe none")
                    assert got[c] == expected[c], f"client {c}"
    assert not hub.topics


async def test_the_slow_subscriber_warning_names_its_own_queue_size(caplog: pytest.LogCaptureFixture) -> None:
    """A subscription's own queue_size, not the hub's default, is the one that overflowed."""
    async with trio_ws.open_hub(queue_size=64) as hub:
        subscribed = trio.Event()

        async def handler(ws: trio_ws.WebSocket) -> None:
            async with hub.subscribe(ws, "feed", queue_size=2, on_overflow="disconnect"):
                subscribed.set()
                await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0, write_limit=2**12) as server:
            slow = await RawClient.connect(server.port)  # never reads
            await subscribed.wait()
            with trio.fail_after(10):
                while hub.subscribers("feed"):
                    await hub.publish("feed", bytes(2**16))
            await slow.stream.aclose()
    assert "subscriber too slow (queue of 2 full)" in caplog.text
