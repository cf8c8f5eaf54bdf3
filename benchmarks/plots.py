"""Charts of a benchmark run: one PNG per workload, every library side by side.

`run.py --plot DIR` calls `draw` with the run's results; each bar is the median of the
repetitions and its whisker the range. Needs matplotlib (the `bench` extra).
"""

from __future__ import annotations

import statistics
from pathlib import Path

Results = dict[str, dict[str, list[float]]]  # library -> {"values": [...], ...}

LOWER_IS_BETTER = {"idle_mem"}


def draw(workload: str, unit: str, by_library: Results, directory: Path) -> Path:
    """Draw `workload`'s chart into `directory`; the path of the PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    libraries = [library for library, result in by_library.items() if result["values"]]
    medians = [statistics.median(by_library[library]["values"]) for library in libraries]
    low = [m - min(by_library[lib]["values"]) for m, lib in zip(medians, libraries, strict=True)]
    high = [max(by_library[lib]["values"]) - m for m, lib in zip(medians, libraries, strict=True)]
    colours = ["#d62728" if library == "trio_ws" else "#7f7f7f" for library in libraries]
    figure, axes = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    bars = axes.bar(libraries, medians, yerr=[low, high], color=colours, capsize=4)
    axes.bar_label(bars, labels=[f"{m:,.0f}" if m >= 100 else f"{m:.1f}" for m in medians], padding=2)
    better = "lower is better" if workload in LOWER_IS_BETTER else "higher is better"
    axes.set_title(f"{workload} ({unit}; {better})")
    axes.set_ylabel(unit)
    axes.tick_params(axis="x", labelrotation=15)
    axes.margins(y=0.15)
    figure.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{workload.replace(' ', '_').replace('+', 'plus')}.png"
    figure.savefig(path)
    plt.close(figure)
    return path
