"""`python -m trio_ws serve ...` as a real process, its output lines collected as they come,
and a client that resumes: for the deployment tests (supervisor, drain, restarts, nginx)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import trio_ws

from .conftest import ROOT


class Service:
    """A running `serve` command: its process, and every line of its stdout and stderr."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = trio.Event()

    async def collect(self, stream: trio.abc.ReceiveStream, lines: list[str]) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines.extend(line.decode("utf-8", "replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if pending:
            lines.append(pending.decode("utf-8", "replace"))
        self._changed.set()

    async def line(self, pattern: str, *, stream: str = "out", after: int = 0, seconds: float = 30) -> str:
        """The first line (from index `after`) matching the regex `pattern`; fails after `seconds`."""
        lines = self.out if stream == "out" else self.err
        with trio.fail_after(seconds):
            while True:
                for line in lines[after:]:
                    if re.search(pattern, line):
                        return line
                if self.process.returncode is not None and self._changed.is_set():
                    raise AssertionError(
                        f"exited {self.process.returncode} before {pattern!r}: {self.out} {self.err}"
                    )
                await self._changed.wait()

    def pids(self, after: int = 0) -> list[int]:
        """The pids of the workers that said they listen, in order."""
        return [
            int(m.group(1)) for line in self.out[after:] if (m := re.match(r"worker (\d+) listening", line))
        ]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, seconds: float) -> int:
        with trio.fail_after(seconds):
            return await self.process.wait()


@asynccontextmanager
async def serve(
    *args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] = ROOT
) -> AsyncIterator[Service]:
    """`python -m trio_ws serve ARGS...`; killed on the way out if still running."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=environment,
    )
    service = Service(process)
    async with trio.open_nursery() as nursery:
        assert process.stdout is not None and process.stderr is not None
        nursery.start_soon(service.collect, process.stdout, service.out)
        nursery.start_soon(service.collect, process.stderr, service.err)
        try:
            yield service
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            for pid in service.pids():  # the workers too, if the supervisor left them
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with trio.move_on_after(10):
                await process.wait()
            nursery.cancel_scope.cancel()


class Resumer:
    """A client of /ticks that resumes from its latest position through a per-attempt URI,
    checking that it sees every offset once, in order, across reconnections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.last: trio_ws.StreamPosition | None = None
        self.offsets: list[int] = []
        self.connections = 0
        self.pids: list[int] = []
        self.unrecovered = 0

    def uri(self) -> str:
        base = f"ws://127.0.0.1:{self.port}/ticks"
        if self.last is None:
            return base
        return f"{base}?offset={self.last.offset}&epoch={self.last.epoch}"

    async def run(self, until: trio.Event) -> None:
        async with trio_ws.reconnect(self.uri, initial_delay=0.05, max_delay=0.2) as connections:
            async for ws in connections:
                self.connections += 1
                try:
                    start = json.loads(await ws.recv())
                    self.pids.append(start["pid"])
                    if self.last is not None and start["recovered"] is not True:
                        self.unrecovered += 1
                    async for message in ws:
                        tick = json.loads(message)
                        if self.last is not None and tick["epoch"] == self.last.epoch:
                            assert tick["offset"] == self.last.offset + 1, (self.last, tick)
                        self.offsets.append(tick["offset"])
                        self.last = trio_ws.StreamPosition(tick["offset"], tick["epoch"])
                        if until.is_set():
                            return
                except trio_ws.ConnectionClosed:
                    continue


class LoopingClients:
    """Clients of /pid that connect, read the worker's pid and version, echo once and close,
    in a loop: every attempt that fails (refused, reset, an HTTP error) is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.attempts = 0
        self.failures: list[BaseException] = []
        self.seen: set[tuple[int, str]] = set()  # (pid, version) of every answer

    async def run(self, stop: trio.Event) -> None:
        while not stop.is_set():
            self.attempts += 1
            try:
                async with trio_ws.connect(f"{self.url}/pid") as ws:
                    pid, version = (await ws.recv()).split()
                    self.seen.add((int(pid), version))
                    await ws.send("x")
                    assert await ws.recv() == "x"
            except trio_ws.ConnectionClosed as closed:
                if closed.code != 1001:  # a drain's close, after the answer: not a refusal
                    self.failures.append(closed)
            except (OSError, trio_ws.WebSocketError) as exc:
                self.failures.append(exc)
