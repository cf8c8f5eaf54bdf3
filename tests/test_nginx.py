"""Behind a real nginx (Debian's package), with the configuration docs/deploy.md gives: the
upgrade, keepalive across `proxy_read_timeout`, wss terminated at nginx, the client's real
address with trusted proxies (and not with untrusted ones), a drain and a rolling restart
seen through nginx."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

import trio_ws

from .conftest import ROOT, RedisServer, debian_binary, free_port, wait_until_up
from .service import LoopingClients, Resumer, serve

PROXY_ADDRESS = "127.0.0.3"  # nginx connects to the backend from here (proxy_bind), the client from 127.0.0.1
READ_TIMEOUT = 2  # proxy_read_timeout in these tests, for a test that takes seconds


def documented_nginx_config() -> str:
    """The ```nginx block of docs/deploy.md that holds the whole configuration."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    return next(block for block in blocks if "upstream" in block)


@dataclass
class Nginx:
    port: int
    tls_port: int
    ca: trustme.CA

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"wss://localhost:{self.tls_port}"

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[int], Nginx]]:
    """A function starting nginx in front of a backend port, with the documented config."""
    binary = debian_binary("nginx")
    processes: list[subprocess.Popen[bytes]] = []

    def start(backend_port: int) -> Nginx:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
        port, tls_port = free_port(), free_port()
        server = documented_nginx_config()
        server = server.replace("127.0.0.1:8765", f"127.0.0.1:{backend_port}")
        server = server.replace("listen 80;", (
            f"listen 127.0.0.1:{port};\n    listen 127.0.0.1:{tls_port} ssl;\n"
            f"    ssl_certificate {tmp_path}/cert.pem;\n    ssl_certificate_key {tmp_path}/cert.pem;\n"
            f"    proxy_bind {PROXY_ADDRESS};"
        ))  # fmt: skip
        server = server.replace("proxy_read_timeout 60s;", f"proxy_read_timeout {READ_TIMEOUT}s;")
        (tmp_path / "nginx.conf").write_text(
            f"worker_processes 1;\nerror_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\n"
            + ("user root;\n" if os.geteuid() == 0 else "")
            + "events { worker_connections 4096; }\n"
            + f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n proxy_temp_path {tmp_path};\n"
            + f" fastcgi_temp_path {tmp_path};\n uwsgi_temp_path {tmp_path};\n scgi_temp_path {tmp_path};\n"
            + server
            + "\n}\n"
        )
        process = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        wait_until_up(
            process,
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(),
            lambda: f"nginx did not start: {process.stderr.read() if process.stderr else ''!r}",
            seconds=10,
        )
        return Nginx(port, tls_port, ca)

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


async def whoami(ws: trio_ws.WebSocket) -> None:
    await ws.send(json.dumps({"remote": list(ws.remote_address)[:2], "scheme": ws.request.scheme}))
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def backend(**options: object) -> AsyncIterator[trio_ws.WebSocketServer]:
    async with trio_ws.open_server(whoami, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
        yield server


async def test_the_upgrade_the_real_address_and_wss_through_nginx(nginx: Callable[[int], Nginx]) -> None:
    async with backend(forwarded_allow_ips=[PROXY_ADDRESS]) as server:
        proxy = nginx(server.port)
        # Plain: the client's address (nginx's X-Forwarded-For), not nginx's.
        async with trio_ws.connect(f"{proxy.url}/x") as ws:
            seen = json.loads(await ws.recv())
            await ws.send("through nginx")
            assert await ws.recv() == "through nginx"
        assert seen == {"remote": ["127.0.0.1", 0], "scheme": "ws"}
        # A client that claims another address: nginx appends the real one, which is not a
        # trusted proxy, so that one is the client.
        async with trio_ws.connect(f"{proxy.url}/x", extra_headers={"X-Forwarded-For": "203.0.113.9"}) as ws:
            assert json.loads(await ws.recv())["remote"] == ["127.0.0.1", 0]
        # TLS ends at nginx, which says so in X-Forwarded-Proto.
        async with trio_ws.connect(f"{proxy.tls_url}/x", ssl_context=proxy.client_context()) as ws:
            assert json.loads(await ws.recv()) == {"remote": ["127.0.0.1", 0], "scheme": "wss"}
        # Straight to the backend, not through the trusted proxy: the header is ignored.
        async with trio_ws.connect(
            f"ws://127.0.0.1:{server.port}/x", extra_headers={"X-Forwarded-For": "203.0.113.9"}
        ) as ws:
            assert json.loads(await ws.recv())["remote"][0] == "127.0.0.1"


async def test_without_trusted_proxies_the_address_is_nginxs(nginx: Callable[[int], Nginx]) -> None:
    async with backend() as server:
        proxy = nginx(server.port)
        async with trio_ws.connect(f"{proxy.url}/x", extra_headers={"X-Forwarded-For": "203.0.113.9"}) as ws:
            seen = json.loads(await ws.recv())
    assert seen["remote"][0] == PROXY_ADDRESS and seen["scheme"] == "ws"


@pytest.mark.parametrize("ping_interval", [0.5, None])
async def test_keepalive_pings_hold_a_connection_open_across_proxy_read_timeout(
    nginx: Callable[[int], Nginx], ping_interval: float | None
) -> None:
    """Idle for twice nginx's proxy_read_timeout: the server's pings keep the connection;
    without them, nginx cuts it."""
    async with backend(ping_interval=ping_interval) as server:
        proxy = nginx(server.port)
        async with trio_ws.connect(f"{proxy.url}/x", ping_interval=None) as ws:
            await ws.recv()
            await trio.sleep(2 * READ_TIMEOUT + 0.5)
            if ping_interval is None:
                with pytest.raises(trio_ws.ConnectionClosed):
                    await ws.send("still there?")
                    await ws.recv()
            else:
                await ws.send("still there?")
                assert await ws.recv() == "still there?"


async def test_a_drain_and_a_rolling_restart_through_nginx(nginx: Callable[[int], Nginx]) -> None:
    """SIGHUP under clients that reconnect through nginx in a loop: none refused (nginx
    would answer 502 if the backend refused it); then SIGTERM: a client through nginx gets
    1001 once the graceful timeout is over."""
    port = free_port()
    async with serve(
        "tests.deploy_app:config", "--port", str(port), "--workers", "2", "--graceful-timeout", "1"
    ) as service:
        await service.line("2 workers ready")
        proxy = nginx(port)
        clients = LoopingClients(proxy.url)
        stop = trio.Event()

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(clients.run, stop)
            await trio.sleep(0.5)
            before = len(service.out)
            service.signal(signal.SIGHUP)
            await service.line("restarted: 2 workers ready", after=before)
            await trio.sleep(1.5)
            stop.set()
        assert not clients.failures, clients.failures[:3]
        assert clients.attempts > 100
        async with trio_ws.connect(f"{proxy.url}/echo") as ws:
            service.signal(signal.SIGTERM)
            with pytest.raises(trio_ws.ConnectionClosed) as closed:
                with trio.fail_after(10):
                    while True:
                        await ws.recv()
        assert closed.value.code == 1001
        assert await service.wait(15) == 0


async def test_a_killed_worker_behind_nginx_its_clients_resume_with_nothing_lost(
    nginx: Callable[[int], Nginx], redis_server: RedisServer
) -> None:
    """The crash case through nginx: clients resuming through the proxy (which answers
    502 while no worker takes the connection) reconnect to the other worker, recovered."""
    port = free_port()
    async with serve(
        "tests.deploy_app:config", "--port", str(port), "--workers", "2", "--redis", redis_server.url
    ) as service:
        await service.line("2 workers ready")
        proxy = nginx(port)
        victim = service.pids()[0]
        resumers = [Resumer(proxy.port) for _ in range(10)]
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for resumer in resumers:
                nursery.start_soon(resumer.run, stop)
            await trio.sleep(1)
            os.kill(victim, signal.SIGKILL)
            await service.line(rf"worker {victim} was killed by SIGKILL", stream="err")
            await trio.sleep(1.5)
            stop.set()
        on_victim = [r for r in resumers if victim in r.pids]
        assert on_victim
        for resumer in resumers:
            assert resumer.unrecovered == 0 and resumer.offsets
            assert len(resumer.offsets) == len(set(resumer.offsets))
        for resumer in on_victim:
            assert resumer.pids[-1] != victim
