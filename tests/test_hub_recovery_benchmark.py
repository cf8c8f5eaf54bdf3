"""The recovery benchmark (benchmarks/hub_recovery.py) runs and checks what it times."""

from __future__ import annotations

import json
import sys

import pytest
import trio

from .conftest import ROOT

pytestmark = pytest.mark.alone  # a benchmark


async def test_the_recovery_benchmark_delivers_every_missed_publication() -> None:
    script = ROOT / "benchmarks" / "hub_recovery.py"
    result = await trio.run_process(
        [sys.executable, str(script), "--missed", "200", "--repeat", "1"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    figures = json.loads(result.stdout)
    assert set(figures) == {"100 B", "10000 B"}
    assert all(row["missed"] == 200 and row["messages/s"] > 0 for row in figures.values())
