"""Publishes per second from one process through Redis, pipelined and not.

python benchmarks/redis_publish.py --count 200000

Starts a redis-server of its own on a free port of 127.0.0.1 (or uses --redis URL), then
measures, in one run:
- `pipelined`: one task awaiting `hub.publish` `--count` times on a hub with
  `RedisBackend` (no history), until Redis has answered every one;
- `history`: 64 tasks appending `--count` / 4 publications to one topic's history (the
  Lua script: offset, stream entry and PUBLISH), until all are answered;
- `one round trip each`: PUBLISH, wait for the answer, repeat (what the backend did before
  it pipelined), for `--count` / 10;
- `redis-benchmark -P 32`: Redis's own client, pipelined, if it is installed.
Every figure is checked: Redis's command statistics must count each publish, and the
history's last offset must equal the appends. Printed as JSON: messages/s and the ratio
of each to one round trip each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import time
import urllib.parse

import trio

import trio_ws
from trio_ws.backends.resp import RespConnection

PAYLOAD = "x" * 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


async def raw_connection(url: str) -> RespConnection:
    parts = urllib.parse.urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 6379)
    return RespConnection(stream, 2**20)


async def command(url: str, *args: str) -> object:
    connection = await raw_connection(url)
    try:
        await connection.send(*args)
        return await connection.reply()
    finally:
        await connection.aclose()


async def publish_calls(url: str) -> int:
    """How many PUBLISH commands Redis has run (its command statistics)."""
    stats = await command(url, "INFO", "commandstats")
    assert isinstance(stats, bytes)
    for line in stats.decode().splitlines():
        if line.startswith("cmdstat_publish:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def until_answered(backend: trio_ws.RedisBackend) -> None:
    """Wait until the backend's publishing connection owes no answer."""
    while backend.in_flight:
        await trio.sleep(0.001)


async def pipelined(url: str, count: int) -> float:
    backend = trio_ws.RedisBackend(url)
    async with trio_ws.open_hub(backend=backend) as hub:
        before = await publish_calls(url)
        began = time.perf_counter()
        for _ in range(count):
            await hub.publish("bench", PAYLOAD)
        await until_answered(backend)
        took = time.perf_counter() - began
        published = await publish_calls(url) - before
    if published != count or backend.undelivered:
        raise AssertionError(
            f"Redis ran {published} of {count} publishes ({backend.undelivered} undelivered)"
        )
    return count / took


async def history(url: str, count: int, tasks: int = 64) -> float:
    backend = trio_ws.RedisBackend(url)
    topic = f"bench-history-{time.monotonic_ns()}"
    async with trio_ws.open_hub(backend=backend, history_size=1000) as hub:

        async def append(n: int) -> None:
            for _ in range(n):
                await hub.publish(topic, PAYLOAD)

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(append, count // tasks)
        took = time.perf_counter() - began
    appended = (count // tasks) * tasks
    offset = await command(url, "HGET", f"trio_ws:{{{topic}}}:meta", "offset")
    if offset != str(appended).encode() or backend.undelivered:
        raise AssertionError(f"the last offset is {offset!r}, not {appended}")
    return appended / took


async def one_round_trip_each(url: str, count: int) -> float:
    connection = await raw_connection(url)
    try:
        began = time.perf_counter()
        for _ in range(count):
            await connection.send("PUBLISH", "trio_ws:bench", PAYLOAD)
            await connection.reply()
        return count / (time.perf_counter() - began)
    finally:
        await connection.aclose()


def redis_benchmark(url: str, count: int) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    port = str(urllib.parse.urlsplit(url).port)
    result = subprocess.run(
        [binary, "-p", port, "-n", str(count), "-P", "32", "-q", "PUBLISH", "trio_ws:bench", PAYLOAD],
        capture_output=True,
        text=True,
        check=True,
    )
    # "PUBLISH trio_ws:bench xxx...: 489000.00 requests per second, p50=..."
    return (
        float(result.stdout.split(": ")[-1].split()[0].replace(",", ""))
        if "requests per second" in result.stdout
        else None
    )


async def main(url: str, count: int) -> dict[str, object]:
    baseline = await one_round_trip_each(url, count // 10)
    rates: dict[str, float | None] = {
        "pipelined": await pipelined(url, count),
        "history": await history(url, count // 4),
        "one round trip each": baseline,
        "redis-benchmark -P 32": redis_benchmark(url, count),
    }
    return {
        name: None if rate is None else {"messages/s": round(rate), "ratio": round(rate / baseline, 2)}
        for name, rate in rates.items()
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200_000, help="publishes in the pipelined run")
    parser.add_argument("--redis", metavar="URL", help="an existing Redis (default: start one)")
    args = parser.parse_args()
    server = None
    url = args.redis
    if url is None:
        server, url = start_redis()
    try:
        print(json.dumps(trio.run(main, url, args.count), indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
