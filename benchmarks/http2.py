"""WebSockets over HTTP/2 (RFC 8441) against HTTP/1.1, both over TLS, in one run.

    python benchmarks/http2.py [--repeat 3] [--output FILE]

The server is trio_ws (`http2=True`, TLS from a trustme CA) in its own process, pinned to
core 0; the client is trio_ws in this one, pinned to core 1. Server CPU is its main
thread's, from /proc/PID/schedstat. Each workload runs over HTTP/1.1 and over HTTP/2 in
turn, `--repeat` times, interleaved, each on a fresh server; medians are reported.

- open100: 100 WebSockets (`--streams`) to one origin opened at once, cold (no connection
  yet): the time until all are open, and the server CPU per WebSocket.
- open_one: WebSockets opened and closed one after the other (`--opens`, 300), each a TLS
  handshake and an upgrade over HTTP/1.1, each a stream of one warm connection over
  HTTP/2: the server CPU per WebSocket.
- echo64: 10 WebSockets each sending 64-byte messages, 100 in flight, for 2 s
  (`--seconds`): messages per second and server CPU per message.
- memory: 500 open WebSockets (`--memory`) (HTTP/2: four connections, 128 streams each at most): the
  server's resident memory per WebSocket.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio
import trustme

import trio_ws

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = bytes(range(64))


def cpu_seconds(pid: int) -> float:
    """CPU time of the server's main thread (where trio runs), in nanoseconds from
    /proc/PID/schedstat: /proc/PID/stat counts in 10 ms ticks, too coarse here."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def serve(cert: str, key: str) -> None:
    """The server under test (run with --serve)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def echo(ws: trio_ws.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio_ws.open_server(
        echo, "127.0.0.1", 0, ssl_context=context, http2=True, compression=None, ping_interval=None
    ) as server:
        print(f"listening on {server.port}", flush=True)
        await trio.sleep_forever()


class Bench:
    def __init__(
        self, port: int, pid: int, client_context: ssl.SSLContext, sizes: argparse.Namespace
    ) -> None:
        self.uri = f"wss://127.0.0.1:{port}/"
        self.pid = pid
        self.context = client_context
        self.streams, self.opens = sizes.streams, sizes.opens
        self.seconds, self.memory_count = sizes.seconds, sizes.memory

    def connect(self, http2: bool) -> trio_ws.client.Connecting:
        return trio_ws.connect(
            self.uri, ssl_context=self.context, http2=http2, compression=None, ping_interval=None
        )

    @staticmethod
    def check(ws: trio_ws.WebSocket, http2: bool) -> None:
        """That the WebSocket went the way measured: a 200 answers RFC 8441, a 101 HTTP/1.1."""
        assert ws.response.status == (200 if http2 else 101), ws.response.status

    async def open100(self, http2: bool) -> dict[str, float]:
        opened = 0
        all_open, done = trio.Event(), trio.Event()
        cpu = cpu_seconds(self.pid)
        start = trio.current_time()

        async def one() -> None:
            nonlocal opened
            async with self.connect(http2) as ws:
                self.check(ws, http2)
                opened += 1
                if opened == self.streams:
                    all_open.set()
                await done.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(self.streams):
                nursery.start_soon(one)
            await all_open.wait()
            elapsed = trio.current_time() - start
            used = cpu_seconds(self.pid) - cpu
            done.set()
        await trio.sleep(0.3)
        return {"open100_ms": elapsed * 1000, "open100_cpu_us_per_ws": used / self.streams * 1e6}

    async def open_one(self, http2: bool) -> dict[str, float]:
        async with self.connect(http2) as keeper:  # over HTTP/2: keeps the connection warm
            await keeper.send("warm")
            await keeper.recv()
            cpu = cpu_seconds(self.pid)
            for _ in range(self.opens):
                async with self.connect(http2) as ws:
                    self.check(ws, http2)
            used = cpu_seconds(self.pid) - cpu
        await trio.sleep(0.3)
        return {"open_one_cpu_us": used / self.opens * 1e6}

    async def echo64(self, http2: bool) -> dict[str, float]:
        seconds = self.seconds
        counts = [0] * 10

        async def one(i: int, ws: trio_ws.WebSocket) -> None:
            while True:
                for _ in range(100):
                    await ws.send(PAYLOAD)
                for _ in range(100):
                    await ws.recv()
                counts[i] += 100

        async with trio.open_nursery() as outer:
            sockets: list[trio_ws.WebSocket] = []
            ready, finished = trio.Event(), trio.Event()

            async def hold() -> None:
                async with self.connect(http2) as ws:
                    sockets.append(ws)
                    if len(sockets) == 10:
                        ready.set()
                    await finished.wait()

            for _ in range(10):
                outer.start_soon(hold)
            await ready.wait()
            cpu = cpu_seconds(self.pid)
            with trio.move_on_after(seconds):
                async with trio.open_nursery() as nursery:
                    for i, ws in enumerate(sockets):
                        nursery.start_soon(one, i, ws)
            used = cpu_seconds(self.pid) - cpu
            total = sum(counts)
            finished.set()
        await trio.sleep(0.3)
        return {"echo64_per_s": total / seconds, "echo64_cpu_us": used / total * 1e6}

    async def memory(self, http2: bool) -> dict[str, float]:
        count = self.memory_count
        opened = 0
        all_open, done = trio.Event(), trio.Event()
        before = rss_kib(self.pid)

        async def one() -> None:
            nonlocal opened
            async with self.connect(http2) as ws:
                await ws.send(PAYLOAD)
                await ws.recv()
                opened += 1
                if opened == count:
                    all_open.set()
                await done.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
            await all_open.wait()
            await trio.sleep(0.5)
            after = rss_kib(self.pid)
            done.set()
        await trio.sleep(0.5)
        return {"memory_kib_per_ws": (after - before) / count}


async def run(repeat: int, sizes: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    results: dict[str, dict[str, list[float]]] = {"http/1.1": {}, "h2": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        for workload in ("open100", "open_one", "echo64", "memory"):
            for _ in range(repeat):
                for name, http2 in (("http/1.1", False), ("h2", True)):
                    # A fresh server for each measurement: no state carried from the last one.
                    server = subprocess.Popen(
                        [
                            "taskset",
                            "-c",
                            "0",
                            sys.executable,
                            __file__,
                            "--serve",
                            str(cert_file),
                            str(key_file),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    try:
                        assert server.stdout is not None
                        port = int(server.stdout.readline().split()[-1])
                        bench = Bench(port, server.pid, client_context, sizes)
                        figures = await getattr(bench, workload)(http2)
                        for key, value in figures.items():
                            results[name].setdefault(key, []).append(value)
                    finally:
                        server.terminate()
                        server.wait()
    return results


def report(results: dict[str, dict[str, list[float]]], repeat: int) -> str:
    rows = [
        ("open100_ms", "WebSockets opened at once, cold (ms until all open)", False),
        ("open100_cpu_us_per_ws", "  server CPU per WebSocket (µs)", False),
        ("open_one_cpu_us", "one WebSocket opened and closed: server CPU (µs)", False),
        ("echo64_per_s", "echo64 (messages/s)", True),
        ("echo64_cpu_us", "  server CPU per message (µs)", False),
        ("memory_kib_per_ws", "server memory per open WebSocket (KiB)", False),
    ]
    lines = [
        f"Medians of {repeat} runs, interleaved; ranges in parentheses. h2 / http/1.1 above 1 is "
        "better for a rate, below 1 for a time, CPU or memory.",
        "",
        "| workload | HTTP/1.1 over TLS | HTTP/2 over TLS | h2 / http/1.1 |",
        "|---|---|---|---|",
    ]
    for key, label, _higher in rows:
        h1, h2 = results["http/1.1"][key], results["h2"][key]

        def cell(values: list[float]) -> str:
            return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"

        ratio = statistics.median(h2) / statistics.median(h1)
        lines.append(f"| {label} | {cell(h1)} | {cell(h2)} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON (only)")
    parser.add_argument("--streams", type=int, default=100, help="WebSockets opened at once (open100)")
    parser.add_argument("--opens", type=int, default=300, help="WebSockets opened one by one (open_one)")
    parser.add_argument("--seconds", type=float, default=2.0, help="echo64's duration")
    parser.add_argument("--memory", type=int, default=500, help="WebSockets held open (memory)")
    parser.add_argument("--serve", nargs=2, metavar=("CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, *args.serve)
        return
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    results = trio.run(run, args.repeat, args)
    if args.json:
        print(json.dumps(results))
        return
    text = report(results, args.repeat)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
