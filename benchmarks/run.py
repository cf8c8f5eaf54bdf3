"""Run every server on every workload, in one run, and write benchmarks/RESULTS.md.

    python benchmarks/run.py [--duration 2] [--repeat 3] [--libraries trio_ws,...] [--plot DIR]

Each server runs pinned to core 0 and the load client to core 1 (taskset). Each workload
gets a warm-up, then `--repeat` timed repetitions; the table shows medians, ranges, and
the ratio of trio_ws to each other library, with the CPU share of server and client.
With `--plot DIR`, a PNG chart per workload goes to DIR (`plots.py`), linked from the output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARIES = ["trio_ws", "websockets_trio", "websockets_asyncio", "trio_websocket", "raw_trio", "trio_floor"]
WORKLOADS = {
    "rtt1": "round trips/s",
    "echo64": "messages/s",
    "big": "MB/s",
    "fanout": "deliveries/s",
    "handshake": "handshakes/s",
    "idle_mem": "KiB/connection",
}
RAW_WORKLOADS = {"rtt1", "echo64", "big"}  # a TCP echo has no handshake and no broadcast
PER = {"rtt1": "round trip", "echo64": "message", "big": "MB", "fanout": "delivery", "handshake": "handshake"}
FLOOR_WORKLOADS = {"handshake", "idle_mem"}  # the floor server only upgrades and closes
COMPRESSED = [("echo64", "trio_ws"), ("echo64", "websockets_asyncio"), ("echo64", "websockets_trio")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: int, *command: str) -> list[str]:
    return ["taskset", "-c", str(core), sys.executable, *command]


def run_workload(
    library: str, workload: str, args: argparse.Namespace, compression: bool = False
) -> dict[str, list[float]]:
    port = free_port()
    server_command = pinned(0, str(HERE / "servers.py"), library, str(port))
    if compression:
        server_command.append("--compression")
    log = open(HERE / "servers.log", "a")  # noqa: SIM115  # what the servers say, out of the way
    server = subprocess.Popen(server_command, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{library} did not start")
        load = pinned(1, str(HERE / "load.py"), workload, str(port), str(server.pid))
        load += ["--duration", str(args.duration), "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
        if library == "raw_trio":
            load.append("--raw")
        if compression:
            load.append("--compression")
        done = subprocess.run(load, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{library} {workload}: {done.stderr[-500:]}")
        result: dict[str, list[float]] = json.loads(done.stdout)
        return result
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def cell(values: list[float]) -> str:
    median = statistics.median(values)
    digits = 1 if median < 100 else 0
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def percent(values: list[float]) -> str:
    return f"{statistics.median(values) * 100:.0f}%" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--plot", metavar="DIR", help="draw a PNG chart per workload into DIR")
    args = parser.parse_args()
    libraries = args.libraries.split(",")
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    compressed: dict[str, dict[str, list[float]]] = {}
    once = argparse.Namespace(**{**vars(args), "repeat": 1})
    # Repetitions are interleaved (every library once, then again), so that drift in the
    # machine's speed during the run affects every library alike.
    for workload in WORKLOADS:
        for _ in range(args.repeat):
            for library in libraries:
                if library == "raw_trio" and workload not in RAW_WORKLOADS:
                    continue
                if library == "trio_floor" and workload not in FLOOR_WORKLOADS:
                    continue
                result = run_workload(library, workload, once)
                merged = results.setdefault((workload, library), {k: [] for k in result})
                for key, values in result.items():
                    merged[key] += values
        for library in libraries:
            if (workload, library) in results:
                print(
                    f"{workload:10} {library:20} {cell(results[(workload, library)]['values'])}", flush=True
                )
    for _ in range(args.repeat):
        for workload, library in COMPRESSED:
            if library in libraries:
                result = run_workload(library, workload, once, compression=True)
                merged = compressed.setdefault(library, {k: [] for k in result})
                for key, values in result.items():
                    merged[key] += values
    for library, result in compressed.items():
        print(f"echo64+deflate {library:20} {cell(result['values'])}", flush=True)

    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.date.today()}  ",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        "",
        "Servers pinned to core 0, the load client (benchmarks/load.py) to core 1. Medians of "
        f"{args.repeat} timed repetitions of {args.duration} s, each after a {args.warmup} s warm-up "
        "on a freshly started server; repetitions interleaved across libraries; ranges in "
        "parentheses. Compression off unless the row says deflate. Higher is better except for "
        "idle_mem.",
        "",
        "| workload | " + " | ".join(libraries) + " |",
        "|---|" + "---|" * len(libraries),
    ]
    for workload, unit in WORKLOADS.items():
        row = [f"{workload} ({unit})"]
        for library in libraries:
            result = results.get((workload, library))
            row.append(cell(result["values"]) if result else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    if compressed:
        row = ["echo64 + deflate (messages/s)"]
        row += [cell(compressed[lib]["values"]) if lib in compressed else "n/a" for lib in libraries]
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## trio_ws relative to each library (trio_ws / other; above 1 means trio_ws is ahead)", ""]
    lines += ["| workload | " + " | ".join(lib for lib in libraries if lib != "trio_ws") + " |"]
    lines += ["|---|" + "---|" * (len(libraries) - 1)]
    for workload in WORKLOADS:
        ours = results.get((workload, "trio_ws"))
        row = [workload]
        for library in libraries:
            if library == "trio_ws":
                continue
            other = results.get((workload, library))
            if ours is None or other is None:
                row.append("n/a")
                continue
            a, b = statistics.median(ours["values"]), statistics.median(other["values"])
            if min(a, b) <= 0:
                row.append("n/a")
                continue
            ratio = b / a if workload == "idle_mem" else a / b  # less memory is better
            row.append(f"{ratio:.2f}")
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## CPU share over the timed windows (server / load client)", ""]
    lines += ["| workload | " + " | ".join(libraries) + " |", "|---|" + "---|" * len(libraries)]
    for workload in WORKLOADS:
        if workload == "idle_mem":
            continue
        row = [workload]
        for library in libraries:
            result = results.get((workload, library))
            row.append(
                f"{percent(result['server_cpu'])} / {percent(result['client_cpu'])}" if result else "n/a"
            )
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Server CPU per operation (µs: server CPU share / rate; lower is better)", ""]
    lines += ["| workload | " + " | ".join(libraries) + " |", "|---|" + "---|" * len(libraries)]
    for workload in WORKLOADS:
        if workload == "idle_mem":
            continue
        row = [f"{workload} (per {PER[workload]})"]
        for library in libraries:
            result = results.get((workload, library))
            rate = statistics.median(result["values"]) if result else 0
            row.append(
                f"{statistics.median(result['server_cpu']) / rate * 1e6:,.2f}" if result and rate else "n/a"
            )
        lines.append("| " + " | ".join(row) + " |")
    if args.plot:
        from plots import draw

        charts = []
        for workload, unit in WORKLOADS.items():
            by_library = {lib: results[(workload, lib)] for lib in libraries if (workload, lib) in results}
            charts.append(draw(workload, unit, by_library, Path(args.plot)))
        if compressed:
            charts.append(draw("echo64 + deflate", "messages/s", compressed, Path(args.plot)))
        output_directory = Path(args.output).resolve().parent
        lines += ["", "## Charts", ""]
        for chart in charts:
            relative = Path(chart).resolve().relative_to(output_directory)
            lines.append(f"![{chart.stem}]({relative.as_posix()})")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output} at {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
