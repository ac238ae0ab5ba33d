"""Several policies on several seeds of one scenario: runs, means and spreads, files.

``compare(scenario, ["migrator", "static"], seeds=[0, 1, 2])`` replays every policy on the
same arrivals of each seed, and :class:`Comparison` summarises them as the report needs
(``results.json``: ``{"policies": {name: {"goodput", "slo_attainment", "mean_accuracy",
"reconfigurations", "decision_ms_p50", "decision_ms_p99"}}}``, means over seeds, with the
standard deviations and per-seed figures beside them).

Every run is graded twice (``migrator.evaluation.simulate``): the headline figures are those of
the comparison's ``grader`` (``"request"`` by default), and ``results.json`` gives both beside
them: ``{"grader": "request", "policies": {name: {..., "gradings": {"request": {"goodput",
"slo_attainment", "mean_accuracy", "std": {...}}, "slot": {...}}}}}``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._files import write_atomically
from ..errors import ConfigError
from ..planning.planner import json_default
from ..workload.scenario import Scenario
from .policy import POLICY_NAMES, Policy, make_policy
from .latency import check_latency
from .requests import GRADERS
from .simulate import SimResult, check_grader, simulate

__all__ = ["GRADING_METRICS", "METRICS", "Comparison", "compare", "parse_policies"]

METRICS = ("goodput", "slo_attainment", "mean_accuracy", "reconfigurations", "decision_ms_p50", "decision_ms_p99")
#: The figures each grading gives (``gradings`` in ``results.json``).
GRADING_METRICS = ("goodput", "slo_attainment", "mean_accuracy")


def parse_policies(text: str | Sequence[str]) -> list[str]:
    """Policy names from ``"migrator,static"`` or a list; unknown or repeated names are errors."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"policies must name at least one of {', '.join(POLICY_NAMES)}", field="policies")
    for name in names:
        if name not in POLICY_NAMES:
            raise ConfigError(f"unknown policy {name!r}; known policies: {', '.join(POLICY_NAMES)}", field="policies")
    if len(set(names)) != len(names):
        raise ConfigError(f"policies must not repeat a name, got {', '.join(names)}", field="policies")
    return names


@dataclass(frozen=True)
class Comparison:
    """Results of every policy on every seed: ``runs[policy]`` in seed order."""

    scenario: str
    seeds: tuple[int, ...]
    runs: Mapping[str, tuple[SimResult, ...]]
    grader: str = "request"
    latency: str = "model"

    def table(self) -> dict[str, dict[str, float]]:
        """Per policy, the mean over seeds of each metric."""
        return {name: self._stat(name, np.mean) for name in self.runs}

    def spread(self) -> dict[str, dict[str, float]]:
        """Per policy, the standard deviation over seeds of each metric (0 for one seed)."""
        return {name: self._stat(name, np.std) for name in self.runs}

    def _stat(self, name: str, reduce: Callable[[np.ndarray], Any]) -> dict[str, float]:
        rows = [run.summary() for run in self.runs[name]]
        return {m: float(reduce(np.array([r[m] for r in rows]))) for m in METRICS}

    def gradings(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per policy and grader: the mean over seeds of each of :data:`GRADING_METRICS`, with
        their standard deviations under ``"std"``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, runs in self.runs.items():
            rows = [run.grading_summary() for run in runs]
            out[name] = {}
            for grader in GRADERS:
                if not rows or any(grader not in r for r in rows):
                    continue
                values = {m: np.array([r[grader][m] for r in rows]) for m in GRADING_METRICS}
                out[name][grader] = {
                    **{m: float(np.mean(v)) for m, v in values.items()},
                    "std": {m: float(np.std(v)) for m, v in values.items()},
                }
        return out

    def improvement(self, over: str, policy: str = "migrator") -> float:
        """Relative Goodput gain of ``policy`` over ``over`` (0.17 = 17 % more), seed by seed
        and then averaged."""
        gains = [a.goodput / b.goodput - 1.0 for a, b in zip(self.runs[policy], self.runs[over]) if b.goodput > 0]
        return float(np.mean(gains)) if gains else float("nan")

    def to_dict(self) -> dict[str, Any]:
        spread = self.spread()
        gradings = self.gradings()
        return {
            "scenario": self.scenario,
            "seeds": list(self.seeds),
            "grader": self.grader,
            "latency": self.latency,
            "policies": {
                name: {
                    **means,
                    "std": spread[name],
                    "per_seed": [run.summary() for run in self.runs[name]],
                    "settings": dict(self.runs[name][0].settings) if self.runs[name] else {},
                    "gradings": gradings[name],
                    "latency": dict(self.runs[name][0].latency) if self.runs[name] else {},
                }
                for name, means in self.table().items()
            },
            "arrivals": self.arrivals(),
        }

    def arrivals(self) -> dict[str, Any]:
        """Per seed, the warm-up the policies sized on and where the scored window starts in
        the recorded traces (None without one); every policy of a seed replays the same."""
        first = next((runs for runs in self.runs.values() if runs), ())
        return {
            "warmup_s": first[0].warmup_s if first else None,
            "windows": [{"seed": run.seed, "start_slot": run.start_slot} for run in first],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default, allow_nan=False)

    def to_csv(self) -> str:
        """One row per policy: the means (by the headline grader), the standard deviations
        (``*_std``), the seeds, the grader, then each grading's means (``goodput_request``,
        ``goodput_slot``, ...)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        graded = [f"{m}_{g}" for g in GRADERS for m in GRADING_METRICS]
        writer.writerow(["policy", *METRICS, *(f"{m}_std" for m in METRICS), "seeds", "grader", *graded])
        spread = self.spread()
        gradings = self.gradings()
        for name, means in self.table().items():
            by = gradings[name]
            extra = [by[g][m] if g in by else "" for g in GRADERS for m in GRADING_METRICS]
            writer.writerow([name, *(means[m] for m in METRICS), *(spread[name][m] for m in METRICS), len(self.seeds),
                             self.grader, *extra])
        return out.getvalue()

    def write(self, directory: str | Path) -> list[Path]:
        """``results.json`` and ``results.csv`` in ``directory`` (created); returns the paths."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "results.json", folder / "results.csv"]
        write_atomically(paths[0], self.to_json() + "\n")
        write_atomically(paths[1], self.to_csv())
        return paths


def compare(
    scenario: Scenario,
    policies: Sequence[str] | str,
    seeds: Sequence[int] = (0,),
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    decision_latency_s: float | None = None,
    duration_s: float | None = None,
    on_slot: Callable[[str, int, int], None] | None = None,
    grader: str = "request",
    warmup_s: float | None = None,
    latency: str = "model",
) -> Comparison:
    """Replay every policy on every seed.

    Parameters
    ----------
    policies : names (see ``migrator.evaluation.policy.POLICY_NAMES``) or a comma-separated string
    seeds : seeds of the scenario's synthetic arrivals; all policies see the same ones
    options : per policy name, keyword options for its constructor
    decision_latency_s, duration_s : as :func:`migrator.evaluation.simulate.simulate` takes them
    on_slot : called as ``on_slot(policy, seed, slot)`` after each simulated slot
    grader : the headline grading, ``"request"`` or ``"slot"`` (both are reported)
    warmup_s : seconds of unscored traffic before each seed's scored window, from which the
        policies take their average rates (``migrator.evaluation.warmup``)
    latency : how decisions are charged, ``"model"`` (a decision cost per policy measured
        once per machine: runs repeat exactly) or ``"wall"`` (``migrator.evaluation.latency``)
    """
    grader = check_grader(grader)
    latency = check_latency(latency)
    names = parse_policies(policies)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("seeds must hold at least one seed", field="seeds")
    options = dict(options or {})
    runs: dict[str, list[SimResult]] = {name: [] for name in names}
    for seed in seeds:
        for name in names:
            policy: Policy = make_policy(name, **options.get(name, {}))
            report = (lambda t, n=name, s=seed: on_slot(n, s, t)) if on_slot is not None else None
            runs[name].append(simulate(
                scenario, policy, seed=seed, decision_latency_s=decision_latency_s, duration_s=duration_s,
                on_slot=report, grader=grader, warmup_s=warmup_s,
                latency=latency,
            ))
    return Comparison(scenario.name, seeds, {name: tuple(r) for name, r in runs.items()}, grader, latency)
