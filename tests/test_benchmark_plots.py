"""`benchmarks/run.py --plot` draws a PNG per workload with every library side by side."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

from .conftest import ROOT


def load_plots() -> object:
    spec = importlib.util.spec_from_file_location("plots", ROOT / "benchmarks" / "plots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("plots", module)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_chart_per_workload_with_every_library(tmp_path: Path) -> None:
    plots = load_plots()
    results = {
        "trio_ws": {"values": [3000.0, 3100.0, 2900.0]},
        "websockets_asyncio": {"values": [4000.0, 4200.0, 3900.0]},
        "raw_trio": {"values": []},  # no figure for this workload: no bar
    }
    path = plots.draw("handshake", "handshakes/s", results, tmp_path)  # type: ignore[attr-defined]
    assert path == tmp_path / "handshake.png"
    assert png_size(path) == (640, 320)
    deflate = plots.draw("echo64 + deflate", "messages/s", results, tmp_path)  # type: ignore[attr-defined]
    assert deflate.name == "echo64_plus_deflate.png" and deflate.stat().st_size > 5000


def test_the_results_page_and_the_readme_show_the_charts_of_the_recorded_run() -> None:
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for workload in ("rtt1", "echo64", "big", "fanout", "handshake", "idle_mem"):
        chart = ROOT / "benchmarks" / "plots" / f"{workload}.png"
        assert png_size(chart) == (640, 320)
        assert f"(plots/{workload}.png)" in results
        assert f"(benchmarks/plots/{workload}.png)" in readme
    assert "--plot benchmarks/plots" in results
