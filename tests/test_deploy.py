"""`python -m trio_ws serve` in production: supervised workers, a drain on SIGTERM, rolling
restarts on SIGHUP, and one `ServerConfig` for the whole app (tests/deploy_app.py). Real
processes, real sockets, a real redis-server."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import RedisServer, free_port, raise_open_file_limit
from .service import LoopingClients, Resumer, serve

APP = "tests.deploy_app:config"


async def test_a_killed_worker_is_replaced_within_a_second_and_its_clients_resume_with_nothing_lost(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2", "--redis", redis_server.url) as service:
        await service.line("2 workers ready")
        first = service.pids()
        stop = trio.Event()
        resumers = [Resumer(port) for _ in range(20)]
        async with trio.open_nursery() as nursery:
            for resumer in resumers:
                nursery.start_soon(resumer.run, stop)
            await trio.sleep(1)  # steady load: 20 subscribers, two tickers
            victim = first[0]
            before = len(service.out)
            killed_at = time.monotonic()
            service_pid_line = len(service.err)
            os.kill(victim, signal.SIGKILL)
            replacement = await service.line(r"worker \d+ listening", after=before, seconds=5)
            replaced_in = time.monotonic() - killed_at
            death = await service.line(
                rf"worker {victim} was killed by SIGKILL", stream="err", after=service_pid_line
            )
            await trio.sleep(1.5)  # everyone reconnected and caught up
            stop.set()
        assert replaced_in < 1.0, (replaced_in, replacement)
        assert "starting another" in death
        on_victim = [r for r in resumers if victim in r.pids]
        assert on_victim, "no client was on the killed worker"
        for resumer in resumers:
            assert resumer.unrecovered == 0
            assert len(resumer.offsets) == len(set(resumer.offsets))  # no duplicate
        for resumer in on_victim:
            assert resumer.connections >= 2 and resumer.pids[-1] != victim
        service.signal(signal.SIGTERM)
        # A worker died unasked on the way: the exit code says so.
        assert await service.wait(15) == 1


async def test_a_target_that_cannot_be_imported_stops_serve_workers_within_5_s() -> None:
    async with serve("tests.no_such_module:config", "--port", "0", "--workers", "2") as service:
        started = time.monotonic()
        code = await service.wait(5)
    assert code != 0 and time.monotonic() - started < 5
    errors = [line for line in service.err if "no_such_module" in line]
    assert len(errors) == 1 and "No module named 'tests.no_such_module'" in errors[0], service.err


async def test_a_worker_that_cannot_start_stops_the_service_with_its_error() -> None:
    async with serve("tests.deploy_app:broken", "--port", "0", "--workers", "2") as service:
        code = await service.wait(10)
    assert code == 3, (service.out, service.err)
    assert any("the database is not there" in line for line in service.err)
    assert any("before it was ready; stopping" in line for line in service.err), service.err


async def test_a_crash_loop_stops_the_service(tmp_path: Path) -> None:
    (tmp_path / "crashing.py").write_text(
        "import os, trio, trio_ws\n"
        "from contextlib import asynccontextmanager\n"
        "@asynccontextmanager\n"
        "async def dies_soon(server, hub):\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        async def die():\n"
        "            await trio.sleep(0.2)\n"
        "            os._exit(7)\n"
        "        nursery.start_soon(die)\n"
        "        yield\n"
        "async def echo(ws):\n"
        "    pass\n"
        "config = trio_ws.ServerConfig(handler=echo, lifespan=dies_soon)\n"
    )
    async with serve("crashing:config", "--port", "0", "--workers", "2", cwd=tmp_path) as service:
        code = await service.wait(30)
    assert code == 3
    assert any("exited with code 7" in line and "crash loop; stopping" in line for line in service.err), (
        service.err
    )


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_drains_busy_handlers_then_closes_the_rest_with_1001(workers: str) -> None:
    """100 echo clients, 10 of them busy for 2 s, one that never reads, one whose handler
    never looks at its connection, then SIGTERM:
    nothing new is accepted after 100 ms, the busy ones finish and send their answer, every
    client then gets 1001, and the process exits 0 within graceful_timeout (3 s) +
    close_timeout (2 s)."""
    raise_open_file_limit(1024)
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", workers) as service:
        await service.line("workers ready" if workers == "2" else "listening on")
        url = f"ws://127.0.0.1:{port}"
        answers: dict[int, str] = {}
        codes: list[int] = []
        async with trio.open_nursery() as nursery:
            ready = trio.Semaphore(0)

            async def client(i: int) -> None:
                async with trio_ws.connect(f"{url}/echo") as ws:
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                    if i < 10:
                        await ws.send("work")
                    ready.release()
                    try:
                        while True:
                            answers[i] = await ws.recv()
                    except trio_ws.ConnectionClosed as closed:
                        codes.append(closed.code)

            async def ignored_client() -> None:
                """Its handler never looks at its connection again."""
                async with trio_ws.connect(f"{url}/ignore") as ws:
                    ready.release()
                    with pytest.raises(trio_ws.ConnectionClosed) as closed:
                        await ws.recv()
                    ignored.append(closed.value.code)

            ignored: list[int] = []
            for i in range(100):
                nursery.start_soon(client, i)
            nursery.start_soon(ignored_client)
            for _ in range(101):
                await ready.acquire()
            # A client that never reads: the server's buffers towards it are full.
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            await stalled.send_all(
                f"GET /flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await trio.sleep(0.5)
            signalled = time.monotonic()
            service.signal(signal.SIGTERM)
            await trio.sleep(0.1)
            with pytest.raises(OSError):  # refused: the port is closed
                async with trio_ws.connect(f"{url}/echo", open_timeout=1):
                    pass
            code = await service.wait(3 + 2 + 2)
            took = time.monotonic() - signalled
        await stalled.aclose()
    assert ignored == [1001]
    assert code == 0, service.err
    assert took < 3 + 2 + 1, took
    assert [answers.get(i) for i in range(10)] == ["done"] * 10
    assert sorted(codes) == [1001] * 100


async def test_sighup_restarts_every_worker_with_new_code_and_refuses_nobody(tmp_path: Path) -> None:
    """200 clients connect, talk and close in a loop; SIGHUP: every worker pid changes, the
    new code answers, and not one connection attempt fails."""
    raise_open_file_limit(2048)
    app = tmp_path / "rolling.py"
    source = (Path(__file__).parent / "deploy_app.py").read_text()
    app.write_text(source.replace('VERSION = os.environ.get("DEPLOY_APP_VERSION", "1")', 'VERSION = "old"'))
    port = free_port()
    async with serve("rolling:config", "--port", str(port), "--workers", "2", cwd=tmp_path) as service:
        await service.line("2 workers ready")
        old = set(service.pids())
        clients = LoopingClients(f"ws://127.0.0.1:{port}")
        stop = trio.Event()

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(clients.run, stop)
            await trio.sleep(1)
            app.write_text(
                source.replace('VERSION = os.environ.get("DEPLOY_APP_VERSION", "1")', 'VERSION = "new"')
            )
            before = len(service.out)
            service.signal(signal.SIGHUP)
            await service.line("restarted: 2 workers ready", after=before)
            new = set(service.pids(after=before))
            await trio.sleep(4)  # the old generation drains (graceful_timeout: 3 s) meanwhile
            stop.set()
        assert not clients.failures, (len(clients.failures), clients.failures[:3], clients.attempts)
        assert clients.attempts > 400, clients.attempts
        seen = clients.seen
        assert new and not (new & old)
        assert {version for pid, version in seen if pid in new} == {"new"}
        assert {version for pid, version in seen if pid in old} == {"old"}
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0, service.err


async def test_one_config_runs_the_whole_app_resuming_across_workers_with_no_flag(
    redis_server: RedisServer,
) -> None:
    """`serve tests.deploy_app:config --workers 2 --redis URL`: the history comes from its
    HubConfig and the ticks from its lifespan. A client resumes, on whichever worker it
    lands, with nothing missed and nothing twice."""
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2", "--redis", redis_server.url) as service:
        await service.line("2 workers ready")
        resumer = Resumer(port)
        for _ in range(40):
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(resumer.run, stop)
                await trio.sleep(0.05)
                stop.set()
            if len(set(resumer.pids)) == 2 and resumer.connections >= 4:
                break
        assert len(set(resumer.pids)) == 2, resumer.pids  # it did land on both workers
        assert resumer.unrecovered == 0
        assert resumer.offsets == list(range(resumer.offsets[0], resumer.offsets[0] + len(resumer.offsets)))
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0, service.err


async def test_pid_file_names_the_supervisor_while_it_runs(tmp_path: Path) -> None:
    pid_file = tmp_path / "serve.pid"
    async with serve(APP, "--port", "0", "--workers", "2", "--pid-file", str(pid_file)) as service:
        await service.line("2 workers ready")
        assert int(pid_file.read_text()) == service.process.pid
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0
    assert not pid_file.exists()


async def test_a_restart_into_code_that_cannot_start_keeps_the_old_workers_serving(tmp_path: Path) -> None:
    """SIGHUP with a broken app on disk, three times: the new workers die before they are
    ready, each restart is logged as failed, the old workers answer throughout, and these
    failures are not deaths: no crash loop stops the service, and it exits 0."""
    app = tmp_path / "rolling.py"
    source = (Path(__file__).parent / "deploy_app.py").read_text()
    app.write_text(source)
    port = free_port()
    async with serve("rolling:config", "--port", str(port), "--workers", "2", cwd=tmp_path) as service:
        await service.line("2 workers ready")
        old = set(service.pids())
        app.write_text(source + "\nraise RuntimeError('a bug in the new release')\n")
        for attempt in range(3):
            before = len(service.err)
            service.signal(signal.SIGHUP)
            await service.line("did not all start; the old ones keep serving", stream="err", after=before)
            async with trio_ws.connect(f"ws://127.0.0.1:{port}/pid") as ws:
                assert int((await ws.recv()).split()[0]) in old, attempt
        assert any("a bug in the new release" in line for line in service.err)
        assert set(service.pids()) == old
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0, service.err


async def test_a_second_signal_stops_at_once() -> None:
    """The first SIGTERM drains (handlers would have 3 s); a second one stops now."""
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2") as service:
        await service.line("2 workers ready")
        async with trio_ws.connect(f"ws://127.0.0.1:{port}/echo") as ws:
            service.signal(signal.SIGTERM)
            await trio.sleep(0.3)
            started = time.monotonic()
            service.signal(signal.SIGTERM)
            code = await service.wait(10)
            with pytest.raises(trio_ws.ConnectionClosed):
                await ws.recv()
        assert time.monotonic() - started < 1.5
        assert code == 0, service.err


async def test_workers_drain_and_exit_when_their_supervisor_is_killed() -> None:
    """SIGKILL to the supervisor (an OOM kill) leaves its workers orphaned: each sees its
    parent gone within a second, drains and exits, instead of holding the port forever."""
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2") as service:
        await service.line("2 workers ready")
        pids = service.pids()
        service.signal(signal.SIGKILL)
        with trio.fail_after(3 + 2 + 3):
            while any(alive(pid) for pid in pids):
                await trio.sleep(0.1)
        assert any("the supervisor" in line and "is gone: draining" in line for line in service.err)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


async def test_sigterm_during_a_rolling_restart_stops_every_generation() -> None:
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2") as service:
        await service.line("2 workers ready")
        service.signal(signal.SIGHUP)
        await trio.sleep(0.05)  # the new generation is starting
        service.signal(signal.SIGTERM)
        assert await service.wait(15) == 0, service.err
        pids = [int(pid) for line in service.out for pid in re.findall(r"worker (\d+) listening", line)]
        assert not any(alive(pid) for pid in pids)
        assert not any("did not all start" in line for line in service.err)


async def test_a_client_resumes_through_a_per_attempt_uri_across_three_server_restarts(
    redis_server: RedisServer,
) -> None:
    """`reconnect(function)`: each attempt's URI carries the latest position seen. The server
    (history in Redis) is stopped and started again three times on the same port; the
    client resumes every time, recovered, with every offset once and in order."""
    port = free_port()
    resumer = Resumer(port)
    stop = trio.Event()  # never set: the client runs until cancelled
    async with trio.open_nursery() as nursery:
        for restart in range(4):
            async with serve(
                APP, "--port", str(port), "--redis", redis_server.url, "--graceful-timeout", "0"
            ) as service:
                await service.line("listening on")
                if restart == 0:
                    nursery.start_soon(resumer.run, stop)
                seen = len(resumer.offsets)
                with trio.fail_after(10):
                    while len(resumer.offsets) < seen + 20:  # it reached this server, and got ticks
                        await trio.sleep(0.05)
                service.signal(signal.SIGTERM)
                assert await service.wait(10) == 0
        nursery.cancel_scope.cancel()
    assert resumer.connections >= 4 and len(set(resumer.pids)) == 4
    assert resumer.unrecovered == 0
    first = resumer.offsets[0]
    assert resumer.offsets == list(range(first, first + len(resumer.offsets)))


async def test_new_connections_are_spread_over_the_workers() -> None:
    """One socket per worker in a SO_REUSEPORT group: the kernel spreads connections over
    the workers. (With one socket shared by all, the worker the kernel woke first took
    nearly every connection: 100 in a row to the same one.)"""
    port = free_port()
    async with serve(APP, "--port", str(port), "--workers", "2") as service:
        await service.line("2 workers ready")
        served: dict[int, int] = {}
        for _ in range(40):
            async with trio_ws.connect(f"ws://127.0.0.1:{port}/pid") as ws:
                pid = int((await ws.recv()).split()[0])
                served[pid] = served.get(pid, 0) + 1
        assert set(served) == set(service.pids()) and min(served.values()) >= 8, served
