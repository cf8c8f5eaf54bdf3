"""A real Prometheus scrapes `serve --workers 2 --metrics`: every value is the traffic the
test drove, summed over both workers; a killed worker's gauge leaves with it, its
replacement starts from zero, and no total goes back."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import free_port
from .prometheus import Prometheus, get, prometheus, scrape
from .service import Service, serve

APP = "tests.metrics_app:config"
CONNECTIONS, MESSAGES, REFUSED = 6, 5, 3


async def echo_traffic(port: int) -> None:
    """CONNECTIONS connections to /echo, MESSAGES text messages each, closed by the client."""
    async with trio.open_nursery() as nursery:
        for _ in range(CONNECTIONS):
            nursery.start_soon(echo_client, port)


async def echo_client(port: int) -> None:
    async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo") as ws:
        for number in range(MESSAGES):
            await ws.send(f"message {number}")
            assert await ws.recv() == f"message {number}"


async def refused(port: int) -> None:
    for _ in range(REFUSED):
        with pytest.raises(trio_ws.InvalidHandshake) as refusal:
            async with trio_ws.connect(f"ws://127.0.0.1:{port}/refuse"):
                pass
        assert refusal.value.status == 403


async def overflowed(port: int) -> None:
    """A subscriber that reads nothing for a second: the hub drops it with 1013, which it
    reads once it reads again."""
    config = trio_ws.ClientConfig(max_queue=1, max_size=None)
    async with trio_ws.connect(f"ws://127.0.0.1:{port}/overflow", config) as ws:
        await trio.sleep(1)
        with trio.fail_after(20), pytest.raises(trio_ws.ConnectionClosedError):
            while True:
                await ws.recv()
    assert ws.close_code == 1013


async def resumed(port: int) -> None:
    async with trio_ws.connect(f"ws://127.0.0.1:{port}/resume") as ws:
        received = [await ws.recv() for _ in range(5)]
    # The two publications, live to the first subscription and replayed to the recovered
    # one (the other replays nothing), and "done".
    assert sorted(message for message in received if message != "done") == [b"1", b"1", b"2", b"2"]
    assert "done" in received


@asynccontextmanager
async def scraped_service(tmp_path: Path) -> AsyncIterator[tuple[int, Service, Prometheus]]:
    """`serve --workers 2 --metrics` on a free port, with a Prometheus scraping it; the
    service is asked to drain on the way out."""
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2", "--metrics") as service:
        await service.line("2 workers ready")
        with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as server:
            yield port, service, server
        if service.process.returncode is None:
            service.signal(signal.SIGTERM)
            await service.wait(15)


@pytest.mark.timeout(120)
async def test_prometheus_scrapes_the_sum_over_two_workers(tmp_path: Path) -> None:
    async with scraped_service(tmp_path) as (port, service, server):
        await echo_traffic(port)
        await refused(port)
        await overflowed(port)
        await resumed(port)
        upgraded = CONNECTIONS + 2  # echo, overflow and resume
        expected = {
            "trio_ws_connections_opened_total": upgraded,
            'trio_ws_handshakes_total{status="101"}': upgraded,
            'trio_ws_handshakes_total{status="403"}': REFUSED,
            'trio_ws_messages_received_total{kind="text"}': CONNECTIONS * MESSAGES,
            'trio_ws_messages_sent_total{kind="text"}': CONNECTIONS * MESSAGES + 1,  # and "done"
            'trio_ws_received_bytes_total{kind="text"}': CONNECTIONS * MESSAGES * len("message 0"),
            'trio_ws_closes_total{code="1000",by="client"}': CONNECTIONS + 1,
            'trio_ws_closes_total{code="1013",by="server"}': 1,
            "trio_ws_connections_open": 0,  # summed over the workers already
            "trio_ws_hub_overflow_disconnects_total": 1,
            'trio_ws_hub_resumes_total{outcome="recovered"}': 1,
            'trio_ws_hub_resumes_total{outcome="not_recovered"}': 1,
            "trio_ws_hub_replayed_publications_count": 1,
            "trio_ws_hub_replayed_publications_sum": 2,
            "trio_ws_hub_subscriptions": 0,
            "trio_ws_connection_duration_seconds_count": upgraded,
        }
        got = await server.wait_for(expected)
        assert got == expected
        # Both workers were scraped, and each one's answer held the other's figures.
        workers = await server.query("trio_ws_worker_connections_open")
        assert sorted(sample["labels"]["worker"] for sample in workers) == ["0", "1"]  # type: ignore[index]
        service.signal(signal.SIGTERM)  # sharing the figures does not hold up a drain
        assert await service.wait(15) == 0


@pytest.mark.timeout(120)
async def test_a_killed_workers_gauge_leaves_with_it_and_no_total_goes_back(tmp_path: Path) -> None:
    async with scraped_service(tmp_path) as (port, service, server):
        held: dict[str, list[trio_ws.WebSocket]] = {}
        pids: dict[str, int] = {}
        async with trio.open_nursery() as nursery:

            async def hold(task_status: trio.TaskStatus[None]) -> None:
                async with trio_ws.connect(f"ws://127.0.0.1:{port}/held") as ws:
                    pid, worker = str(await ws.recv()).split()
                    pids[worker] = int(pid)
                    held.setdefault(worker, []).append(ws)
                    task_status.started()
                    await ws.wait_closed()

            for _ in range(12):  # enough that both workers hold some (SO_REUSEPORT spreads them)
                await nursery.start(hold)
            assert sorted(held) == ["0", "1"], held
            counts = {worker: float(len(connections)) for worker, connections in held.items()}
            expected = {
                'trio_ws_worker_connections_open{worker="0"}': counts["0"],
                'trio_ws_worker_connections_open{worker="1"}': counts["1"],
                "trio_ws_connections_open": 12.0,
                "trio_ws_connections_opened_total": 12.0,
            }
            assert await server.wait_for(expected) == expected
            await trio.sleep(1.5)  # past the share interval: the victim's file is current
            service_lines = len(service.out)
            os.kill(pids["0"], signal.SIGKILL)
            await service.line(r"worker \d+ listening", after=service_lines, seconds=10)
            with trio.fail_after(10):
                for ws in held["0"]:
                    await ws.wait_closed()
            expected = {
                'trio_ws_worker_connections_open{worker="0"}': 0.0,  # the replacement, from zero
                'trio_ws_worker_connections_open{worker="1"}': counts["1"],
                "trio_ws_connections_open": counts["1"],
                "trio_ws_connections_opened_total": 12.0,  # the dead worker's count stays
                "resets(trio_ws_connections_opened_total[1m])": 0.0,
                'trio_ws_handshakes_total{status="101"}': 12.0,
            }
            assert await server.wait_for(expected) == expected
            # The replacement serves, from zero: a new connection counts on top.
            await echo_client(port)
            more = await server.wait_for({"trio_ws_connections_opened_total": 13.0})
            assert more == {"trio_ws_connections_opened_total": 13.0}
            nursery.cancel_scope.cancel()


async def test_the_supervisor_serves_metrics_port_with_every_workers_figures() -> None:
    """`--metrics-port`: the supervisor answers there, from what each worker shares; the
    service's own port does not serve /metrics (the app's Router answers 404)."""
    port, metrics_port = free_port(), free_port()
    flags = ("--port", str(port), "--workers", "2", "--metrics-port", str(metrics_port))
    async with serve(APP, *flags) as service:
        await service.line("2 workers ready")
        await service.line(rf"metrics on http://127.0.0.1:{metrics_port}/metrics")
        await echo_traffic(port)
        expected = {
            ("trio_ws_connections_opened_total", ()): float(CONNECTIONS),
            ("trio_ws_messages_received_total", (("kind", "text"),)): float(CONNECTIONS * MESSAGES),
        }
        with trio.fail_after(10):
            while True:
                samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                got = {key: samples.get((key[0], frozenset(key[1])), 0.0) for key in expected}
                workers = {labels for name, labels in samples if name == "trio_ws_worker_connections_open"}
                if got == expected and len(workers) == 2:
                    break
                await trio.sleep(0.2)
        assert workers == {frozenset({("worker", "0")}), frozenset({("worker", "1")})}
        status, _ = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 404
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0
