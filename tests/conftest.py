"""Shared fixtures: servers on 127.0.0.1 with a free port, and example processes."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings

import trio_ws
from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis: "ci" (loaded by .ci/run through HYPOTHESIS_PROFILE) runs five times the
# examples of the default; properties size themselves with strategies.examples(n).
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "alone: measures time, memory or load, so no other test runs beside it"
    )


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Under pytest-xdist, share the machine: an `alone` test holds an exclusive lock, the
    others a shared one, for their whole run (fixtures included). It wraps pytest-timeout's
    hook, so that waiting for the lock does not count against a test's timeout."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: every test runs alone anyway
        yield
        return
    import fcntl
    import tempfile

    alone = item.get_closest_marker("alone") is not None
    with open(Path(tempfile.gettempdir()) / f"trio_ws-tests-{run}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context that trusts
    it (a fresh trustme CA)."""
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def raise_open_file_limit(needed: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit to `needed` descriptors (as far as the hard limit
    allows); skip the test, saying why, if it cannot reach it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # root (as in CI) may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
async def echo_server() -> AsyncIterator[trio_ws.WebSocketServer]:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        yield server


def ws_url(server: trio_ws.WebSocketServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def readline_within(stream: object, seconds: float) -> str:
    """One line from a subprocess pipe, or RuntimeError after `seconds`: never hangs.

    A thread reads it: `select()` on the pipe would miss a line the text wrapper has
    already buffered (two workers' lines often arrive in one read).
    """
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)  # type: ignore[attr-defined]
    reader.start()
    reader.join(seconds)
    if not lines:
        raise RuntimeError(f"no line within {seconds}s")
    return lines[0]


class ExampleProcess:
    """An example script run as its own process; its first stdout line names the URL."""

    def __init__(self, script: str, *args: str, path: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(path or ROOT / "examples" / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        try:
            line = readline_within(self.proc.stdout, 30)
        except RuntimeError:
            line = ""
        if "ws://" not in line:
            self.stop()
            raise RuntimeError(f"{script} did not start: {line!r} {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.url = line[line.index("ws://") :].strip()
        self.stderr = ""  # what it wrote there, once stopped

    def rss(self) -> int:
        """The process's resident memory in bytes."""
        return rss_of(self.proc.pid)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def rss_of(pid: int | str = "self") -> int:
    """Resident memory of a process in bytes, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


@contextlib.contextmanager
def hostile_server(**options: object) -> Iterator[ExampleProcess]:
    """tests/hostile_server.py in its own process (routes /echo and /idle)."""
    process = ExampleProcess("", json.dumps(options), path=ROOT / "tests" / "hostile_server.py")
    try:
        yield process
    finally:
        process.stderr = process.stop()


@dataclass
class Canary:
    """What a well-behaved echo client saw while something hostile went on."""

    round_trips: int = 0
    longest_pause: float = 0.0
    pauses: list[float] = field(default_factory=list)


def with_canary(handler: trio_ws.server.Handler) -> trio_ws.server.Handler:
    """`handler`, except that the path /canary is an echo endpoint for `healthy_canary`."""

    async def routed(ws: trio_ws.WebSocket) -> None:
        await (echo(ws) if ws.path == "/canary" else handler(ws))

    return routed


@contextlib.asynccontextmanager
async def healthy_canary(url: str, *, max_pause: float = 0.25, **options: Any) -> AsyncIterator[Canary]:
    """Echo round trips on their own connection for as long as the block runs and five
    more after it; then check that none waited longer than `max_pause` seconds. `options`
    are `connect`'s (http2=True, say)."""
    canary = Canary()
    async with trio_ws.connect(url, **options) as ws, trio.open_nursery() as nursery:

        async def echo_loop() -> None:
            last = trio.current_time()
            while True:
                await ws.send(f"canary {canary.round_trips}")
                assert await ws.recv() == f"canary {canary.round_trips}"
                now = trio.current_time()
                canary.longest_pause = max(canary.longest_pause, now - last)
                canary.round_trips += 1
                last = now
                await trio.sleep(0.005)

        nursery.start_soon(echo_loop)
        with trio.fail_after(5):  # connected and served before the hostile part starts
            while not canary.round_trips:
                await trio.sleep(0.005)
        yield canary
        after = canary.round_trips + 5  # and the server still serves once it is over
        with trio.move_on_after(2):
            while canary.round_trips < after:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    print(f"canary: {canary.round_trips} round trips, longest pause {canary.longest_pause * 1000:.0f} ms")
    assert canary.round_trips >= after, "the healthy client must really have been echoing"
    assert canary.longest_pause < max_pause, f"the healthy client waited {canary.longest_pause:.3f}s"


@pytest.fixture
def echo_process() -> Iterator[ExampleProcess]:
    process = ExampleProcess("echo.py", "--port", "0")
    yield process
    process.stop()


HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

CLOSE_REPLY = serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe8"), mask=True)


class RawClient:
    """A hand-driven TCP peer, for clients that misbehave on purpose."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = bytearray()
        self.handshake_head = b""

    @classmethod
    async def connect(
        cls, port: int, *, handshake: bool = True, path: str = "/", headers: bytes = b""
    ) -> RawClient:
        """A TCP connection, upgraded unless `handshake` is False; `headers` are extra
        request header lines (each ending in CRLF)."""
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        if handshake:
            request = HANDSHAKE.replace(b"GET / ", f"GET {path} ".encode()).replace(
                b"\r\n\r\n", b"\r\n" + headers + b"\r\n"
            )
            await client.stream.send_all(request)
            while b"\r\n\r\n" not in client.received:
                chunk = await client.stream.receive_some()
                assert chunk, "server closed during the handshake"
                client.received += chunk
            head, _, rest = bytes(client.received).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            client.handshake_head = head
            client.received = bytearray(rest)
        return client

    async def read_to_eof(self, *, websocket: bool = True) -> bytes:
        """Everything until the server closes (a reset counts), then close our side too.

        On a WebSocket, answers the server's close frame with one, as a real client does.
        """
        answered = not websocket
        while True:
            # The close frame may already be here (it can share a segment with the 101).
            if not answered and any(f.opcode is Opcode.CLOSE for f in self.frames()):
                answered = True
                with contextlib.suppress(trio.BrokenResourceError):
                    await self.stream.send_all(CLOSE_REPLY)
            try:
                chunk = await self.stream.receive_some()
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            self.received += chunk
        await self.stream.aclose()
        return bytes(self.received)

    def frames(self) -> list[Frame]:
        parser = FrameParser(require_mask=False)
        parser.feed(self.received)
        out = []
        while (frame := parser.next_frame()) is not None:
            out.append(frame)
        return out


def wait_until_up(
    process: subprocess.Popen[bytes], is_up: Callable[[], object], what: Callable[[], str], seconds: float
) -> None:
    """Return once `is_up()` stops raising OSError; RuntimeError with `what()` (its log, say)
    if `process` exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            is_up()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(what()) from None
            time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def install_debian_package(package: str) -> None:
    """`apt-get install` `package`, as root, one install at a time across the test workers
    (parallel installs would fail on dpkg's lock); `apt-get update` first if it is unknown."""
    import fcntl
    import shutil

    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", package]
    with open("/tmp/trio_ws-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)


def debian_binary(name: str, package: str | None = None) -> str:
    """The path of `name`, installing its Debian package (as root) when it is missing."""
    import shutil

    path = shutil.which(name)
    if path is None:
        install_debian_package(package or name)
        path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is needed: apt-get install {package or name} (its tests must run)")
    return path


def redis_server_binary() -> str:
    """redis-server, installed from Debian's package when running as root without it."""
    return debian_binary("redis-server")


class RedisServer:
    """A real redis-server on a free port of 127.0.0.1, with no persistence.

    `extra` are more command-line settings (`--user ...`, `--requirepass ...`); with
    `tls_dir` holding cert.pem, key.pem and ca.pem it speaks TLS only, on that port.
    """

    def __init__(self, *extra: str, tls_dir: Path | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis{'s' if tls_dir else ''}://127.0.0.1:{self.port}/0"
        self.extra = list(extra)
        self.tls_dir = tls_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import socket
        import time

        ports = ["--port", str(self.port)]
        if self.tls_dir is not None:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            for setting, name in [("cert", "cert.pem"), ("key", "key.pem"), ("ca-cert", "ca.pem")]:
                ports += [f"--tls-{setting}-file", str(self.tls_dir / name)]
        self.proc = subprocess.Popen(
            [self.binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *self.extra],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as plain:
                    sock = plain
                    if self.tls_dir is not None:
                        import ssl

                        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
                        sock = context.wrap_socket(plain, server_hostname="127.0.0.1")
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # up (maybe wanting a password)
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, nothing flushed."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def command(self, *args: str) -> bytes:
        """Run one command and return the raw reply (enough for tests)."""
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(65536)


class RedisCluster:
    """A Redis Cluster of 3 primaries and 3 replicas on free ports of 127.0.0.1, each node a
    redis-server without persistence in a directory of its own, made with
    `redis-cli --cluster create`; a replica takes over 1 s after its primary is lost."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for n in range(6):  # a directory each: a replica writes the RDB it syncs there
            (directory / f"node-{n}").mkdir()
        self.nodes = [RedisServer(
            "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
            "--cluster-require-full-coverage", "no",  # the other shards serve during a failover
            "--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0",
            "--dir", str(directory / f"node-{n}"), "--cluster-config-file", "nodes.conf",
            "--logfile", str(directory / f"node-{n}" / "log.txt"),
        ) for n in range(6)]  # fmt: skip
        for node in self.nodes:
            node.port = self.port_with_a_free_bus()
            node.url = f"redis://127.0.0.1:{node.port}/0"

    @staticmethod
    def port_with_a_free_bus() -> int:
        """A free port whose cluster bus port (10000 above it) exists and is free too."""
        import socket

        while True:
            port = free_port()
            if port + 10000 > 65535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        import time

        for node in self.nodes:
            node.start()
        cli = debian_binary("redis-cli", "redis-tools")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not all(b"cluster_state:ok" in node.command("CLUSTER", "INFO") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up")
            time.sleep(0.1)
        while True:  # and every replica has synced: one that has not could not take over
            roles = [node.command("INFO", "replication") for node in self.nodes]
            replicas = [role for role in roles if b"role:slave" in role]
            if len(replicas) == 3 and all(b"master_link_status:up" in role for role in replicas):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not sync")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def node_at(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def all_tasks() -> int:
    """Every task in this trio run, found by walking the task tree from the root."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count
