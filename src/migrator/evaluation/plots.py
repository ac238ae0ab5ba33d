"""PNG plots of a comparison (optional extra ``migrator[plot]``: matplotlib).

* ``goodput.png``: Goodput per second over time for each policy (first seed, moving average).
* ``layouts_<policy>.png``: per GPU, which memory slices each instance held over time
  (first seed), labelled with its profile, so reconfigurations show as breaks.
* ``suite.png`` (``migrator simulate --suite``): per scenario, each policy's Goodput relative
  to PARIS's (or the first policy's), from the suite's summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MigratorError
from ..geometry.geometry import Geometry
from ..geometry.layout import Layout
from .comparison import Comparison
from .simulate import SimResult

__all__ = ["plot_comparison", "plot_suite"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MigratorError("plots need matplotlib: pip install 'migrator[plot]'") from exc
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="same")


def _goodput_figure(plt: Any, comparison: Comparison, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, runs in comparison.runs.items():
        run = runs[0]
        per_s = run.goodput_per_slot() / run.slot_s
        times = np.arange(len(per_s)) * run.slot_s
        ax.plot(times, _smooth(per_s, int(10 / run.slot_s)), label=name, linewidth=1.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Goodput per second (10 s moving average)")
    ax.set_title(f"{comparison.scenario}: seed {comparison.seeds[0]}")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _spans(run: SimResult, gpu: int) -> list[tuple[str, int, int]]:
    """(layout, first slot, end slot) for each stretch of one layout."""
    rows = run.layouts[gpu]
    spans, start = [], 0
    for t in range(1, len(rows) + 1):
        if t == len(rows) or rows[t] != rows[start]:
            spans.append((rows[start], start, t))
            start = t
    return spans


def _layout_figure(plt: Any, run: SimResult, path: Path) -> Path:
    n = len(run.layouts)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n + 0.6), squeeze=False, sharex=True)
    for gpu, ax in enumerate(axes[:, 0]):
        geometry = Geometry.for_gpu(run.gpu_models[gpu])
        for layout, first, end in _spans(run, gpu):
            for placement in Layout.parse(layout):
                size = geometry.profile(placement.profile).memory_slices
                ax.broken_barh([(first * run.slot_s, (end - first) * run.slot_s)], (placement.start, size),
                               facecolors="tab:blue", edgecolors="white", alpha=0.55)
                if (end - first) * run.slot_s >= 20:
                    ax.text(first * run.slot_s + 1, placement.start + size / 2, placement.profile,
                            va="center", fontsize=6)
        ax.set_ylim(0, geometry.memory_slices)
        ax.set_ylabel(f"GPU {gpu}\nmemory slice", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title(f"{run.policy}: MIG layout over time (seed {run.seed})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_comparison(comparison: Comparison, directory: str | Path) -> list[Path]:
    """Write ``goodput.png`` and one ``layouts_<policy>.png`` per policy; returns the paths."""
    plt = _pyplot()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_goodput_figure(plt, comparison, folder / "goodput.png")]
    for name, runs in comparison.runs.items():
        paths.append(_layout_figure(plt, runs[0], folder / f"layouts_{name}.png"))
    return paths


def plot_suite(summary: Mapping[str, Mapping[str, Any]], directory: str | Path) -> list[Path]:
    """Write ``suite.png``: per scenario of ``summary`` (``SuiteResult.summary()``, also
    ``results.json``'s ``"summary"``), each policy's mean Goodput divided by the reference
    policy's (PARIS where it ran, else the first), as grouped bars; returns the path."""
    plt = _pyplot()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    scenarios = list(summary)
    policies: list[str] = []
    for entry in summary.values():
        policies += [p for p in entry["policies"] if p not in policies]
    reference = "paris" if "paris" in policies else policies[0]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(scenarios)), 4.5))
    width = 0.8 / max(1, len(policies))
    for k, policy in enumerate(policies):
        ratios = [_ratio(summary[name]["policies"], policy, reference) for name in scenarios]
        ax.bar(np.arange(len(scenarios)) + (k - (len(policies) - 1) / 2) * width, ratios, width, label=policy)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(scenarios)), [n.removeprefix("suite-") for n in scenarios], rotation=20,
                  ha="right", fontsize="small")
    ax.set_ylabel(f"Goodput / {reference}'s")
    ax.set_title("scenario suite: Goodput relative to " + reference)
    ax.legend(loc="best", fontsize="small", ncol=3)
    fig.tight_layout()
    path = folder / "suite.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _ratio(policies: Mapping[str, Mapping[str, Any]], policy: str, reference: str) -> float:
    """``policy``'s Goodput over ``reference``'s; NaN (no bar) where either is missing or 0."""
    if policy not in policies or reference not in policies or not policies[reference]["goodput"]:
        return float("nan")
    return float(policies[policy]["goodput"]) / float(policies[reference]["goodput"])
