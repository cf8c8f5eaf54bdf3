"""The fan-out benchmark (benchmarks/hub_fanout.py) runs, and checks every delivery it times."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from .conftest import ROOT, redis_server_binary

pytestmark = [pytest.mark.timeout(300), pytest.mark.alone]


async def test_the_fanout_benchmark_delivers_every_message_in_both_setups() -> None:
    redis_server_binary()  # installed if missing: the benchmark starts one of its own
    script = ROOT / "benchmarks" / "hub_fanout.py"
    result = await trio.run_process(
        [sys.executable, str(script), "--clients", "40", "--messages", "20", "--rate", "50"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    figures = json.loads(result.stdout)
    assert set(figures) == {"2 workers, Redis", "1 process, in-process hub"}
    assert len(figures["2 workers, Redis"]["clients per worker"]) == 2
    assert all(
        row["deliveries/s"] > 0 and row["p99 ms at 50/s"] >= row["p50 ms at 50/s"] for row in figures.values()
    )
