"""The Redis publish benchmark (benchmarks/redis_publish.py) runs and checks what it times."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from .conftest import ROOT, redis_server_binary

pytestmark = pytest.mark.alone  # a benchmark


async def test_the_publish_benchmark_counts_every_publish_it_times() -> None:
    redis_server_binary()  # installed if missing: the benchmark starts one of its own
    script = ROOT / "benchmarks" / "redis_publish.py"
    result = await trio.run_process(
        [sys.executable, str(script), "--count", "20000"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    figures = json.loads(result.stdout)
    assert {"pipelined", "history", "one round trip each"} <= set(figures)
    assert figures["one round trip each"]["ratio"] == 1.0
    assert all(row is None or row["messages/s"] > 0 for row in figures.values())
