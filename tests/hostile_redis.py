"""A hostile Redis for tests: a RESP server on 127.0.0.1 that answers a RedisBackend as Redis
would (INFO, SCRIPT LOAD, SUBSCRIBE, PUBLISH, PING), except that a test decides what each of
our scripts answers (raw RESP, however malformed or large) and can push any bytes to the
connections that subscribed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import trio

from trio_ws.backends.redis import SCRIPTS as SCRIPT_TEXTS

SCRIPTS = {hashlib.sha1(text.encode()).hexdigest(): name for name, text in SCRIPT_TEXTS.items()}


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def array(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


class HostileRedis:
    """`await nursery.start(redis.run)`, then `redis.url`. `scripts[name](args)` gives the raw
    answer to EVALSHA of that script (default: a well-formed one)."""

    def __init__(self) -> None:
        self.port = 0
        self.scripts: dict[str, Callable[[list[bytes]], bytes]] = {}
        self.subscribed: list[trio.SocketStream] = []
        self.calls: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    async def push(self, raw: bytes) -> None:
        """Send `raw` to every connection that subscribed."""
        for stream in list(self.subscribed):
            try:
                await stream.send_all(raw)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._forget(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            while data := await stream.receive_some(65536):
                buffer += data
                while (command := _take_command(buffer)) is not None:
                    await stream.send_all(self._answer(stream, command))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._forget(stream)

    def _forget(self, stream: trio.SocketStream) -> None:
        """Stop pushing to `stream` (its connection ended: seen by `push` or by `_serve`)."""
        if stream in self.subscribed:
            self.subscribed.remove(stream)

    def _answer(self, stream: trio.SocketStream, command: list[bytes]) -> bytes:
        name = command[0].upper().decode()
        self.calls.append(name)
        if name == "INFO":
            return bulk(b"# Server\r\nrun_id:hostile\r\n")
        if name == "SCRIPT":
            return bulk(hashlib.sha1(command[2]).hexdigest().encode())
        if name in ("SUBSCRIBE", "SSUBSCRIBE"):
            if stream not in self.subscribed:
                self.subscribed.append(stream)
            kind = name.lower().encode()
            return b"".join(array(bulk(kind), bulk(channel), b":1\r\n") for channel in command[1:])
        if name in ("UNSUBSCRIBE", "SUNSUBSCRIBE"):
            return b"".join(array(bulk(name.lower().encode()), bulk(c), b":0\r\n") for c in command[1:])
        if name == "PING":
            return b"+PONG\r\n" if stream not in self.subscribed else array(bulk(b"pong"), bulk(b""))
        if name == "EVALSHA":
            script = SCRIPTS[command[1].decode()]
            self.calls.append(script)
            answer = self.scripts.get(script)
            if answer is not None:
                return answer(command[3:])
            if script == "POSITION":
                return array(bulk(b"epoch"), b":0\r\n", b":1\r\n")
            if script == "READ":
                return array(bulk(b"epoch"), b":0\r\n", b":1\r\n", b"*0\r\n")
            if script == "MEMBERS":
                return b"*0\r\n"
            if script == "APPEND":
                return array(bulk(b"epoch"), b":1\r\n")
            return b":1\r\n"
        if name in ("PUBLISH", "SPUBLISH"):
            return b":0\r\n"
        return b"+OK\r\n"


def _take_command(buffer: bytearray) -> list[bytes] | None:
    """The first whole command (an array of bulk strings) in `buffer`, removed from it."""
    if not buffer.startswith(b"*"):
        return None
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    count, position, parts = int(buffer[1:end]), end + 2, []
    for _ in range(count):
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return None
        size = int(buffer[position + 1 : end])
        start = end + 2
        if len(buffer) < start + size + 2:
            return None
        parts.append(bytes(buffer[start : start + size]))
        position = start + size + 2
    del buffer[:position]
    return parts
