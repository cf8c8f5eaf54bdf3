"""A short run of the hub soak (benchmarks/hub_soak.py): its model checks must pass in CI,
not only in the 10-minute run recorded in docs/reliability.md."""

from __future__ import annotations

import sys

import pytest
import trio

from .conftest import ROOT, redis_server_binary

pytestmark = [pytest.mark.timeout(120), pytest.mark.alone]


async def test_a_short_hub_soak_is_flat_and_consistent() -> None:
    redis_server_binary()  # installs it when missing (as root)
    script = ROOT / "benchmarks" / "hub_soak.py"
    result = await trio.run_process(
        [sys.executable, str(script), "--minutes", "0.5"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out[-3000:]
    assert "flat and consistent" in out
    assert '"Redis restarts": 2' in out and '"slow subscribers closed with 1013"' in out
