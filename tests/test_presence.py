"""Presence: who is subscribed to a topic, in one process and across processes over Redis,
with joins and leaves published on `presence_topic(topic)`, and the members of a process
killed with SIGKILL gone within the TTL."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

import trio_ws

from .conftest import RedisServer
from .test_redis import Workers

pytestmark = pytest.mark.timeout(300)

PRESENCE_TTL = 2.0


async def test_presence_in_one_process_with_joins_and_leaves_published() -> None:
    """Two present subscribers and one without info: presence lists the two, a watcher of
    presence_topic sees both joins and, when one disconnects, its leave."""
    async with trio_ws.open_hub() as hub:
        watched: list[dict[str, Any]] = []

        async def handler(ws: trio_ws.WebSocket) -> None:
            name = ws.path.strip("/")
            if name == "watcher":
                async with hub.subscribe(ws, trio_ws.presence_topic("room")):
                    await ws.send("watching")
                    await ws.wait_closed()
            else:
                async with hub.subscribe(ws, "room", info=None if name == "lurker" else {"name": name}):
                    await ws.send("in")
                    await ws.wait_closed()

        async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with trio_ws.connect(uri + "watcher") as watcher:
                assert await watcher.recv() == "watching"
                async with trio_ws.connect(uri + "alice") as alice, trio_ws.connect(uri + "lurker") as lurker:
                    assert await alice.recv() == "in" and await lurker.recv() == "in"
                    async with trio_ws.connect(uri + "bob") as bob:
                        assert await bob.recv() == "in"
                        present = await hub.presence("room")
                        assert sorted(info["name"] for info in present.values()) == ["alice", "bob"]  # type: ignore[index]
                        assert len(hub.subscribers("room")) == 3
                    with trio.fail_after(5):
                        while len(await hub.presence("room")) != 1:
                            await trio.sleep(0.01)
                    with trio.fail_after(5):
                        for _ in range(3):
                            watched.append(json.loads(str(await watcher.recv())))
    assert [(event["type"], event["info"]["name"]) for event in watched] == [
        ("join", "alice"),
        ("join", "bob"),
        ("leave", "bob"),
    ]
    assert len({event["id"] for event in watched}) == 2


def test_info_must_be_json() -> None:
    async def main() -> None:
        async with trio_ws.open_hub() as hub:

            async def handler(ws: trio_ws.WebSocket) -> None:
                with pytest.raises(ValueError, match="info must be JSON"):
                    async with hub.subscribe(ws, "room", info={"not json": object()}):
                        pass
                assert not hub.topics
                await ws.send("checked")

            async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
                async with trio_ws.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    assert await ws.recv() == "checked"

    trio.run(main)


class PresenceWorkers(Workers):
    def __init__(self, redis_url: str) -> None:
        extra = ("--presence-ttl", str(PRESENCE_TTL))
        super().__init__(redis_url, target="tests.presence_app:router", extra=extra)

    def room(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/room/lobby?name={name}"


@pytest.fixture
def presence_workers(redis_server: RedisServer) -> AsyncIterator[PresenceWorkers]:
    running = PresenceWorkers(redis_server.url)
    yield running  # type: ignore[misc]
    running.stop()


@asynccontextmanager
async def members_on_each_worker(
    workers: PresenceWorkers,
) -> AsyncIterator[dict[int, list[tuple[str, trio_ws.WebSocket]]]]:
    """Two named clients on each worker (connecting until SO_REUSEPORT spread them)."""
    by_worker: dict[int, list[tuple[str, trio_ws.WebSocket]]] = {pid: [] for pid in workers.pids}
    async with AsyncExitStack() as stack:
        for n in range(100):
            ws = await stack.enter_async_context(trio_ws.connect(workers.room(f"c{n}")))
            welcome = json.loads(str(await ws.recv()))
            group = by_worker[welcome["worker"]]
            if len(group) < 2:
                group.append((f"c{n}", ws))
            else:
                await ws.close()
            if all(len(group) == 2 for group in by_worker.values()):
                break
        assert all(len(group) == 2 for group in by_worker.values())
        yield by_worker


async def names_seen_by(ws: trio_ws.WebSocket) -> list[str]:
    await ws.send("who")
    with trio.fail_after(5):
        while (reply := json.loads(str(await ws.recv())))["type"] != "who":
            pass
    return reply["names"]  # type: ignore[no-any-return]


async def test_presence_across_two_processes_and_a_sigkilled_worker_gone_within_the_ttl(
    presence_workers: PresenceWorkers,
) -> None:
    """Two members on each of two workers: both workers list all four. One leaves: both
    list three. Worker B is killed with SIGKILL (no leave is ever sent): within the
    presence TTL, worker A lists only its own, and not before the heartbeat stops."""
    pid_a, pid_b = sorted(presence_workers.pids)
    async with members_on_each_worker(presence_workers) as by_worker:
        everyone = sorted(name for group in by_worker.values() for name, _ in group)
        with trio.fail_after(10):
            while await names_seen_by(by_worker[pid_b][0][1]) != everyone:
                await trio.sleep(0.05)  # the other worker's joins are on their way
        assert await names_seen_by(by_worker[pid_a][0][1]) == everyone
        await trio.sleep(PRESENCE_TTL * 1.5)  # past one TTL: the heartbeats keep everyone
        assert await names_seen_by(by_worker[pid_a][0][1]) == everyone

        leaving_name, leaving = by_worker[pid_a].pop()
        await leaving.close()
        everyone.remove(leaving_name)
        with trio.fail_after(5):
            for pid in (pid_a, pid_b):
                while await names_seen_by(by_worker[pid][0][1]) != everyone:
                    await trio.sleep(0.05)

        os.kill(pid_b, signal.SIGKILL)
        killed_at = trio.current_time()
        survivors = sorted(name for name, _ in by_worker[pid_a])
        asker = by_worker[pid_a][0][1]
        with trio.fail_after(PRESENCE_TTL + 2):
            while (names := await names_seen_by(asker)) != survivors:
                assert set(names) >= set(survivors)
                await trio.sleep(0.05)
        gone_after = trio.current_time() - killed_at
    print(f"the killed worker's members were gone {gone_after:.2f} s after SIGKILL")
    assert gone_after <= PRESENCE_TTL + 0.5
