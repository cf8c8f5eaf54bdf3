"""Shared fixtures: servers on 127.0.0.1 with a free port, and example processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

import trio_ws
from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame

ROOT = Path(__file__).resolve().parent.parent


async def echo(ws: trio_ws.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
async def echo_server() -> AsyncIterator[trio_ws.WebSocketServer]:
    async with trio_ws.open_server(echo, "127.0.0.1", 0) as server:
        yield server


def ws_url(server: trio_ws.WebSocketServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


class ExampleProcess:
    """An example script run as its own process; its first stdout line names the URL."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ws://" not in line:
            self.stop()
            raise RuntimeError(f"{script} did not start: {line!r} {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.url = line[line.index("ws://") :].strip()

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


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

    @classmethod
    async def connect(cls, port: int, *, handshake: bool = True) -> RawClient:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        if handshake:
            await client.stream.send_all(HANDSHAKE)
            while b"\r\n\r\n" not in client.received:
                chunk = await client.stream.receive_some()
                assert chunk, "server closed during the handshake"
                client.received += chunk
            head, _, rest = bytes(client.received).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """Find redis-server, installing Debian's package when running as root without it."""
    import shutil

    path = shutil.which("redis-server")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "redis-server"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)
        path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is needed: apt-get install redis-server (the Redis tests must run)")
    return path


class RedisServer:
    """A real redis-server on a free port of 127.0.0.1, with no persistence."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import socket
        import time

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def command(self, *args: str) -> bytes:
        """Run one command and return the raw reply (enough for tests)."""
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(65536)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
