"""The cost of metrics on the hot path: trio_ws with `metrics=True` (and /metrics scraped
every half second meanwhile) against trio_ws without, on echo64, rtt1 and fanout, in one
run, repetitions interleaved (off, on, off, on...).

    python benchmarks/metrics_overhead.py [--repeat 3] [--duration 2] [--output FILE]

Prints a Markdown table: the median of each, and on/off (1.00: no cost). The counts
themselves are kept whether metrics are on or not; what "on" adds is the export.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys

from run import cell, run_workload

WORKLOADS = {"echo64": "messages/s", "rtt1": "round trips/s", "fanout": "deliveries/s"}
VARIANTS = ("trio_ws", "trio_ws_metrics")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args()
    once = argparse.Namespace(**{**vars(args), "repeat": 1})
    values: dict[tuple[str, str], list[float]] = {}
    for workload in WORKLOADS:
        for _ in range(args.repeat):
            for variant in VARIANTS:
                result = run_workload(variant, workload, once)
                values.setdefault((workload, variant), []).extend(result["values"])
    command = "python benchmarks/metrics_overhead.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        f"Command: `{command.strip()}`",
        "",
        "| workload | metrics off | metrics on, scraped every 0.5 s | on / off (median) "
        "| on / off (each run) |",
        "|---|---|---|---|---|",
    ]
    for workload, unit in WORKLOADS.items():
        off, on = values[(workload, "trio_ws")], values[(workload, "trio_ws_metrics")]
        each = ", ".join(f"{b / a:.3f}" for a, b in zip(off, on, strict=True))
        ratio = statistics.median(on) / statistics.median(off)
        lines.append(f"| {workload} ({unit}) | {cell(off)} | {cell(on)} | {ratio:.3f} | {each} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        with open(args.output, "w") as file:
            file.write(table)


if __name__ == "__main__":
    main()
