"""The HTTP/2 benchmark (benchmarks/http2.py) runs, and measures each workload over the
protocol it names (it checks every WebSocket's answer: 101 or RFC 8441's 200)."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from .conftest import ROOT

pytestmark = [pytest.mark.timeout(300), pytest.mark.alone]


async def test_the_http2_benchmark_measures_both_protocols() -> None:
    script = ROOT / "benchmarks" / "http2.py"
    small = ["--repeat", "1", "--streams", "20", "--opens", "20", "--seconds", "0.3", "--memory", "50"]
    result = await trio.run_process(
        [sys.executable, str(script), *small, "--json"], capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    figures = json.loads(result.stdout)
    for protocol in ("http/1.1", "h2"):
        row = figures[protocol]
        assert set(row) == {
            "open100_ms",
            "open100_cpu_us_per_ws",
            "open_one_cpu_us",
            "echo64_per_s",
            "echo64_cpu_us",
            "memory_kib_per_ws",
        }
        assert all(values[0] > 0 for values in row.values()), row
