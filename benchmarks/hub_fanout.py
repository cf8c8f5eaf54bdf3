"""End-to-end fan-out through the hub: 2 worker processes x 500 clients over Redis, next to
the same 1,000 clients on one process's in-process hub.

python benchmarks/hub_fanout.py --clients 1000 --messages 200 --rate 20

For each setup it starts `python -m trio_ws serve benchmarks.fanout_app:router` (with
`--workers 2 --redis URL` on a redis-server of its own, or alone), connects `--clients`
subscribers from two client processes, then one publisher sends messages, each carrying
the time it was sent. Every subscriber must receive every message, in order. Two runs per
setup: `--messages` as fast as the publisher can (deliveries/s: all deliveries over the
time from the first publish to the last delivery), and `--messages` / 2 at `--rate` a
second, a load both setups keep up with (publish-to-delivery latency p50 and p99, in ms).
Printed as JSON, with how many clients each worker served.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import trio

import trio_ws

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# ---- a client process: `hub_fanout.py clients URL COUNT MESSAGES` ----------------------


async def clients(url: str, count: int, messages: int) -> None:
    """`count` subscribers; prints "ready", then one JSON line: workers, latencies (ms),
    the last arrival time, and how many clients got every message in order."""
    workers: Counter[str] = Counter()
    latencies: list[float] = []
    last_arrival = 0.0
    complete = 0
    ready = trio.Event()
    connected = 0

    async def subscriber() -> None:
        nonlocal connected, complete, last_arrival
        async with trio_ws.connect(url, compression=None, ping_interval=None, max_queue=None) as ws:
            workers[str(await ws.recv())] += 1
            connected += 1
            if connected == count:
                ready.set()
            for n in range(messages):
                text = str(await ws.recv())
                now = time.monotonic()
                number, sent = text.split(" ")
                if int(number) != n:
                    return
                latencies.append((now - float(sent)) * 1000)
            last_arrival = max(last_arrival, time.monotonic())
            complete += 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(subscriber)
        await ready.wait()
        print("ready", flush=True)
    print(
        json.dumps({"workers": workers, "latencies": latencies, "last": last_arrival, "complete": complete})
    )


# ---- the driver --------------------------------------------------------------------------


async def publish(url: str, messages: int, rate: float) -> float:
    """Send the messages at `rate`; the time of the first."""
    async with trio_ws.connect(url, compression=None) as ws:
        await ws.recv()  # the worker's id: the publisher's handler runs
        first, paced_from = time.monotonic(), trio.current_time()  # trio's clock has an offset of its own
        for n in range(messages):
            await ws.send(f"{n} {time.monotonic()}")
            await trio.sleep_until(paced_from + (n + 1) / rate)
        await trio.sleep(0.5)
    return first


def run_setup(
    serve_arguments: list[str], clients_total: int, messages: int, rate: float
) -> dict[str, object]:
    port = free_port()
    target = "benchmarks.fanout_app:router"
    server = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "serve", target, "--port", str(port), *serve_arguments],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    loaders: list[subprocess.Popen[str]] = []
    try:
        wait_for_port(port)
        time.sleep(0.5)  # every worker listening
        for share in (clients_total // 2, clients_total - clients_total // 2):
            loaders.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "clients",
                        f"ws://127.0.0.1:{port}/sub",
                        str(share),
                        str(messages),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for loader in loaders:
            assert loader.stdout is not None
            if loader.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process did not connect its clients")
        first = trio.run(publish, f"ws://127.0.0.1:{port}/pub", messages, rate)
        results = [json.loads(loader.communicate(timeout=120)[0]) for loader in loaders]
    finally:
        for loader in loaders:
            loader.kill()
        server.terminate()
        server.wait(20)
    latencies = sorted(latency for result in results for latency in result["latencies"])
    complete = sum(result["complete"] for result in results)
    if complete != clients_total:
        raise AssertionError(f"only {complete} of {clients_total} clients received every message in order")
    workers: Counter[str] = Counter()
    for result in results:
        workers.update(result["workers"])
    last = max(result["last"] for result in results)
    return {
        "deliveries/s": round(len(latencies) / (last - first)),
        "p50 ms": round(statistics.median(latencies), 2),
        "p99 ms": round(latencies[int(len(latencies) * 0.99)], 2),
        "clients per worker": sorted(workers.values()),
    }


def main(clients_total: int, messages: int, rate: float) -> dict[str, dict[str, object]]:
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(redis_port)
        url = f"redis://127.0.0.1:{redis_port}/0"
        setups = {"2 workers, Redis": ["--workers", "2", "--redis", url], "1 process, in-process hub": []}
        results = {}
        for name, serve_arguments in setups.items():
            burst = run_setup(serve_arguments, clients_total, messages, 1e9)
            steady = run_setup(serve_arguments, clients_total, messages // 2, rate)
            results[name] = {
                "deliveries/s": burst["deliveries/s"],
                f"p50 ms at {rate:g}/s": steady["p50 ms"],
                f"p99 ms at {rate:g}/s": steady["p99 ms"],
                "clients per worker": steady["clients per worker"],
            }
        return results
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["clients"]:
        trio.run(clients, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20, help="publishes a second, for the latency")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(main(args.clients, args.messages, args.rate), indent=2))
